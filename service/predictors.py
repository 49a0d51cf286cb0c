"""The predict stage: one vectorised pass over S posterior draws for a whole batch.

A batch holds jobs from many requests, each with its own rows, ``samples`` and
``level``. The rows are stacked once and run through the first S_max draws of
the model's fixed posterior (S_max = the largest S asked for); each job then
reads its own columns and its first S draws, which are exactly the networks it
would meet alone. Summaries (means, variances, mixture quantiles, entropies)
are computed on the device, jobs that share ``samples`` and ``level`` in one
call, and only those small summaries are copied back to the host.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from models.images import to_model_input
from models.layers import Posterior
from models.predictive import (
    class_probability_samples,
    fixed_posterior,
    is_bayesian,
    regression_samples,
)
from uncertainty.classification import summarize_classification
from uncertainty.regression import summarize_regression


@dataclass(frozen=True)
class Job:
    """One request's inputs: rows (wine, N × 11 float32) or images (N × 32 × 32 × 3 uint8)."""

    inputs: np.ndarray
    samples: int
    level: float


@dataclass(frozen=True)
class RegressionResult:
    mean: np.ndarray
    std: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    aleatoric_std: np.ndarray
    epistemic_std: np.ndarray | None  # None: the model has no posterior over weights
    finite: np.ndarray  # per row: every number above is finite (checked once per batch)


@dataclass(frozen=True)
class ClassificationResult:
    probabilities: np.ndarray  # N × C
    lower: np.ndarray  # N × C
    upper: np.ndarray  # N × C
    total: np.ndarray
    aleatoric: np.ndarray
    epistemic: np.ndarray


R = TypeVar("R")


class Predictor(Generic[R]):
    """Callable on a batch of jobs; returns one result per job, in order."""

    def __init__(self, model: nn.Module, *, max_samples: int) -> None:
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.bayesian = is_bayesian(model)
        # Drawn once, from a fixed seed: reproducible answers whatever shares the batch.
        self.posterior: Posterior | None = (
            fixed_posterior(model, max_samples) if self.bayesian else None
        )
        self.max_samples = max_samples if self.bayesian else 1

    def effective_samples(self, requested: int) -> int:
        """A deterministic model has one network, however many draws are asked for."""
        return min(requested, self.max_samples)

    def __call__(self, jobs: Sequence[Job]) -> list[R]:
        inputs = torch.from_numpy(np.concatenate([job.inputs for job in jobs])).to(self.device)
        samples = [self.effective_samples(job.samples) for job in jobs]
        posterior = self.posterior.head(max(samples)) if self.posterior is not None else None
        with torch.inference_mode():
            outputs = self._forward(inputs, posterior)
            per_job = _summarise_by_group(jobs, samples, outputs, self._summarise)
        return [self._split(arrays) for arrays in per_job]

    def _forward(self, inputs: Tensor, posterior: Posterior | None) -> tuple[Tensor, ...]:
        raise NotImplementedError

    def _summarise(self, outputs: tuple[Tensor, ...], level: float) -> list[np.ndarray]:
        raise NotImplementedError

    def _split(self, arrays: list[np.ndarray]) -> R:
        raise NotImplementedError


class RegressionPredictor(Predictor[RegressionResult]):
    def _forward(self, inputs: Tensor, posterior: Posterior | None) -> tuple[Tensor, ...]:
        return regression_samples(self.model, inputs, posterior)

    def _summarise(self, outputs: tuple[Tensor, ...], level: float) -> list[np.ndarray]:
        s = summarize_regression(outputs[0], outputs[1], level)
        stacked = torch.stack([s.mean, s.std, s.lower, s.upper, s.aleatoric_std, s.epistemic_std])
        return [*stacked.cpu().numpy(), torch.isfinite(stacked).all(dim=0).cpu().numpy()]

    def _split(self, arrays: list[np.ndarray]) -> RegressionResult:
        mean, std, lower, upper, aleatoric, epistemic, finite = arrays
        return RegressionResult(
            mean, std, lower, upper, aleatoric, epistemic if self.bayesian else None, finite
        )


class ClassificationPredictor(Predictor[ClassificationResult]):
    def _forward(self, inputs: Tensor, posterior: Posterior | None) -> tuple[Tensor, ...]:
        if posterior is None:
            raise ValueError("a classification model needs a posterior")
        return (class_probability_samples(self.model, to_model_input(inputs), posterior),)

    def _summarise(self, outputs: tuple[Tensor, ...], level: float) -> list[np.ndarray]:
        s = summarize_classification(outputs[0], level)
        per_class = torch.stack([s.probabilities, s.lower, s.upper]).cpu().numpy()
        per_row = torch.stack([s.total, s.aleatoric, s.epistemic]).cpu().numpy()
        return [*per_class, *per_row]

    def _split(self, arrays: list[np.ndarray]) -> ClassificationResult:
        return ClassificationResult(*arrays)


def _summarise_by_group(
    jobs: Sequence[Job],
    samples: list[int],
    outputs: tuple[Tensor, ...],
    summarise: Callable[[tuple[Tensor, ...], float], list[np.ndarray]],
) -> list[list[np.ndarray]]:
    """Summarise jobs sharing (samples, level) together; split the summaries per job."""
    bounds = np.cumsum([0, *(len(job.inputs) for job in jobs)])
    groups: dict[tuple[int, float], list[int]] = defaultdict(list)
    for index, job in enumerate(jobs):
        groups[(samples[index], job.level)].append(index)
    results: list[list[np.ndarray]] = [[] for _ in jobs]
    for (s, level), members in groups.items():
        if len(members) == len(jobs):  # the common case: one group, every row in order
            group_outputs = tuple(out[:s] for out in outputs)
        else:
            columns = np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in members])
            index = torch.from_numpy(columns).to(outputs[0].device)
            group_outputs = tuple(out[:s, index] for out in outputs)
        arrays = summarise(group_outputs, level)
        offset = 0
        for i in members:
            n = bounds[i + 1] - bounds[i]
            results[i] = [a[offset : offset + n] for a in arrays]
            offset += n
    return results
