import math
from statistics import NormalDist

import numpy as np
import pytest
import torch

from uncertainty.mixture import MAX_STEPS, QuantileSearch, mixture_cdf, mixture_quantile


def _python_mixture_cdf(x: float, mus: list[float], sigmas: list[float]) -> float:
    return sum(NormalDist(m, s).cdf(x) for m, s in zip(mus, sigmas, strict=True)) / len(mus)


def _python_mixture_pdf(x: float, mus: list[float], sigmas: list[float]) -> float:
    return sum(NormalDist(m, s).pdf(x) for m, s in zip(mus, sigmas, strict=True)) / len(mus)


@pytest.mark.parametrize(
    ("mu", "sigma", "q"),
    [(0.0, 1.0, 0.5), (0.0, 1.0, 0.975), (3.5, 0.2, 0.025), (-120.0, 7.0, 0.999), (1e4, 1e-5, 0.1)],
)
def test_single_component_is_the_gaussian_quantile(mu: float, sigma: float, q: float) -> None:
    as_tensor = torch.tensor([[mu], [sigma]], dtype=torch.float64)
    got = mixture_quantile(as_tensor[:1], as_tensor[1:], q)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(NormalDist(mu, sigma).inv_cdf(q), rel=1e-12, abs=1e-12)


def test_cdf_matches_pure_python() -> None:
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(4, 6, generator=gen, dtype=torch.float64) * 3
    sigma = torch.rand(4, 6, generator=gen, dtype=torch.float64) + 0.1
    x = torch.randn(6, generator=gen, dtype=torch.float64) * 3
    got = mixture_cdf(x, mu, sigma)
    for n in range(6):
        expected = _python_mixture_cdf(x[n].item(), mu[:, n].tolist(), sigma[:, n].tolist())
        assert got[n].item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("num_components", [2, 3, 5, 20])
@pytest.mark.parametrize("q", [0.005, 0.025, 0.3, 0.5, 0.975])
def test_cdf_at_quantile_is_q(num_components: int, q: float) -> None:
    gen = torch.Generator().manual_seed(num_components)
    # Columns range from overlapping components to ones 1e4 apart with tiny spreads.
    spread = torch.tensor([0.1, 1.0, 10.0, 1e4], dtype=torch.float64)
    mu = torch.randn(num_components, 4, generator=gen, dtype=torch.float64) * spread
    sigma = torch.rand(num_components, 4, generator=gen, dtype=torch.float64) * 2 + 1e-3
    quantile = mixture_quantile(mu, sigma, q)
    for n in range(4):
        cdf = _python_mixture_cdf(quantile[n].item(), mu[:, n].tolist(), sigma[:, n].tolist())
        assert cdf == pytest.approx(q, abs=1e-6)


def test_monte_carlo_quantiles() -> None:
    mus, sigmas = [-2.0, 0.5, 4.0], [0.5, 1.0, 2.0]
    n = 1_000_000
    gen = torch.Generator().manual_seed(1)
    component = torch.randint(0, 3, (n,), generator=gen)
    draws = torch.tensor(mus)[component] + torch.tensor(sigmas)[component] * torch.randn(
        n, generator=gen
    )
    mu = torch.tensor(mus, dtype=torch.float64).unsqueeze(1)
    sigma = torch.tensor(sigmas, dtype=torch.float64).unsqueeze(1)
    for q in (0.025, 0.975):
        exact = mixture_quantile(mu, sigma, q).item()
        empirical = float(np.quantile(draws.numpy(), q))
        # Asymptotic standard error of a sample quantile: sqrt(q(1-q)/n) / density at it.
        std_error = math.sqrt(q * (1 - q) / n) / _python_mixture_pdf(exact, mus, sigmas)
        assert abs(empirical - exact) < 5 * std_error


