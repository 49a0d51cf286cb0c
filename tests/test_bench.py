"""The benchmark's own logic, without timing anything: the bare endpoint's answer has the
service's shape, wrk's output parses, and figures meet or miss their targets as they should.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from bench import bodies, decode_level, http_level, machine, report, server
from bench.bare_app import create_app as create_bare_app
from bench.bare_app import create_direct_app as create_direct_bare_app
from bench.checkpoints import WINE_MODEL
from bench.http_level import BARE_DIRECT, WINE_PATH
from bench.load import LoadToolError, parse_wrk
from bench.model_level import (
    GRAPH_BATCHES,
    PAIR_ROUNDS,
    SYNTHETIC,
    Case,
    cases,
    measure,
    measure_graphs,
    measure_pair,
    pairs_to_time,
)
from models.checkpoint import load_checkpoint
from models.ensemble import Ensemble
from models.task import IMAGE_CLASSIFICATION, TABULAR_REGRESSION
from service.app import create_app
from service.settings import Settings

WINE_URL = "/predict/wine?model=bnn&samples=100"

# Captured from `wrk -t1 -c8 -d2s -s bench/wrk_post.lua` against bench.bare_app.
WRK_OUTPUT = """\
Running 2s test @ http://127.0.0.1:55775/predict/wine?model=bnn&samples=100
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.29ms    1.41ms   9.56ms   85.31%
    Req/Sec     3.78k   396.85     4.66k    65.00%
  7532 requests in 2.00s, 2.95MB read
Requests/sec:   3759.32
Transfer/sec:      1.47MB
BENCH_JSON {"duration_us": 2003554, "requests": 7532, "bytes": 3088120, "errors": \
{"connect": 0, "read": 0, "write": 0, "status": 3, "timeout": 1}, "mean_us": 2293.1, \
"max_us": 9558, "p50_us": 1598, "p95_us": 5703, "p99_us": 6255, "late": 2, \
"late_max_ms": 4.5}
"""


def shape(value: Any) -> Any:
    """The JSON's structure: keys, list lengths and value types, not the numbers."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [len(value), *(shape(item) for item in value[:1])]
    return type(value).__name__


@pytest.fixture(scope="module")
def settings(checkpoint_dir: Path) -> Settings:
    return Settings(models=(WINE_MODEL,), device="cpu", model_repository=checkpoint_dir)


def test_the_benchmark_times_the_wine_route_at_its_default_model() -> None:
    assert WINE_PATH.format(samples=100) == WINE_URL


def test_bare_answer_has_the_service_shape_and_size(
    settings: Settings, checkpoint_dir: Path, tmp_path: Path
) -> None:
    body = bodies.tabular_body(tmp_path, checkpoint_dir / f"{WINE_MODEL}.safetensors")
    content = body.path.read_bytes()
    headers = {"content-type": "application/json"}
    with TestClient(create_bare_app(settings)) as bare:
        canned = bare.post(WINE_URL, content=content, headers=headers)
    with TestClient(create_app(settings)) as service:
        deadline = time.monotonic() + 60
        while service.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the service did not warm up"
            time.sleep(0.05)
        real = service.post(WINE_URL, content=content, headers=headers)
    assert canned.status_code == real.status_code == 200
    assert shape(canned.json()) == shape(real.json())
    assert canned.json()["model"] == real.json()["model"]
    assert abs(len(canned.content) - len(real.content)) <= 0.1 * len(real.content)


@pytest.mark.parametrize("factory", [create_bare_app, create_direct_bare_app])
def test_bare_app_refuses_what_the_service_refuses(
    settings: Settings, factory: Callable[[Settings], FastAPI]
) -> None:
    with TestClient(factory(settings)) as bare:
        answer = bare.post(WINE_URL, content=json.dumps({"instances": [[1.0]]}))
        assert answer.status_code == 415  # no content type
        answer = bare.post(
            WINE_URL,
            content=b'{"instances": [[1.0]]}',
            headers={"content-type": "application/json"},
        )
        assert answer.status_code == 422  # one feature, not eleven
        answer = bare.post(
            "/predict/wine?model=nope", content=b"{}", headers={"content-type": "application/json"}
        )
        assert answer.status_code == 404


