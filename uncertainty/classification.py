"""Summaries of a sampled Bayesian classifier's predictive distribution."""

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["ClassificationSummary", "entropy", "summarize_classification"]


def entropy(p: Tensor, dim: int = -1) -> Tensor:
    """Shannon entropy in nats; ``xlogy`` makes 0·log 0 = 0, so one-hot rows give 0, not NaN."""
    return -torch.special.xlogy(p, p).sum(dim=dim)


@dataclass(frozen=True)
class ClassificationSummary:
    """Predictive probabilities with per-class intervals and the entropy decomposition.

    ``total = aleatoric + epistemic``: the entropy of the averaged prediction splits into the
    average entropy of each sample (noise every sample agrees on) plus the mutual information
    between label and parameters (disagreement between samples).
    """

    probabilities: Tensor
    lower: Tensor
    upper: Tensor
    total: Tensor
    aleatoric: Tensor
    epistemic: Tensor


def _quantile_dim0(sorted_values: Tensor, q: float) -> Tensor:
    """Linear-interpolation quantile over dim 0 of pre-sorted values (numpy's default method).

    Hand-rolled because ``torch.quantile`` rejects inputs above 2**24 elements, which an
    (S, N, C) batch with many classes easily exceeds.
    """
    position = q * (sorted_values.shape[0] - 1)
    below = math.floor(position)
    above = min(below + 1, sorted_values.shape[0] - 1)
    return torch.lerp(sorted_values[below], sorted_values[above], position - below)


def summarize_classification(probs: Tensor, level: float) -> ClassificationSummary:
    """Summarise per-sample class probabilities ``probs`` of shape (S, N, C) at ``level``."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    if probs.dim() != 3:
        raise ValueError(f"probs must have shape (S, N, C), got {tuple(probs.shape)}")
    mean = probs.mean(dim=0)
    sorted_probs = probs.sort(dim=0).values
    total = entropy(mean)
    aleatoric = entropy(probs).mean(dim=0)
    return ClassificationSummary(
        probabilities=mean,
        lower=_quantile_dim0(sorted_probs, (1.0 - level) / 2.0),
        upper=_quantile_dim0(sorted_probs, (1.0 + level) / 2.0),
        total=total,
        aleatoric=aleatoric,
        # Jensen makes this >= 0 exactly; the clamp only absorbs rounding when samples agree.
        epistemic=(total - aleatoric).clamp_min(0.0),
    )