def test_hand_derived_separated_components() -> None:
    # Components so far apart that each quantile sits inside one of them: with weight 1/2 each,
    # mixture level q < 1/2 is level 2q of the left component.
    mu = torch.tensor([[0.0, -1e6], [10.0, 1e6]], dtype=torch.float64)
    sigma = torch.tensor([[1e-6, 1.0], [1e-6, 1.0]], dtype=torch.float64)
    got = mixture_quantile(mu, sigma, 0.3)
    assert got[0].item() == pytest.approx(1e-6 * NormalDist().inv_cdf(0.6), rel=1e-6)
    assert got[1].item() == pytest.approx(-1e6 + NormalDist().inv_cdf(0.6), abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("q", [0.025, 0.5, 0.975])
def test_element_does_not_depend_on_its_batch(dtype: torch.dtype, q: float) -> None:
    gen = torch.Generator().manual_seed(2)
    # Far-apart narrow components put q = 0.5 in a flat gap of the CDF, where any difference
    # in rounding between batch layouts would move the answer.
    mu = torch.randn(8, 64, generator=gen, dtype=torch.float64) * torch.logspace(-3, 6, 64)
    sigma = torch.rand(8, 64, generator=gen, dtype=torch.float64) * 3 + 1e-4
    mu, sigma = mu.to(dtype), sigma.to(dtype)
    batched = mixture_quantile(mu, sigma, q)
    assert batched.dtype == dtype
    for n in (0, 31, 63):
        alone = mixture_quantile(mu[:, n], sigma[:, n], q)
        assert torch.equal(alone, batched[n])


def test_returns_input_dtype_and_batch_shape() -> None:
    mu = torch.randn(5, 2, 3)
    got = mixture_quantile(mu, torch.ones_like(mu), 0.9)
    assert got.shape == (2, 3)
    assert got.dtype == torch.float32
    expected = mixture_quantile(mu.double(), torch.ones_like(mu).double(), 0.9)
    torch.testing.assert_close(got, expected.float())


@pytest.mark.parametrize("q", [0.0, 1.0, -0.1, 1.5, math.nan])
def test_rejects_q_outside_open_unit_interval(q: float) -> None:
    with pytest.raises(ValueError, match="q must lie"):
        mixture_quantile(torch.zeros(2, 3), torch.ones(2, 3), q)


def test_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="same shape"):
        mixture_quantile(torch.zeros(2, 3), torch.ones(3, 3), 0.5)
    with pytest.raises(ValueError, match="same shape"):
        mixture_cdf(torch.zeros(3), torch.zeros(2, 3), torch.ones(2, 1))
    with pytest.raises(ValueError, match="sample dimension"):
        mixture_quantile(torch.tensor(0.0), torch.tensor(1.0), 0.5)


def test_steps_after_convergence_leave_the_answer_as_it_was() -> None:
    """What CUDA graphs rely on: they run steps in fours and look between runs only."""
    gen = torch.Generator().manual_seed(3)
    # Narrow far-apart components (a gap in the CDF, where the search bisects) beside a
    # near-Gaussian mixture (a few Newton steps): elements converge at very different steps.
    mu = torch.randn(16, 40, generator=gen, dtype=torch.float64) * torch.logspace(-2, 5, 40)
    sigma = torch.rand(16, 40, generator=gen, dtype=torch.float64) + 1e-3
    search = QuantileSearch(mu, sigma, (0.025, 0.5, 0.975))
    steps = 0
    while search.searching() and steps < MAX_STEPS:
        search.step()
        steps += 1
    converged = search.quantiles().clone()
    for _ in range(9):
        search.step()
    assert torch.equal(search.quantiles(), converged)
    expected = torch.stack([mixture_quantile(mu, sigma, q) for q in (0.025, 0.5, 0.975)])
    assert torch.equal(converged, expected)


def test_a_nan_component_ends_its_elements_search_at_once() -> None:
    # NaN out of a network (the service answers it with a 422) must not cost every other row
    # of its batch MAX_STEPS steps of search.
    mu = torch.tensor([[0.0, math.nan], [1.0, 2.0]], dtype=torch.float64)
    search = QuantileSearch(mu, torch.ones_like(mu), (0.025, 0.975))
    steps = 0
    while search.searching() and steps < MAX_STEPS:
        search.step()
        steps += 1
    assert steps < 10
    quantiles = search.quantiles()
    assert quantiles[:, 1].isnan().all()
    healthy = mixture_quantile(mu[:, :1], torch.ones(2, 1, dtype=torch.float64), 0.975)
    assert torch.equal(quantiles[1, :1], healthy)
