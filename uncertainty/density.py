"""The density of an equal-weight Gaussian mixture on a grid: the predictive curve to draw.

A sampled Bayesian regressor's predictive distribution is (1/S) Σ_s N(mu_s, sigma_s²)
(:mod:`uncertainty.mixture`). Its moments and quantiles summarise it; a picture of it needs
its density, which only the S components give: a two-humped or skewed predictive looks like
one in its curve, and would not in a Gaussian drawn from the mean and standard deviation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import torch
from torch import Tensor

__all__ = ["DEFAULT_WIDTH", "DensityGrid", "mixture_density_grid", "mixture_pdf"]

# The grid reaches this many component standard deviations past the outermost components:
# beyond it every component's density is below e^(-8) ≈ 3e-4 of its peak.
DEFAULT_WIDTH: Final = 4.0
# Rows are evaluated in chunks of at most this many S × rows × points elements (float64:
# 32 MiB), so that a wide request cannot ask for gigabytes at once.
_CHUNK_ELEMENTS: Final = 1 << 22
_INV_SQRT_2PI: Final = 1.0 / math.sqrt(2.0 * math.pi)


def mixture_pdf(x: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
    """p(x) = (1/S) Σ_s N(x; mu_s, sigma_s²) at every point of ``x``.

    ``mu`` and ``sigma`` are (S, *batch); ``x`` is (*batch, G), G points per batch element;
    the answer is (*batch, G), in ``x``'s dtype.
    """
    if mu.shape != sigma.shape or mu.dim() == 0:
        raise ValueError(
            f"mu and sigma must share a shape (S, *batch), got {tuple(mu.shape)} "
            f"and {tuple(sigma.shape)}"
        )
    if x.shape[:-1] != mu.shape[1:]:
        raise ValueError(f"x must be (*batch, G) for batch {tuple(mu.shape[1:])}, got {x.shape}")
    mu, sigma = mu.to(x.dtype).unsqueeze(-1), sigma.to(x.dtype).unsqueeze(-1)
    z = (x.unsqueeze(0) - mu) / sigma  # (S, *batch, G)
    return (torch.exp(-0.5 * z * z) / sigma).mean(dim=0) * _INV_SQRT_2PI


@dataclass(frozen=True)
class DensityGrid:
    """``pdf[n, g]`` is row n's mixture density at ``x[n, g]``; both (N, G), float64."""

    x: Tensor
    pdf: Tensor


def mixture_density_grid(
    mu: Tensor,
    sigma: Tensor,
    points: int,
    *,
    width: float = DEFAULT_WIDTH,
    include: Tensor | None = None,
) -> DensityGrid:
    """Each row's mixture density on ``points`` evenly spaced points, components (S, N).

    Row n's grid runs from min_s(mu_s - width·sigma_s) to max_s(mu_s + width·sigma_s): every
    component's bulk is inside it, however far apart they lie. ``include`` (N, K) are points
    each row's grid must hold exactly, merged in order (a drawing that shades an interval
    then has the curve's height at its ends, not an interpolation). Float64 throughout: the
    far tails are many orders of magnitude below the peak.
    """
    if points < 2:
        raise ValueError(f"a grid needs at least 2 points, got {points}")
    if mu.shape != sigma.shape or mu.dim() != 2:
        raise ValueError(
            f"mu and sigma must be (S, N), got {tuple(mu.shape)} and {tuple(sigma.shape)}"
        )
    mu, sigma = mu.to(torch.float64), sigma.to(torch.float64)
    lower = (mu - width * sigma).amin(dim=0)
    upper = (mu + width * sigma).amax(dim=0)
    steps = torch.linspace(0.0, 1.0, points, dtype=torch.float64, device=mu.device)
    x = lower[:, None] + (upper - lower)[:, None] * steps
    if include is not None:
        if include.dim() != 2 or include.shape[0] != mu.shape[1]:
            raise ValueError(f"include must be (N, K) for N = {mu.shape[1]}, got {include.shape}")
        x = torch.cat([x, include.to(x)], dim=1).sort(dim=1).values
    rows = max(1, _CHUNK_ELEMENTS // (mu.shape[0] * x.shape[1]))
    chunks = [
        mixture_pdf(
            x[start : start + rows], mu[:, start : start + rows], sigma[:, start : start + rows]
        )
        for start in range(0, mu.shape[1], rows)
    ]
    return DensityGrid(x=x, pdf=torch.cat(chunks) if chunks else torch.empty_like(x))
