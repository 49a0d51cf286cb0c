"""Equal-weight Gaussian mixtures: the predictive distribution of a sampled Bayesian regressor.

Each posterior sample s contributes one Gaussian N(mu_s, sigma_s²); the posterior predictive is
their average. Its quantiles have no closed form: bisection and Newton steps on the CDF find them.
"""

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["MAX_STEPS", "QuantileSearch", "mixture_cdf", "mixture_quantile", "mixture_quantiles"]

# Safeguarded Newton steps (Numerical Recipes' ``rtsafe``): each evaluates the CDF and density,
# tightens the bracket by the CDF's sign, and takes the Newton step if it lands inside the
# bracket and at least halves the step before last, else bisects. Started from the Gaussian
# with the mixture's mean and variance, a near-Gaussian mixture converges in about five steps;
# where the density vanishes (a flat gap between far-apart components, where any point is a
# quantile) bisection still bounds the answer. An element stops (its value frozen) once its
# own step falls below the tolerance, so its answer never depends on what shares the batch.
MAX_STEPS = 128
# Relative to |x| + the mixture's standard deviation. The answers are float32 (24 bits, 6e-8
# relative): an element whose step fell below 1e-10 of its scale is settled far inside one
# float32 ulp (a Newton step's error is about its square). 1e-13 took one step more on most
# wine rows for the same float32 answers, on all 4,898 of them and 2,000 far outside.
_TOLERANCE = 1e-10


def _check_components(mu: Tensor, sigma: Tensor) -> None:
    if mu.shape != sigma.shape:
        raise ValueError(
            f"mu and sigma must have the same shape (S, *batch), got {tuple(mu.shape)} "
            f"and {tuple(sigma.shape)}"
        )
    if mu.dim() == 0:
        raise ValueError("mu and sigma need a leading sample dimension S, got 0-d tensors")


def _sum_dim0(t: Tensor) -> Tensor:
    """Sum over dim 0 in one fixed order, whatever the other dims hold: a running sum.

    ``Tensor.sum`` picks its accumulation order from the tensor's shape and device, so an
    element's rounding can change with its batch. Where the mixture CDF is flat (a gap between
    far-apart components) one ulp moves the quantile across the gap. A cumulative sum along a
    dim that is not the innermost adds each column's terms one after another, on the CPU and
    on CUDA alike: one kernel, where a pairwise sum from elementwise adds took one per level
    (2.5 against 33 µs for a one-row summary's sum over 100 draws, on this project's CPU).
    """
    return t.cumsum(dim=0)[-1]


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
    search = QuantileSearch(mu, sigma, qs)
    for _ in range(MAX_STEPS):
        search.step()
        if not search.searching():
            break
    return search.quantiles()


class QuantileSearch:
    """The state of :func:`mixture_quantiles`' search, advanced one step at a time in place.

    In place, so that a CUDA graph can capture the start and a run of steps and replay them
    on the same memory (:mod:`service.graphs`), checking :meth:`searching` between runs
    only: steps past an element's convergence leave its value as it was, so the answers
    equal the loop's that checks after every step.
    """

    def __init__(self, mu: Tensor, sigma: Tensor, qs: Sequence[float]) -> None:
        if not qs or not all(0.0 < q < 1.0 for q in qs):
            raise ValueError(f"each q must lie strictly between 0 and 1, got {list(qs)}")
        _check_components(mu, sigma)
        self.out_dtype = torch.result_type(mu, sigma)
        mu64, sigma64 = mu.to(torch.float64), sigma.to(torch.float64)
        # (Q, 1, ...), filled on the device: a copy from the host could not be captured.
        ones = (1,) * mu.dim()
        self.levels = torch.cat([mu64.new_full(ones, q) for q in qs])
        self.count = mu.shape[0]
        standard = torch.special.ndtri(self.levels)
        component_quantiles = mu64[:, None] + sigma64[:, None] * standard
        self.lo = component_quantiles.amin(dim=0)  # (Q, *batch)
        self.hi = component_quantiles.amax(dim=0)
        mean = _sum_dim0(mu64) / self.count
        self.scale = (_sum_dim0((mu64 - mean).square() + sigma64.square()) / self.count).sqrt()
        self.x = torch.minimum(torch.maximum(mean + self.scale * standard, self.lo), self.hi)
        self.mu64, self.sigma64 = mu64[:, None], sigma64[:, None]
        self.last_step = self.hi - self.lo
        # Half the step before last, the bound a Newton step must keep within (halving is
        # exact in binary floating point, so this is rtsafe's 2·|step| <= |step before last|).
        self.half_step_before_last = 0.5 * self.last_step
        self.active = torch.ones_like(self.x, dtype=torch.bool)

    def step(self) -> None:
        """One safeguarded Newton step for every element still searching.

        Each tensor operation costs a microsecond or more on the CPU whatever its size, so a
        one-row search costs about its count of them: none is spent twice.
        """
        x, lo, hi, levels = self.x, self.lo, self.hi, self.levels
        cdf, pdf = _cdf_and_pdf(x, self.mu64, self.sigma64, self.count)
        below = cdf < levels
        torch.where(below, x, lo, out=lo)
        torch.where(below, hi, x, out=hi)
        newton = x - (cdf - levels) / pdf
        # In the bracket (which an infinite or NaN point is not) and at least halving the step.
        in_bracket = newton.clamp(lo, hi) == newton
        use_newton = in_bracket & ((newton - x).abs() <= self.half_step_before_last)
        moved = torch.where(use_newton, newton, 0.5 * (lo + hi))
        torch.mul(self.last_step, 0.5, out=self.half_step_before_last)
        torch.abs(moved - x, out=self.last_step)
        # Not ``<=`` negated: a NaN step (from NaN inputs) ends the search instead of running
        # all MAX_STEPS.
        still = self.last_step > _TOLERANCE * (x.abs() + self.scale)
        torch.where(self.active, moved, x, out=x)
        self.active &= still

    def searching(self) -> bool:
        """Whether any element has not converged yet (a host sync)."""
        return bool(self.active.any())

    def quantiles(self) -> Tensor:
        return self.x.to(self.out_dtype)