def test_model_level_times_each_model_with_a_posterior(checkpoint_dir: Path) -> None:
    models = {
        name: load_checkpoint(checkpoint_dir / f"{name}.safetensors")
        for name in ("cifar-bcnn", "wine-gaussian", "wine-bnn")
    }
    # Tabular first, at the target's S and the served default; no S draws for a plain network.
    assert cases(models) == [Case("wine-bnn", 20), Case("wine-bnn", 100), Case("cifar-bcnn", 32)]
    assert {models["wine-bnn"].task, models["cifar-bcnn"].task} == {
        TABULAR_REGRESSION,
        IMAGE_CLASSIFICATION,
    }
    # An ensemble has a posterior, a deterministic one too: at most one draw per member.
    for name in ("wine-bnn", "wine-gaussian", "cifar-bcnn"):
        models[f"{name}-ensemble"] = Ensemble.of([models[name]] * 2)
    assert cases(models) == [
        Case("wine-bnn", 20),
        Case("wine-bnn", 100),
        Case("wine-bnn-ensemble", 20),
        Case("wine-bnn-ensemble", 100),
        Case("wine-gaussian-ensemble", 2),
        Case("cifar-bcnn", 32),
        Case("cifar-bcnn-ensemble", 32),
    ]


def test_model_level_measures_an_ensemble_both_ways(checkpoint_dir: Path) -> None:
    gaussian = load_checkpoint(checkpoint_dir / "wine-gaussian.safetensors")
    ensemble = Ensemble.of([gaussian, gaussian])
    args = argparse.Namespace(synthetic=True, duration=0.01, threads=1, image_batch=4)
    figure = measure(Case("wine-gaussian-ensemble", 2), ensemble, torch.device("cpu"), args)
    assert (figure.model, figure.task, figure.samples) == (
        "wine-gaussian-ensemble",
        TABULAR_REGRESSION,
        2,
    )
    assert figure.inputs == SYNTHETIC and figure.batch == 735
    assert figure.vectorised_per_s > 0 and figure.notebook_rows >= 1
    assert figure.ratio == pytest.approx(figure.vectorised_per_s / figure.notebook_per_s)


def test_an_ensemble_and_its_network_are_timed_in_alternation(checkpoint_dir: Path) -> None:
    bnn = load_checkpoint(checkpoint_dir / "wine-bnn.safetensors")
    models = {"wine-bnn": bnn, "wine-bnn-ensemble": Ensemble.of([bnn, bnn])}
    # Only a pair whose two models are both there.
    assert pairs_to_time(models) == [report.ENSEMBLE_PAIRS[0]]
    assert pairs_to_time({"wine-bnn": bnn}) == []
    pair = report.EnsemblePair(TABULAR_REGRESSION, "wine-bnn", 3)
    args = argparse.Namespace(synthetic=True, duration=0.01, threads=1, image_batch=4)
    cpu = torch.device("cpu")
    figure = measure_pair(pair, bnn, models["wine-bnn-ensemble"], cpu, args)
    assert (figure.single, figure.ensemble, figure.samples) == ("wine-bnn", "wine-bnn-ensemble", 3)
    assert (figure.batch, figure.inputs, figure.rounds) == (735, SYNTHETIC, PAIR_ROUNDS)
    assert figure.single_per_s > 0 and figure.ensemble_per_s > 0
    assert figure.ratio == pytest.approx(figure.ensemble_per_s / figure.single_per_s)


def test_cuda_graphs_are_timed_against_the_eager_pass_per_batch(checkpoint_dir: Path) -> None:
    bnn = load_checkpoint(checkpoint_dir / "wine-bnn.safetensors")
    args = argparse.Namespace(synthetic=True, duration=0.01, threads=1, image_batch=4)
    figures = measure_graphs("wine-bnn", bnn, torch.device("cpu"), args)
    assert [(f.model, f.samples, f.batch) for f in figures] == [
        ("wine-bnn", 100, batch) for batch in GRAPH_BATCHES
    ]
    for f in figures:
        assert f.execution == "eager"  # no graphs off CUDA: both ways run eagerly here
        assert f.eager_per_s > 0 and f.graphs_per_s > 0 and f.rounds == PAIR_ROUNDS
        assert f.ratio == pytest.approx(f.graphs_per_s / f.eager_per_s)
    rows = report.model_rows({"figures": [], "graphs": [vars(f) for f in figures]}, "M")
    graph_rows = [row for row in rows if "CUDA graphs / eager" in row.figure]
    assert [row.figure.split(",")[1] for row in graph_rows] == [
        f" batch {batch}" for batch in GRAPH_BATCHES
    ]
    assert all("(capture gave eager)" in row.measured for row in graph_rows)


