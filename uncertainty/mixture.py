"""Equal-weight Gaussian mixtures: the predictive distribution of a sampled Bayesian regressor.

Each posterior sample s contributes one Gaussian N(mu_s, sigma_s²); the posterior predictive is
their average. Its quantiles have no closed form: bisection and Newton steps on the CDF find them.
"""

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["mixture_cdf", "mixture_quantile", "mixture_quantiles"]

# Bisection first narrows the bracket to 2**-24 ≈ 6e-8 of its width; then safeguarded Newton
# steps: each evaluates the CDF, tightens the bracket by its sign, and takes the Newton step if
# it stays inside, else bisects. Where the CDF is smooth each Newton step squares the relative
# error, so four reach float64 resolution; where the density vanishes (a flat gap between
# far-apart components, where any point is a quantile) the bracket bounds the answer. Fixed
# counts (rather than "until every element converged") keep each element's answer
# independent of whatever else shares the batch.
_BISECTION_STEPS = 24
_NEWTON_STEPS = 4


def _check_components(mu: Tensor, sigma: Tensor) -> None:
    if mu.shape != sigma.shape:
        raise ValueError(
            f"mu and sigma must have the same shape (S, *batch), got {tuple(mu.shape)} "
            f"and {tuple(sigma.shape)}"
        )
    if mu.dim() == 0:
        raise ValueError("mu and sigma need a leading sample dimension S, got 0-d tensors")


def _sum_dim0(t: Tensor) -> Tensor:
    """Pairwise sum over dim 0 (a power of two long) built from elementwise adds only.

    ``Tensor.sum`` picks its accumulation order from the tensor's shape and device, so an
    element's rounding can change with its batch. Where the mixture CDF is flat (a gap between
    far-apart components) one ulp moves the quantile across the gap; elementwise adds round
    identically whatever else is in the batch.
    """
    while t.shape[0] > 1:
        half = t.shape[0] // 2
        t = t[:half] + t[half:]
    return t[0]


def _pad_components(mu: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
    """Pad S up to a power of two with components whose CDF is exactly 0 everywhere."""
    s = mu.shape[0]
    padding = (1 << (s - 1).bit_length()) - s
    if padding == 0:
        return mu, sigma
    pad_shape = (padding, *mu.shape[1:])
    return (
        torch.cat((mu, mu.new_full(pad_shape, torch.inf))),
        torch.cat((sigma, sigma.new_ones(pad_shape))),
    )


def _cdf(x: Tensor, mu: Tensor, sigma: Tensor, count: int) -> Tensor:
    return _sum_dim0(torch.special.ndtr((x - mu) / sigma)) / count


def _cdf_and_pdf(x: Tensor, mu: Tensor, sigma: Tensor, count: int) -> tuple[Tensor, Tensor]:
    z = (x - mu) / sigma
    density = torch.exp(-0.5 * z * z) / sigma
    return (
        _sum_dim0(torch.special.ndtr(z)) / count,
        _sum_dim0(density) / (count * math.sqrt(2 * math.pi)),
    )


def mixture_cdf(x: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
    """P(Y <= x) for Y ~ (1/S) Σ_s N(mu_s, sigma_s²), reducing over the leading sample dim."""
    _check_components(mu, sigma)
    return _cdf(x, *_pad_components(mu, sigma), mu.shape[0])


def mixture_quantile(mu: Tensor, sigma: Tensor, q: float) -> Tensor:
    """Exact q-quantile of the equal-weight mixture, one per batch element."""
    return mixture_quantiles(mu, sigma, (q,))[0]


def mixture_quantiles(mu: Tensor, sigma: Tensor, qs: Sequence[float]) -> Tensor:
    """Exact quantiles of the equal-weight mixture at each of ``qs``: shape (len(qs), *batch).

    The bracket is the range of the component q-quantiles m_s = mu_s + sigma_s·Φ⁻¹(q): every
    component CDF is <= q at min_s m_s and >= q at max_s m_s, and so is their average. All
    levels share one bisection, so asking for both ends of an interval costs one loop.
    Work happens in float64 because the CDF flattens in the tails, where float32 cannot tell
    neighbouring bisection points apart.
    """
    if not qs or not all(0.0 < q < 1.0 for q in qs):
        raise ValueError(f"each q must lie strictly between 0 and 1, got {list(qs)}")
    _check_components(mu, sigma)
    out_dtype = torch.result_type(mu, sigma)
    mu64, sigma64 = mu.to(torch.float64), sigma.to(torch.float64)
    levels = mu64.new_tensor(qs).reshape(-1, *([1] * (mu.dim() - 1)))  # (Q, 1, ...)

    component_quantiles = mu64[:, None] + sigma64[:, None] * torch.special.ndtri(levels)
    lo, hi = component_quantiles.amin(dim=0), component_quantiles.amax(dim=0)  # (Q, *batch)
    padded_mu, padded_sigma = (t[:, None] for t in _pad_components(mu64, sigma64))
    count = mu.shape[0]
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        below = _cdf(mid, padded_mu, padded_sigma, count) < levels
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    x = 0.5 * (lo + hi)
    for _ in range(_NEWTON_STEPS):
        cdf, pdf = _cdf_and_pdf(x, padded_mu, padded_sigma, count)
        below = cdf < levels
        lo = torch.where(below, x, lo)
        hi = torch.where(below, hi, x)
        newton = x - (cdf - levels) / pdf
        inside = torch.isfinite(newton) & (lo <= newton) & (newton <= hi)
        x = torch.where(inside, newton, 0.5 * (lo + hi))
    return x.to(out_dtype)
