"""The predict stage: one vectorised pass over S posterior draws for a whole batch.

A batch holds jobs from many requests, each with its own rows, ``samples`` and ``level``. The
rows are stacked once and run through the first S_max draws of the model's fixed posterior
(S_max = the largest S asked for); each job then reads its own rows and its first S draws,
which are exactly the networks it would meet alone. Summaries (means, variances, mixture
quantiles, entropies) are computed on the device, jobs that share ``samples`` and ``level`` in
one call, and only those small summaries are copied back to the host, as one
:class:`BatchResult` per group that each job takes its rows of.

What a task kind adds (:mod:`service.tasks`) is its forward pass and its summary; this module
knows no model class and nothing of HTTP.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise
from typing import Final, Generic, Self, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from models.layers import Posterior
from models.predictive import DrawnOnDemand, draws_available, network_count

__all__ = ["EAGER", "BatchResult", "Job", "Predictor", "row_bounds"]

# How a model's batches run where nothing faster was prepared (GET /models' ``execution``).
EAGER: Final = "eager"


@dataclass(frozen=True)
class Job:
    """One request's work: its decoded inputs (N rows), and how to summarise them.

    ``samples`` is resolved once, when the request is decoded: the effective number of
    posterior draws (1 for a model without a posterior), which the answer also reports.
    """

    inputs: np.ndarray
    samples: int
    level: float

    @property
    def rows(self) -> int:
        return len(self.inputs)


def row_bounds(jobs: Sequence[Job]) -> list[int]:
    """Where each job's rows start in their batch, then where the last job's end: job i holds
    rows ``bounds[i]`` to ``bounds[i + 1] - 1``."""
    return list(accumulate((job.rows for job in jobs), initial=0))


@dataclass(frozen=True)
class BatchResult:
    """Per-row summaries of consecutive rows, every field an array (or None) over the rows.

    A task's result subclasses this; :meth:`rows` slices every field alike, so one record
    goes from the predictor to the JSON encoder without positional unpacking.
    """

    def rows(self, start: int, stop: int) -> Self:
        # Called once per job of every batch: the instance's own dict is half the cost of
        # ``dataclasses.fields`` and ``replace`` (2.5 against 5.8 µs a job here).
        sliced = object.__new__(type(self))
        for name, value in vars(self).items():
            object.__setattr__(sliced, name, None if value is None else value[start:stop])
        return sliced

    def split(self, jobs: Sequence[Job]) -> list[Self]:
        """Each job's rows, the jobs' rows being these rows in order."""
        return [self.rows(start, stop) for start, stop in pairwise(row_bounds(jobs))]


R = TypeVar("R", bound=BatchResult)


class Predictor(Generic[R]):
    """Callable on a batch of jobs; returns one result per job, in order.

    Subclasses say how a batch runs (:meth:`forward`: inputs and posterior in, per-draw
    outputs ``S × N × ...`` out) and how per-draw outputs are summarised (:meth:`summarise`).
    """

    def __init__(self, model: nn.Module, *, max_samples: int) -> None:
        self.model = model.eval()
        self.device = next(model.parameters()).device
        # One deterministic network has no draws to make; an ensemble of K has K to choose from.
        self.max_samples = draws_available(model, max_samples)
        self.has_posterior = network_count(model) != 1
        # Seeded draws, each made the first time a batch needs it and kept: reproducible
        # answers whatever shares the batch, and memory for the draws asked for, not for all
        # ``max_samples`` (a model served at its default S holds that many).
        self.posterior: DrawnOnDemand | None = (
            DrawnOnDemand(model, self.max_samples) if self.has_posterior else None
        )

    # How its batches run: eager, or what :meth:`accelerate` prepared.
    execution: str = EAGER

    def accelerate(self, example: np.ndarray, *, samples: int, level: float, max_rows: int) -> str:
        """Prepare a faster path for batches at ``samples`` and ``level`` of up to
        ``max_rows`` rows like ``example``, where the device and task have one; the path the
        batches take now. Called before serving, after a first pass; by default nothing."""
        return self.execution

    def __call__(self, jobs: Sequence[Job]) -> list[R]:
        inputs = torch.from_numpy(np.concatenate([job.inputs for job in jobs])).to(self.device)
        posterior = (
            self.posterior.head(max(job.samples for job in jobs))
            if self.posterior is not None
            else None
        )
        with torch.inference_mode():
            outputs = self.forward(inputs, posterior)
            return self.per_job(jobs, outputs, self._summarise_by_group(jobs, outputs))

    def forward(self, inputs: Tensor, posterior: Posterior | None) -> tuple[Tensor, ...]:
        raise NotImplementedError

    def summarise(self, outputs: tuple[Tensor, ...], level: float) -> R:
        raise NotImplementedError

    def per_job(
        self, jobs: Sequence[Job], outputs: tuple[Tensor, ...], results: list[R]
    ) -> list[R]:
        """What a job asks for beyond the summaries, from the draws while they are on the
        device (``outputs``, ``S × rows``, jobs' rows in order); by default nothing."""
        return results

    def _summarise_by_group(self, jobs: Sequence[Job], outputs: tuple[Tensor, ...]) -> list[R]:
        """Summarise jobs sharing (samples, level) together; hand each job its rows."""
        bounds = row_bounds(jobs)
        groups: dict[tuple[int, float], list[int]] = defaultdict(list)
        for index, job in enumerate(jobs):
            groups[(job.samples, job.level)].append(index)
        results: dict[int, R] = {}
        for (samples, level), members in groups.items():
            if len(members) == len(jobs):  # the common case: one group, every row in order
                group_outputs = tuple(out[:samples] for out in outputs)
            else:
                columns = np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in members])
                index = torch.from_numpy(columns).to(outputs[0].device)
                group_outputs = tuple(out[:samples, index] for out in outputs)
            summary = self.summarise(group_outputs, level)
            for i, result in zip(members, summary.split([jobs[i] for i in members]), strict=True):
                results[i] = result
        return [results[i] for i in range(len(jobs))]