def _pair(single: str, task: str, samples: int, single_per_s: float, ratio: float) -> dict:
    return {
        "single": single,
        "ensemble": f"{single}-ensemble",
        "task": task,
        "samples": samples,
        "batch": 64 if task == IMAGE_CLASSIFICATION else 735,
        "single_per_s": single_per_s,
        "ensemble_per_s": single_per_s * ratio,
        "ratio": ratio,
        "rounds": 5,
    }


def test_an_ensemble_is_compared_with_its_single_network_at_equal_s() -> None:
    model = {
        "figures": [],
        "pairs": [
            _pair("wine-bnn", TABULAR_REGRESSION, 100, 20_000.0, 0.95),
            _pair("wine-bnn", TABULAR_REGRESSION, 20, 20_000.0, 0.5),  # not the pair's S
            _pair("cifar-bcnn", IMAGE_CLASSIFICATION, 32, 100.0, 0.8),
        ],
    }
    pairs = report.model_rows(model, "M")
    assert [(row.figure.split(",")[0], row.verdict) for row in pairs] == [
        ("model: wine-bnn-ensemble / wine-bnn S=100", "pass"),
        ("model: cifar-bcnn-ensemble / cifar-bcnn S=32", "MISS"),
    ]
    assert pairs[0].measured == "19,000 / 20,000 = 0.95"
    assert "images/s" in pairs[1].figure and all(row.target == "≥ 0.9" for row in pairs)


def test_a_pair_not_timed_is_skipped_and_says_why() -> None:
    # The CIFAR ensemble still training; the wine one held but left out by --models.
    model = {
        "figures": [],
        "pairs": [],
        "repository": ["cifar-bcnn", "wine-bnn", "wine-bnn-ensemble"],
    }
    pairs = report.model_rows(model, "M")
    assert [(row.measured, row.verdict) for row in pairs] == [
        ("skipped: not timed (left out by --models)", ""),
        ("skipped: cifar-bcnn-ensemble not in the repository", ""),
    ]
    assert "skipped" in report.table(pairs)


def test_wrk_output_parses() -> None:
    result = parse_wrk(WRK_OUTPUT, connections=8, rate=None)
    assert result.requests == 7532
    assert result.errors == 4
    assert result.throughput == pytest.approx(7532 / 2.003554)
    assert (result.p50_ms, result.p95_ms, result.p99_ms) == (1.598, 5.703, 6.255)
    assert (result.late, result.late_max_ms) == (2, 4.5)
    assert result.steady_throughput is None  # not asked for


def test_steady_rate_parses() -> None:
    output = WRK_OUTPUT.replace('"late_max_ms": 4.5}', '"late_max_ms": 4.5, "steady_rps": 4.471}')
    assert parse_wrk(output, connections=16).steady_throughput == 4.471


def test_wrk_output_without_our_line_is_an_error() -> None:
    with pytest.raises(LoadToolError, match="BENCH_JSON"):
        parse_wrk(WRK_OUTPUT.split("BENCH_JSON")[0], connections=8)


def point(server: str, connections: int, throughput: float, p50_ms: float) -> dict[str, Any]:
    return {
        "server": server,
        "route": "wine",
        "connections": connections,
        "rate": None,
        "requests": 1000,
        "duration_s": 5.0,
        "throughput": throughput,
        "p50_ms": p50_ms,
        "p95_ms": p50_ms,
        "p99_ms": p50_ms,
        "errors": 0,
        "late": 0,
        "late_max_ms": 0.0,
        "cpu_ms_per_request": 0.5,
        "loop_ms_per_request": 0.3,
    }


