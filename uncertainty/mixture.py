"""Equal-weight Gaussian mixtures: the predictive distribution of a sampled Bayesian regressor.

Each posterior sample s contributes one Gaussian N(mu_s, sigma_s²); the posterior predictive is
their average. Its quantiles have no closed form: bisection and Newton steps on the CDF find them.
"""

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["mixture_cdf", "mixture_quantile", "mixture_quantiles"]

# Safeguarded Newton steps (Numerical Recipes' ``rtsafe``): each evaluates the CDF and density,
# tightens the bracket by the CDF's sign, and takes the Newton step if it lands inside the
# bracket and at least halves the step before last, else bisects. Started from the Gaussian
# with the mixture's mean and variance, a near-Gaussian mixture converges in about five steps;
# where the density vanishes (a flat gap between far-apart components, where any point is a
# quantile) bisection still bounds the answer. An element stops (its value frozen) once its
# own step falls below the tolerance, so its answer never depends on what shares the batch.
_MAX_STEPS = 128
_TOLERANCE = 1e-13  # relative to |x| + the mixture's standard deviation


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
    identically whatever else is in the batch. An odd row out is folded into row 0.
    """
    while t.shape[0] > 1:
        half = t.shape[0] // 2
        head = t[:half] + t[half : 2 * half]
        if t.shape[0] % 2:
            head[0] += t[-1]
        t = head
    return t[0]


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
    return _cdf(x, mu, sigma, mu.shape[0])


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

    count = mu.shape[0]
    component_quantiles = mu64[:, None] + sigma64[:, None] * torch.special.ndtri(levels)
    lo, hi = component_quantiles.amin(dim=0), component_quantiles.amax(dim=0)  # (Q, *batch)
    mean = _sum_dim0(mu64) / count
    scale = (_sum_dim0((mu64 - mean).square() + sigma64.square()) / count).sqrt()
    x = torch.minimum(torch.maximum(mean + scale * torch.special.ndtri(levels), lo), hi)
    mu64, sigma64 = mu64[:, None], sigma64[:, None]
    step_before_last = hi - lo
    last_step = step_before_last
    active = torch.ones_like(x, dtype=torch.bool)
    for _ in range(_MAX_STEPS):
        cdf, pdf = _cdf_and_pdf(x, mu64, sigma64, count)
        below = cdf < levels
        lo = torch.where(below, x, lo)
        hi = torch.where(below, hi, x)
        newton = x - (cdf - levels) / pdf
        step = newton - x
        use_newton = (
            torch.isfinite(newton)
            & (lo <= newton)
            & (newton <= hi)
            & (2 * step.abs() <= step_before_last)
        )
        moved = torch.where(use_newton, newton, 0.5 * (lo + hi))
        step = moved - x
        done = step.abs() <= _TOLERANCE * (x.abs() + scale)
        x = torch.where(active, moved, x)
        active &= ~done
        if not bool(active.any()):
            break
        step_before_last, last_step = last_step, step.abs()
    return x.to(out_dtype)
