"""Summaries of a sampled Bayesian regressor's predictive distribution."""

from dataclasses import dataclass

from torch import Tensor

from uncertainty.mixture import mixture_quantiles

__all__ = ["RegressionSummary", "summarize_regression"]


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


def summarize_regression(mu: Tensor, sigma: Tensor, level: float) -> RegressionSummary:
    """Summarise per-sample Gaussians ``mu``, ``sigma`` of shape (S, N) at credible ``level``.

    The interval comes from the mixture's exact quantiles rather than mean ± z·std: a
    multimodal or skewed posterior predictive is not Gaussian, and the latter would misstate it.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    if mu.shape != sigma.shape:
        raise ValueError(
            f"mu and sigma must have the same shape (S, N), got {tuple(mu.shape)} "
            f"and {tuple(sigma.shape)}"
        )
    epistemic_var = mu.var(dim=0, correction=0)  # divide by S: the samples ARE the mixture
    aleatoric_var = sigma.square().mean(dim=0)
    lower, upper = mixture_quantiles(mu, sigma, ((1.0 - level) / 2.0, (1.0 + level) / 2.0))
    return RegressionSummary(
        mean=mu.mean(dim=0),
        epistemic_std=epistemic_var.sqrt(),
        aleatoric_std=aleatoric_var.sqrt(),
        std=(epistemic_var + aleatoric_var).sqrt(),
        lower=lower,
        upper=upper,
    )