def test_targets_pass_and_miss_on_the_ratios() -> None:
    http = {
        "device": "cpu",
        "samples": 100,
        "models": ["cifar-bcnn", "wine-bnn", "wine-gaussian"],
        "cifar_model": "cifar-bcnn",
        "wine_max_wait_ms": 2.0,
        "cifar_samples": 32,
        "cifar_images_per_request": 8,
        "points": [
            point("service", 1, 100, 4.5),
            point("bare", 1, 1000, 0.4),
            point("service", 32, 800, 10),
            point("bare", 32, 1000, 8),
            {**point("service", 16, 3, 900), "route": "cifar"},
        ],
        "memory": {
            "ready": {"peak_bytes": 900 * 2**20, "current_bytes": 800 * 2**20},
            "after_load": {"peak_bytes": 1500 * 2**20, "current_bytes": 900 * 2**20},
        },
    }
    model = {
        "figures": [
            {"model": "wine-bnn", "task": TABULAR_REGRESSION, "samples": 20, "batch": 735,
             "vectorised_per_s": 9000.0, "notebook_per_s": 100.0, "ratio": 90.0},
            {"model": "cifar-bcnn", "task": IMAGE_CLASSIFICATION, "samples": 32, "batch": 64,
             "vectorised_per_s": 25.0, "notebook_per_s": 4.0, "ratio": 6.25},
        ]
    }  # fmt: skip
    rows = report.model_rows(model, "M") + report.http_rows(http, model, "H")
    verdicts = [(row.figure.split(",")[0], row.verdict) for row in rows if row.target]
    assert verdicts == [
        ("model: wine-bnn S=20", "MISS"),  # 90× < 100×
        # No ensemble figures: the pairs are skipped, with no verdict.
        ("model: wine-bnn-ensemble / wine-bnn S=100", ""),
        ("model: cifar-bcnn-ensemble / cifar-bcnn S=32", ""),
        ("HTTP wine S=100 c=1: service p50 vs bare p50 + 1.5 ms", "MISS"),  # 4.5 > 1.9
        ("HTTP wine S=100 c=32: service / bare req/s", "pass"),  # 0.8
        ("HTTP cifar images/s / in-process batched predictor's", "pass"),  # 24 / 25
        ("memory: service peak RSS (VmHWM)", "pass"),
        ("memory: service peak RSS after all the load above", "MISS"),
    ]
    assert "p50" in report.table(rows)


def test_cifar_on_several_workers_gets_rows_of_its_own_against_the_same_target() -> None:
    http = {
        "cifar_model": "cifar-bcnn",
        "cifar_samples": 32,
        "cifar_images_per_request": 8,
        "points": [
            {**point("service", 16, 300, 50), "route": "cifar"},  # 2,400 images/s
            {**point("4 workers", 16, 1000, 20), "route": "cifar"},  # 8,000 images/s
        ],
    }
    model = {
        "figures": [
            {"model": "cifar-bcnn", "task": IMAGE_CLASSIFICATION, "samples": 32, "batch": 64,
             "vectorised_per_s": 10000.0, "notebook_per_s": 30.0, "ratio": 333.0},
        ]
    }  # fmt: skip
    rows = report._cifar_rows(http, model, "H")
    assert [(row.figure, row.measured.split(";")[0], row.verdict) for row in rows] == [
        ("HTTP cifar S=32, 8 JPEGs/request, c=16", "300 req/s", ""),
        ("HTTP cifar images/s / in-process batched predictor's", "2,400.0 / 10,000.0 = 0.24",
         "MISS"),
        ("HTTP cifar S=32, 8 JPEGs/request, c=16, 4 workers", "1,000 req/s", ""),
        ("HTTP cifar images/s with 4 workers / in-process batched predictor's",
         "8,000.0 / 10,000.0 = 0.80", "pass"),
    ]  # fmt: skip


def test_cifar_over_http_is_held_to_its_device_target() -> None:
    """0.8 of in-process with the models on the CPU (issue 4), 0.6 on a GPU (issue 15)."""
    http = {
        "cifar_model": "cifar-bcnn",
        "cifar_samples": 32,
        "cifar_images_per_request": 8,
        "points": [{**point("service", 16, 875, 20), "route": "cifar"}],  # 7,000 images/s
    }
    model = {
        "figures": [
            {"model": "cifar-bcnn", "task": IMAGE_CLASSIFICATION, "samples": 32, "batch": 64,
             "vectorised_per_s": 10000.0, "notebook_per_s": 30.0, "ratio": 333.0},
        ]
    }  # fmt: skip
    held = {
        device: [(row.target, row.verdict) for row in report._cifar_rows(
            {**http, "device": device}, model, "H") if row.target]
        for device in ("cpu", "cuda")
    }  # fmt: skip
    assert held == {"cpu": [("≥ 0.8", "MISS")], "cuda": [("≥ 0.6", "pass")]}  # 0.7


def test_tree_cpu_seconds_counts_the_worker_processes(tmp_path: Path) -> None:
    """uvicorn with several workers supervises; its children do the work, and are counted."""
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\n"
    busy += f"open({str(tmp_path / 'done')!r}, 'w').close()\ntime.sleep(30)\n"
    child = subprocess.Popen([sys.executable, "-c", busy])
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "done").exists():
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.05)
        own, own_loop = server.cpu_seconds(os.getpid())
        tree, tree_loop = server.tree_cpu_seconds(os.getpid())
        assert tree - own >= 0.4 - 0.05  # the child's busy loop (a tick of slack)
        assert tree_loop - own_loop >= 0.4 - 0.05  # on its main thread
    finally:
        child.kill()
        child.wait()


