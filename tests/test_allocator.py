"""The serving process keeps freed heap memory for the next batch (:mod:`service.allocator`).

Each check runs in a fresh interpreter, so that no other test's allocations shape the heap:
a wine-sized network (3 × 64 units, S=100, 64 rows) runs batches in a worker thread, as the
batcher's, and the kernel's count of page faults says whether each batch touched new pages.
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import textwrap

import pytest

from service.allocator import retain_freed_memory

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

BATCHES = 20
_PROGRAM = textwrap.dedent(
    """
    import json, resource, sys, threading
    import numpy as np, torch
    from models.tabular import TabularBNN
    from service.allocator import retain_freed_memory
    from service.predictor import Job
    from service.tasks import TASKS

    torch.set_num_threads(1)
    tuned = retain_freed_memory() if sys.argv[1] == "tuned" else False
    network = TabularBNN(features=[f"x{i}" for i in range(11)], target="y", hidden=(64, 64, 64))
    predictor = TASKS[network.task](network).predictor(max_samples=100)
    rows = np.random.default_rng(0).normal(size=(64, 11)).astype(np.float32)
    jobs = [Job(inputs=rows[i : i + 1], samples=100, level=0.95) for i in range(len(rows))]
    faults = []

    def batches():
        for _ in range(3):  # the first batches grow the heap
            predictor(jobs)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(BATCHES):
            predictor(jobs)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

    worker = threading.Thread(target=batches)
    worker.start()
    worker.join()
    print(json.dumps({"tuned": tuned, "faults_per_batch": faults[0] / BATCHES}))
    """
).replace("BATCHES", str(BATCHES))


def faults_per_batch(mode: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM, mode], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_batch_after_the_first_reuses_the_pages_of_the_one_before() -> None:
    tuned = faults_per_batch("tuned")
    assert tuned["tuned"] is True
    # The activations of a batch (S × rows × the widths of three hidden layers and the head,
    # float32) span about 1,200 pages; glibc's defaults fault in about that many every batch
    # here (see the module's docstring). A few faults remain for what else a batch allocates.
    pages = 100 * 64 * (3 * 64 + 2) * 4 / resource.getpagesize()
    assert tuned["faults_per_batch"] < pages / 50


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MALLOC_TRIM_THRESHOLD_", "131072"),
        ("MALLOC_MMAP_THRESHOLD_", "131072"),
        ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=131072"),
    ],
)
def test_the_operators_own_malloc_settings_win(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    assert retain_freed_memory() is False
