"""CUDA graphs of a tabular regressor's whole pass: forward, moments and interval, replayed.

On a GPU a wine batch is about 150 kernels of a few microseconds each, and launching them one
by one from Python costs more than running them: wine on CUDA was slower than on one CPU
core. A CUDA graph records the kernels of a pass once and replays them with one launch each
time (Triton's answer to the same cost). A graph's shapes are fixed, so one is captured per
batch-size bucket (1, 2, 4, ... rows, up to the model's ``max_batch_size``) at the model's
default S and level; a batch is padded to its bucket with copies of its first row. Padding
changes no other row's answer: every summary is computed per row, and the quantile search
freezes each element on its own convergence. Batches at another S or level, or asking for
densities, run eagerly, as do batches on a CPU.

The mixture-quantile search ends when its elements have converged, which only the host can
tell and a graph cannot hold. So a bucket has two graphs: its start (the forward pass, the
moments, the search's first bracket) and a run of :data:`STEPS_PER_REPLAY` steps, replayed
until no element is searching. Steps past an element's convergence leave it as it was
(:class:`~uncertainty.mixture.QuantileSearch`): the answers are the eager loop's.

Off CUDA, :class:`RegressionGraphs` runs the same stages eagerly on the same buffers, with
the same padding and schedule, which is how tests on a CPU check what the graphs compute.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

import numpy as np
import torch

from service.predictor import Job
from uncertainty.mixture import MAX_STEPS, QuantileSearch
from uncertainty.regression import RegressionSummary, interval_quantiles, regression_moments

if TYPE_CHECKING:
    from service.tasks.tabular_regression import RegressionPredictor

__all__ = [
    "CUDA_GRAPHS",
    "STEPS_PER_REPLAY",
    "RegressionGraphs",
    "buckets",
    "capture_regression_graphs",
]

logger = logging.getLogger(__name__)

# What GET /models and the log say a model's batches run as, beside ``EAGER``.
CUDA_GRAPHS: Final = "cuda-graphs"
# Search steps per replay: one host sync per four steps; a near-Gaussian mixture takes about
# five steps, so most batches need two replays. A divisor of MAX_STEPS, which stays the cap.
STEPS_PER_REPLAY: Final = 4
_REPLAYS: Final = math.ceil(MAX_STEPS / STEPS_PER_REPLAY)
# The self-check at capture: graphs must answer as the eager pass does, to within this.
_RTOL: Final = 1e-5


def buckets(max_rows: int) -> tuple[int, ...]:
    """Batch sizes with a graph each: powers of two below ``max_rows``, then ``max_rows``."""
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    return (*(2**k for k in range(math.ceil(math.log2(max_rows)))), max_rows)


class _Bucket:
    """One batch size's buffers and its two stages, recorded as graphs on CUDA."""

    def __init__(
        self,
        predictor: RegressionPredictor,
        example: np.ndarray,
        rows: int,
        samples: int,
        level: float,
    ) -> None:
        self.rows = rows
        self._predictor = predictor
        self._posterior = (
            predictor.posterior.head(samples) if predictor.posterior is not None else None
        )
        self._quantiles = interval_quantiles(level)
        self.inputs = torch.from_numpy(np.repeat(example[:1], rows, axis=0)).to(predictor.device)
        self.summary = torch.empty(0)
        self._start_stage: Callable[[], None] = self._start
        self._steps_stage: Callable[[], None] = self._steps
        if predictor.device.type == "cuda":
            self._capture()

    def _start(self) -> None:
        mu, sigma = self._predictor.forward(self.inputs, self._posterior)
        self._moments = regression_moments(mu, sigma)
        self._search = QuantileSearch(mu, sigma, self._quantiles)

    def _steps(self) -> None:
        for _ in range(STEPS_PER_REPLAY):
            self._search.step()
        lower, upper = self._search.quantiles()
        summary = RegressionSummary(*self._moments, lower=lower, upper=upper)
        self.summary = summary.stacked()

    def _capture(self) -> None:
        """Record both stages, after a run on a side stream (the lazy set-up of cuBLAS and
        the allocator must not happen during capture). The two share a memory pool: the
        steps work on what the start left there."""
        device = self._predictor.device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            self._start()
            self._steps()
        torch.cuda.current_stream(device).wait_stream(side)
        start, steps = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
        # Thread-local: another model's batches may be running while this one captures.
        with torch.cuda.graph(start, capture_error_mode="thread_local"):
            self._start()
        with torch.cuda.graph(steps, pool=start.pool(), capture_error_mode="thread_local"):
            self._steps()
        self._graphs = (start, steps)  # held: a graph's memory lives as long as it does
        self._start_stage, self._steps_stage = start.replay, steps.replay

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """The ``6 × N`` summaries of ``inputs`` (N ≤ rows), on the host."""
        count = len(inputs)
        host = torch.from_numpy(inputs)
        self.inputs[:count].copy_(host)
        self.inputs[count:].copy_(host[:1].expand(self.rows - count, -1))
        self._start_stage()
        for _ in range(_REPLAYS):
            self._steps_stage()
            if not self._search.searching():
                break
        return self.summary[:, :count].cpu().numpy()


class RegressionGraphs:
    """A regressor's passes at one (S, level), one :class:`_Bucket` per batch size."""

    def __init__(
        self,
        predictor: RegressionPredictor,
        example: np.ndarray,
        *,
        samples: int,
        level: float,
        max_rows: int,
    ) -> None:
        self.samples, self.level = samples, level
        with torch.inference_mode():
            self._buckets = [
                _Bucket(predictor, example, rows, samples, level) for rows in buckets(max_rows)
            ]
        self.max_rows = max_rows

    def serves(self, jobs: Sequence[Job]) -> bool:
        """Whether this batch is one the graphs were captured for."""
        return (
            all(
                type(job) is Job and job.samples == self.samples and job.level == self.level
                for job in jobs
            )
            and sum(job.rows for job in jobs) <= self.max_rows
        )

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """``inputs``' summaries (:meth:`RegressionSummary.stacked`'s ``6 × N``), on the host."""
        bucket = next(b for b in self._buckets if b.rows >= len(inputs))
        with torch.inference_mode():
            return bucket.run(inputs)


def capture_regression_graphs(
    predictor: RegressionPredictor,
    example: np.ndarray,
    *,
    samples: int,
    level: float,
    max_rows: int,
) -> RegressionGraphs | None:
    """Graphs for ``predictor``'s batches at (``samples``, ``level``), checked against its
    eager pass (call it before the graphs are installed); None, with the reason logged, where
    capture fails or the answers differ."""
    try:
        graphs = RegressionGraphs(
            predictor, example, samples=samples, level=level, max_rows=max_rows
        )
        for rows in sorted({1, min(3, max_rows)}):  # 3 rows: a padded bucket
            inputs = np.repeat(example[:1], rows, axis=0)
            (eager,) = predictor([Job(inputs, samples, level)])
            graphed = predictor.result(graphs.run(inputs))
            for field in dataclasses.fields(eager):
                want, got = getattr(eager, field.name), getattr(graphed, field.name)
                if want is not None and not np.allclose(got, want, rtol=_RTOL, atol=0):
                    logger.warning(
                        "CUDA graphs answer %s=%s where the eager pass answers %s for %d rows; "
                        "batches run eagerly",
                        field.name,
                        got,
                        want,
                        rows,
                    )
                    return None
    except Exception:
        logger.exception("CUDA graph capture failed; batches run eagerly")
        return None
    return graphs