def test_the_targets_compare_the_alternating_slices_when_a_run_has_them() -> None:
    def slices(
        server: str,
        c: int,
        throughputs: list[float],
        p50s: list[float],
        route: str = "wine-vs-bare",
    ) -> list[Any]:
        return [
            {**point(server, c, rate, p50), "route": route}
            for rate, p50 in zip(throughputs, p50s, strict=True)
        ]

    http = {
        "device": "cpu",
        "samples": 100,
        "models": ["wine-bnn"],
        "points": [
            # One after the other, the machine drifted: 0.5 of bare, p50 2.5 > 0.4 + 1.5.
            point("service", 1, 400, 2.5),
            point("bare", 1, 2000, 0.4),
            point("service", 32, 500, 10),
            point("bare", 32, 1000, 8),
            # Side by side: service/bare 0.8 (mean 800 over mean 1000); p50s' medians
            # 1.8 and 0.4, within 1.5 ms.
            *slices("service", 1, [500, 500], [1.7, 1.9]),
            *slices("bare", 1, [2000, 2000], [0.4, 0.4]),
            *slices("service", 32, [700, 900], [10, 10]),
            *slices("bare", 32, [900, 1100], [8, 8]),
            # Beside the bare endpoint behind the direct route: no target, 0.5.
            *slices("service", 32, [600, 600], [11, 11], "wine-vs-bare-direct"),
            *slices(BARE_DIRECT, 32, [1200, 1200], [6, 6], "wine-vs-bare-direct"),
        ],
        "memory": {
            "ready": {"peak_bytes": 900 * 2**20, "current_bytes": 800 * 2**20},
            "after_load": {"peak_bytes": 900 * 2**20, "current_bytes": 900 * 2**20},
        },
    }
    rows = report.http_rows(http, {"figures": []}, "H")
    targeted = [(row.figure, row.measured, row.verdict) for row in rows if row.target]
    beside_direct = [row for row in rows if "direct route" in row.figure]
    assert [(row.figure, row.measured, row.target) for row in beside_direct] == [
        (
            "HTTP wine S=100 c=32: service / bare behind the direct route req/s "
            "(2 alternating slices each)",
            "600 / 1,200 = 0.50",
            "",
        )
    ]
    assert targeted[:2] == [
        (
            "HTTP wine S=100 c=1: service p50 vs bare p50 + 1.5 ms (2 alternating slices each)",
            "1.80 ms (bare 0.40 ms)",
            "pass",
        ),
        (
            "HTTP wine S=100 c=32: service / bare req/s (2 alternating slices each)",
            "800 / 1,000 = 0.80",
            "pass",
        ),
    ]


def test_on_cuda_wine_is_held_to_the_host_cpu_and_graphs_to_eager() -> None:
    http = {
        "device": "cuda",
        "samples": 100,
        "points": [
            point("service", 1, 500, 2.3),
            point("bare", 1, 1000, 0.4),  # 2.3 <= 0.4 + 2: pass
            point("graphs off", 1, 125, 8.0),
            point("service", 32, 900, 10),
            point("bare", 32, 1000, 8),
            point("graphs off", 32, 300, 30),
            point("host CPU", 32, 1000, 9),
        ],
        "models": ["wine-bnn"],
        "memory": {
            "ready": {"peak_bytes": 900 * 2**20, "current_bytes": 800 * 2**20},
            "after_load": {"peak_bytes": 900 * 2**20, "current_bytes": 900 * 2**20},
        },
    }
    rows = report.http_rows(http, {"figures": []}, "H")
    verdicts = [(row.figure, row.verdict) for row in rows if row.target]
    assert verdicts == [
        ("HTTP wine S=100 c=1: service p50 vs bare p50 + 2 ms", "pass"),
        ("HTTP wine S=100 c=32: service / bare req/s", "pass"),  # 0.9
        ("HTTP wine S=100 c=32: on cuda / on the host CPU req/s", "MISS"),  # 0.9 < 1
    ]
    ratios = {row.figure: row.measured for row in rows if "graphs on / off" in row.figure}
    assert ratios == {
        "HTTP wine S=100 c=1: CUDA graphs on / off req/s": "4.00×",
        "HTTP wine S=100 c=32: CUDA graphs on / off req/s": "3.00×",
    }


