import math
from statistics import NormalDist

import numpy as np
import pytest
import torch

from uncertainty.regression import RegressionSummary, summarize_regression


def _random_components(num_samples: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    mu = torch.randn(num_samples, n, generator=gen, dtype=torch.float64) * 2
    sigma = torch.rand(num_samples, n, generator=gen, dtype=torch.float64) + 0.2
    return mu, sigma


def test_moments_match_numpy() -> None:
    mu, sigma = _random_components(7, 5, seed=0)
    summary = summarize_regression(mu, sigma, 0.9)
    mu_np, sigma_np = mu.numpy(), sigma.numpy()
    epistemic = np.std(mu_np, axis=0, ddof=0)
    aleatoric = np.sqrt(np.mean(sigma_np**2, axis=0))
    np.testing.assert_allclose(summary.mean.numpy(), np.mean(mu_np, axis=0), rtol=1e-12)
    np.testing.assert_allclose(summary.epistemic_std.numpy(), epistemic, rtol=1e-12)
    np.testing.assert_allclose(summary.aleatoric_std.numpy(), aleatoric, rtol=1e-12)
    np.testing.assert_allclose(summary.std.numpy(), np.hypot(epistemic, aleatoric), rtol=1e-12)


def test_std_matches_monte_carlo_draws() -> None:
    mu, sigma = _random_components(4, 3, seed=1)
    n = 1_000_000
    gen = torch.Generator().manual_seed(2)
    component = torch.randint(0, 4, (n, 3), generator=gen)
    mu_drawn, sigma_drawn = mu.gather(0, component), sigma.gather(0, component)
    draws = mu_drawn + sigma_drawn * torch.randn(n, 3, generator=gen, dtype=torch.float64)
    summary = summarize_regression(mu, sigma, 0.9)
    # The sample std of 1e6 draws has relative error ~1/sqrt(2n) ≈ 7e-4 (a bit more for these
    # mildly heavy-tailed mixtures), so 5e-3 is a > 5-sigma band.
    torch.testing.assert_close(summary.std, draws.std(dim=0), rtol=5e-3, atol=0)
    # The sample mean's standard error is std / sqrt(n) = 1e-3·std.
    assert torch.all((summary.mean - draws.mean(dim=0)).abs() < 5e-3 * summary.std)


@pytest.mark.parametrize("level", [0.5, 0.9, 0.95])
def test_single_gaussian_interval_is_normal_quantiles(level: float) -> None:
    mu = torch.tensor([[1.5, -20.0]], dtype=torch.float64)
    sigma = torch.tensor([[0.3, 4.0]], dtype=torch.float64)
    summary = summarize_regression(mu, sigma, level)
    for n in range(2):
        dist = NormalDist(mu[0, n].item(), sigma[0, n].item())
        assert summary.lower[n].item() == pytest.approx(dist.inv_cdf((1 - level) / 2), rel=1e-12)
        assert summary.upper[n].item() == pytest.approx(dist.inv_cdf((1 + level) / 2), rel=1e-12)
    assert torch.equal(summary.epistemic_std, torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(summary.std, sigma[0])


def test_symmetric_mixture_interval_brackets_mean() -> None:
    mu = torch.tensor([[-1.0, 5.0], [1.0, 7.0]], dtype=torch.float64)
    sigma = torch.full((2, 2), 0.5, dtype=torch.float64)
    summary = summarize_regression(mu, sigma, 0.9)
    assert torch.all(summary.lower < summary.mean)
    assert torch.all(summary.mean < summary.upper)
    torch.testing.assert_close(summary.mean - summary.lower, summary.upper - summary.mean)


def test_summary_is_frozen_and_shaped() -> None:
    mu, sigma = _random_components(3, 4, seed=3)
    summary = summarize_regression(mu.float(), sigma.float(), 0.8)
    assert isinstance(summary, RegressionSummary)
    for field in ("mean", "epistemic_std", "aleatoric_std", "std", "lower", "upper"):
        value = getattr(summary, field)
        assert value.shape == (4,)
        assert value.dtype == torch.float32
    with pytest.raises(AttributeError):
        summary.mean = torch.zeros(4)  # type: ignore[misc]


@pytest.mark.parametrize("level", [0.0, 1.0, -0.5, 2.0, math.nan])
def test_rejects_bad_level(level: float) -> None:
    with pytest.raises(ValueError, match="level"):
        summarize_regression(torch.zeros(2, 3), torch.ones(2, 3), level)


def test_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="same shape"):
        summarize_regression(torch.zeros(2, 3), torch.ones(2, 4), 0.9)
