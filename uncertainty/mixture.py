"""Equal-weight Gaussian mixtures: the predictive distribution of a sampled Bayesian regressor.

Each posterior sample s contributes one Gaussian N(mu_s, sigma_s²); the posterior predictive is
their average. Its quantiles have no closed form, so they are found by bisection on the CDF.
"""

import torch
from torch import Tensor

__all__ = ["mixture_cdf", "mixture_quantile"]

# Each step halves the bracket: 2**-64 ≈ 5e-20 of its initial width is below float64 resolution
# even for brackets spanning several binades, so further steps could not change the result. A
# fixed count (rather than "until every element converged") keeps each element's answer
# independent of whatever else shares the batch.
_BISECTION_STEPS = 64


def _check_components(mu: Tensor, sigma: Tensor) -> None:
    if mu.shape != sigma.shape:
        raise ValueError(
            f"mu and sigma must have the same shape (S, *batch), got {tuple(mu.shape)} "
            f"and {tuple(sigma.shape)}"
        )
    if mu.dim() == 0:
        raise ValueError("mu and sigma need a leading sample dimension S, got 0-d tensors")


def _sum_dim0(t: Tensor) -> Tensor:
    """Pairwise sum over dim 0 built from elementwise adds only.

    ``Tensor.sum`` picks its accumulation order from the tensor's shape and device, so an
    element's rounding can change with its batch. Where the mixture CDF is flat (a gap between
    far-apart components) one ulp moves the quantile across the gap; elementwise adds round
    identically whatever else is in the batch.
    """
    while t.shape[0] > 1:
        half = t.shape[0] // 2
        pairs = t[:half] + t[half : 2 * half]
        t = torch.cat((pairs, t[2 * half :])) if t.shape[0] % 2 else pairs
    return t[0]


def mixture_cdf(x: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
    """P(Y <= x) for Y ~ (1/S) Σ_s N(mu_s, sigma_s²), reducing over the leading sample dim."""
    _check_components(mu, sigma)
    return _sum_dim0(torch.special.ndtr((x - mu) / sigma)) / mu.shape[0]


def mixture_quantile(mu: Tensor, sigma: Tensor, q: float) -> Tensor:
    """Exact q-quantile of the equal-weight mixture, one per batch element.

    The bracket is the range of the component q-quantiles m_s = mu_s + sigma_s·Φ⁻¹(q): every
    component CDF is <= q at min_s m_s and >= q at max_s m_s, and so is their average.
    Work happens in float64 because the CDF flattens in the tails, where float32 cannot tell
    neighbouring bisection points apart.
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must lie strictly between 0 and 1, got {q}")
    _check_components(mu, sigma)
    out_dtype = torch.result_type(mu, sigma)
    mu64, sigma64 = mu.to(torch.float64), sigma.to(torch.float64)

    z = torch.special.ndtri(mu64.new_tensor(q))
    component_quantiles = mu64 + sigma64 * z
    lo, hi = component_quantiles.amin(dim=0), component_quantiles.amax(dim=0)
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        below = mixture_cdf(mid, mu64, sigma64) < q
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return (0.5 * (lo + hi)).to(out_dtype)