def test_memory_has_no_target_when_the_models_run_on_cuda() -> None:
    # The RSS target is for the CPU; a GPU host's figures are shown for scale only.
    memory = {
        "ready": {"peak_bytes": 1700 * 2**20, "current_bytes": 1600 * 2**20},
        "after_load": {"peak_bytes": 1800 * 2**20, "current_bytes": 1700 * 2**20},
    }
    http = {"samples": 100, "models": ["wine-bnn"], "points": [], "memory": memory}
    on_cpu = report.http_rows({**http, "device": "cpu"}, {"figures": []}, "H")
    on_cuda = report.http_rows({**http, "device": "cuda"}, {"figures": []}, "H")
    assert [row.verdict for row in on_cpu] == ["MISS", "MISS"]
    assert [row.verdict for row in on_cuda] == ["", ""]
    assert "models on cuda" in on_cuda[0].figure


def test_the_memory_of_every_draw_is_shown_beside_the_target() -> None:
    # Draws are made when first asked for: the figure once all are made is the bound the
    # settings allow, shown for scale; the target is for what the service holds as it serves.
    memory = {
        "ready": {"peak_bytes": 800 * 2**20, "current_bytes": 800 * 2**20},
        "after_load": {"peak_bytes": 850 * 2**20, "current_bytes": 840 * 2**20},
        "every_draw": {"peak_bytes": 1300 * 2**20, "current_bytes": 1290 * 2**20},
    }
    http = {"samples": 100, "models": ["wine-bnn"], "points": [], "memory": memory}
    rows = report.http_rows({**http, "device": "cpu"}, {"figures": []}, "H")
    assert [row.verdict for row in rows] == ["pass", "pass", ""]
    assert rows[2].measured == "1,300 MiB (current 1,290)"
    assert "largest samples" in rows[2].figure


@pytest.mark.parametrize(
    ("cores", "server", "load"),
    [(range(2), "0", "1"), (range(3), "0", "1"), (range(4, 20), "4,5", "6")],
)
def test_server_and_load_generator_get_their_own_cores(
    monkeypatch: pytest.MonkeyPatch, cores: range, server: str, load: str
) -> None:
    monkeypatch.setattr(machine.os, "sched_getaffinity", lambda pid: set(cores))
    monkeypatch.setattr(machine.shutil, "which", lambda name: f"/usr/bin/{name}")
    place = machine.placement()
    assert place.server == ["taskset", "-c", server]
    assert place.load == ["taskset", "-c", load]
    assert place.server_threads == 1


def test_the_decode_stage_is_timed_with_each_pool_size(data_dir: Path) -> None:
    figures = decode_level.main(["--duration", "0.3", "--data-dir", str(data_dir)])
    measured = {(p["images"], p["workers"]) for p in figures["points"]}
    assert measured == {(images, w) for images in ("32×32 JPEG", "512×512 JPEG") for w in (1, 2)}
    assert all(p["images_per_s"] > 0 for p in figures["points"])
    rows = decode_level.rows(figures, "D")
    assert [bool(row.target) for row in rows] == [False, True]  # the target is the large one's


def test_decode_rows_say_the_speedup_against_its_target() -> None:
    points = [
        {"images": "512×512 JPEG", "workers": 1, "images_per_s": 400.0},
        {"images": "512×512 JPEG", "workers": 2, "images_per_s": 700.0},
    ]
    (row,) = decode_level.rows({"points": points}, "D")
    assert "700 vs 400 = 1.75×" in row.measured and row.verdict == "MISS"
    points[1]["images_per_s"] = 760.0
    (row,) = decode_level.rows({"points": points}, "D")
    assert "= 1.90×" in row.measured and row.verdict == "pass"


def test_every_model_is_asked_for_its_largest_samples(live_server: Any, tmp_path: Path) -> None:
    # What the last memory row is read after: each model's largest S, with a body it accepts
    # (an error answer would raise).
    image = tmp_path / "cat" / "0000.jpg"
    image.parent.mkdir()
    Image.new("RGB", (32, 32), (200, 40, 90)).save(image)
    asked: list[str] = []
    original = http_level._post

    def recording(url: str, data: bytes, content_type: str) -> None:
        asked.append(url.removeprefix(live_server.url))
        original(url, data, content_type)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(http_level, "_post", recording)
        http_level.ask_every_draw(live_server.url, bodies.cifar_body(tmp_path, [image]))
    served = httpx.get(f"{live_server.url}/models").json()["models"]
    assert sorted(asked) == sorted(
        f"/predict/{model['name']}?samples={model['max_samples']}" for model in served
    )
