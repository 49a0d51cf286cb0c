"""CUDA graphs of the regression pass (service.graphs).

On a CPU the buckets run their two stages eagerly, with the padding and the replay schedule
the graphs have; these tests hold those to the plain eager predictor, answer for answer.
Where CUDA is at hand (``bench/gpu.sh``), the last test captures real graphs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint
from service.graphs import CUDA_GRAPHS, RegressionGraphs, buckets
from service.predictor import EAGER, Job
from service.tasks import TASKS
from service.tasks.tabular_regression import DensityJob, RegressionPredictor

SAMPLES, LEVEL = 100, 0.95


def _predictor(checkpoint_dir: Path, name: str, device: str = "cpu") -> RegressionPredictor:
    model = load_checkpoint(checkpoint_dir / f"{name}.safetensors").to(device)
    predictor = TASKS[model.task](model).predictor(1000)
    assert isinstance(predictor, RegressionPredictor)
    return predictor


def _rows(predictor: RegressionPredictor, count: int, seed: int) -> np.ndarray:
    """Rows around the training data's, some far out (wide, skewed mixtures)."""
    standardize = predictor.model.standardize
    gen = np.random.default_rng(seed)
    z = gen.standard_normal((count, standardize.mean.numel())) * gen.choice([1, 6], (count, 1))
    rows = standardize.mean.cpu().numpy() + z * standardize.scale.cpu().numpy()
    return rows.astype(np.float32)


# Reductions over the draws (the moments) may round by an ulp differently with the batch's
# width, in eager passes as in graphs: the reproducibility rule's tolerance, tightened.
RTOL = 1e-6


def _assert_same(got: object, want: object) -> None:
    for name, value in vars(want).items():
        if value is None:
            assert getattr(got, name) is None, name
        else:
            np.testing.assert_allclose(getattr(got, name), value, rtol=RTOL, atol=0, err_msg=name)


@pytest.mark.parametrize(
    ("max_rows", "expected"),
    [
        (1, (1,)),
        (2, (1, 2)),
        (5, (1, 2, 4, 5)),
        (8, (1, 2, 4, 8)),
        (1024, tuple(2**k for k in range(11))),
    ],
)
def test_buckets_are_powers_of_two_up_to_the_largest_batch(
    max_rows: int, expected: tuple[int, ...]
) -> None:
    assert buckets(max_rows) == expected


def test_buckets_need_a_row() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        buckets(0)


@pytest.mark.parametrize("name", ["wine-bnn", "wine-gaussian-ensemble"])
def test_padded_buckets_answer_as_the_eager_pass(checkpoint_dir: Path, name: str) -> None:
    predictor = _predictor(checkpoint_dir, name)
    samples = min(SAMPLES, predictor.max_samples)
    example = _rows(predictor, 1, seed=0)
    graphs = RegressionGraphs(predictor, example, samples=samples, level=LEVEL, max_rows=12)
    for count in (1, 2, 3, 7, 12):  # exact buckets, padded ones, and the last, not a power
        jobs = [Job(row[None], samples, LEVEL) for row in _rows(predictor, count, seed=count)]
        assert graphs.serves(jobs)
        got = predictor.result(graphs.run(np.concatenate([job.inputs for job in jobs])))
        (want,) = predictor([Job(np.concatenate([job.inputs for job in jobs]), samples, LEVEL)])
        _assert_same(got, want)


def test_a_row_answers_the_same_whatever_pads_its_bucket(checkpoint_dir: Path) -> None:
    predictor = _predictor(checkpoint_dir, "wine-bnn")
    rows = _rows(predictor, 5, seed=7)
    graphs = RegressionGraphs(predictor, rows[:1], samples=SAMPLES, level=LEVEL, max_rows=8)
    alone = graphs.run(rows[3:4])  # bucket 1, no padding
    for batch in (rows[[3, 0]], rows[[0, 1, 3]], rows[[4, 3, 2, 1, 0]]):  # buckets 2, 4, 8
        position = int(np.flatnonzero((batch == rows[3]).all(axis=1))[0])
        np.testing.assert_allclose(graphs.run(batch)[:, position], alone[:, 0], rtol=RTOL)


def test_graphs_serve_only_the_batches_they_were_captured_for(checkpoint_dir: Path) -> None:
    predictor = _predictor(checkpoint_dir, "wine-bnn")
    rows = _rows(predictor, 4, seed=1)
    graphs = RegressionGraphs(predictor, rows[:1], samples=SAMPLES, level=LEVEL, max_rows=4)
    assert graphs.serves([Job(rows[:2], SAMPLES, LEVEL), Job(rows[2:], SAMPLES, LEVEL)])
    assert not graphs.serves([Job(rows[:1], SAMPLES + 1, LEVEL)])
    assert not graphs.serves([Job(rows[:1], SAMPLES, 0.9)])
    assert not graphs.serves([DensityJob(rows[:1], SAMPLES, LEVEL)])
    assert not graphs.serves([Job(rows, SAMPLES, LEVEL), Job(rows[:1], SAMPLES, LEVEL)])


def test_a_predictor_on_the_cpu_stays_eager(checkpoint_dir: Path) -> None:
    predictor = _predictor(checkpoint_dir, "wine-bnn")
    example = _rows(predictor, 1, seed=0)
    assert predictor.accelerate(example, samples=SAMPLES, level=LEVEL, max_rows=8) == EAGER
    assert predictor.graphs is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("name", ["wine-bnn", "wine-gaussian-ensemble"])
def test_cuda_graphs_answer_as_the_eager_pass(checkpoint_dir: Path, name: str) -> None:
    from models.device import use_exact_float32

    use_exact_float32()
    predictor = _predictor(checkpoint_dir, name, "cuda")
    samples = min(SAMPLES, predictor.max_samples)
    example = _rows(predictor, 1, seed=0)
    jobs_by_size = {
        count: [Job(row[None], samples, LEVEL) for row in _rows(predictor, count, seed=count)]
        for count in (1, 3, 16, 50)
    }
    eager = {count: predictor(jobs) for count, jobs in jobs_by_size.items()}
    execution = predictor.accelerate(example, samples=samples, level=LEVEL, max_rows=64)
    assert execution == CUDA_GRAPHS and predictor.graphs is not None
    for count, jobs in jobs_by_size.items():
        assert predictor.graphs.serves(jobs)
        for got, want in zip(predictor(jobs), eager[count], strict=True):
            _assert_same(got, want)
