"""Test-set metrics for predictive accuracy and calibration, each reduced to a Python float."""

import math

import torch
from torch import Tensor
from torch.nn.functional import one_hot
from torchmetrics.functional.classification import multiclass_calibration_error

__all__ = [
    "accuracy",
    "brier_score",
    "classification_nll",
    "expected_calibration_error",
    "interval_coverage",
    "mean_interval_width",
    "mixture_nll",
    "rmse",
]

# A model that gives the true class probability 0 (e.g. softmax underflow) would make one
# example's loss infinite and the whole test-set mean inf, hiding every other difference
# between models; clamping caps a single example's loss at -log(1e-12) ≈ 27.6 nats.
_PROB_FLOOR = 1e-12


def _same_shape(a: Tensor, b: Tensor, names: str) -> None:
    # Broadcasting (N,) against (N, 1) would silently average an N-by-N matrix.
    if a.shape != b.shape:
        raise ValueError(
            f"{names} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def _floating(t: Tensor) -> Tensor:
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


def rmse(prediction: Tensor, target: Tensor) -> float:
    _same_shape(prediction, target, "prediction and target")
    return _floating(prediction - target).square().mean().sqrt().item()


def mixture_nll(target: Tensor, mu: Tensor, sigma: Tensor) -> float:
    """Mean negative log predictive density of ``target`` (N,) under (1/S) Σ_s N(mu_s, sigma_s²).

    Summing densities directly underflows to log 0 once a target sits a few dozen sigmas from
    every component; logsumexp over log-densities stays finite.
    """
    _same_shape(mu, sigma, "mu and sigma")
    _same_shape(target, mu[0], "target and one sample of mu")
    z = (target - mu) / sigma
    log_density = -0.5 * z.square() - sigma.log() - 0.5 * math.log(2.0 * math.pi)
    log_mixture = torch.logsumexp(log_density, dim=0) - math.log(mu.shape[0])
    return -log_mixture.mean().item()


def interval_coverage(target: Tensor, lower: Tensor, upper: Tensor) -> float:
    """PICP: the fraction of targets inside their interval, to compare with its nominal level."""
    _same_shape(lower, upper, "lower and upper")
    _same_shape(target, lower, "target and lower")
    inside = (lower <= target) & (target <= upper)
    return inside.to(torch.get_default_dtype()).mean().item()


def mean_interval_width(lower: Tensor, upper: Tensor) -> float:
    """Sharpness: coverage alone rewards arbitrarily wide intervals."""
    _same_shape(lower, upper, "lower and upper")
    return _floating(upper - lower).mean().item()


def accuracy(probabilities: Tensor, labels: Tensor) -> float:
    correct = probabilities.argmax(dim=-1) == labels
    return correct.to(torch.get_default_dtype()).mean().item()


def classification_nll(probabilities: Tensor, labels: Tensor) -> float:
    p_true = probabilities.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return -p_true.clamp_min(_PROB_FLOOR).log().mean().item()


def brier_score(probabilities: Tensor, labels: Tensor) -> float:
    """Multiclass Brier score, summed over classes: 0 is perfect, 1 - 1/C is a uniform guess."""
    target = one_hot(labels, num_classes=probabilities.shape[-1]).to(probabilities.dtype)
    return (probabilities - target).square().sum(dim=-1).mean().item()


def expected_calibration_error(probabilities: Tensor, labels: Tensor, n_bins: int = 15) -> float:
    """Top-label ECE with equal-width confidence bins (L1), via torchmetrics' maintained kernel."""
    ece = multiclass_calibration_error(
        probabilities, labels, num_classes=probabilities.shape[-1], n_bins=n_bins, norm="l1"
    )
    return ece.item()
