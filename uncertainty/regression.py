"""Summaries of a sampled Bayesian regressor's predictive distribution."""

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from uncertainty.mixture import mixture_quantiles

__all__ = [
    "RegressionSummary",
    "interval_quantiles",
    "regression_moments",
    "summarize_regression",
]


@dataclass(frozen=True)
class RegressionSummary:
    """Moments and a central interval of the mixture (1/S) Σ_s N(mu_s, sigma_s²), all (N,).

    By the law of total variance the mixture's variance splits exactly into the spread of the
    sample means (epistemic: shrinks with more data) plus the mean noise variance (aleatoric:
    irreducible), so ``std**2 == epistemic_std**2 + aleatoric_std**2``.
    """

    mean: Tensor
    epistemic_std: Tensor
    aleatoric_std: Tensor
    std: Tensor
    lower: Tensor
    upper: Tensor

    def stacked(self) -> Tensor:
        """The six summaries as the rows of one (6, N) tensor, in field order: what leaves
        the device, in one copy."""
        return torch.stack([getattr(self, field.name) for field in fields(self)])


def summarize_regression(mu: Tensor, sigma: Tensor, level: float) -> RegressionSummary:
    """Summarise per-sample Gaussians ``mu``, ``sigma`` of shape (S, N) at credible ``level``.

    The interval comes from the mixture's exact quantiles rather than mean ± z·std: a
    multimodal or skewed posterior predictive is not Gaussian, and the latter would misstate it.
    """
    lower, upper = mixture_quantiles(mu, sigma, interval_quantiles(level))
    return RegressionSummary(*regression_moments(mu, sigma), lower=lower, upper=upper)


def interval_quantiles(level: float) -> tuple[float, float]:
    """The quantiles that bound the central interval of probability ``level``."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    return (1.0 - level) / 2.0, (1.0 + level) / 2.0


def regression_moments(mu: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``mean``, ``epistemic_std``, ``aleatoric_std``, ``std`` of the mixture, each (N,)."""
    if mu.shape != sigma.shape:
        raise ValueError(
            f"mu and sigma must have the same shape (S, N), got {tuple(mu.shape)} "
            f"and {tuple(sigma.shape)}"
        )
    epistemic_var = mu.var(dim=0, correction=0)  # divide by S: the samples ARE the mixture
    aleatoric_var = sigma.square().mean(dim=0)
    return (
        mu.mean(dim=0),
        epistemic_var.sqrt(),
        aleatoric_var.sqrt(),
        (epistemic_var + aleatoric_var).sqrt(),
    )
