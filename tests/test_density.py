"""The mixture density on a grid, against the pdf written out by hand; and as the service
computes it for a ``density=G`` request, beside the summaries of its batch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.predictive import fixed_posterior, regression_samples
from models.tabular import TabularBNN
from service.predictor import Job
from service.tasks.tabular_regression import DensityJob, RegressionPredictor
from uncertainty.density import DEFAULT_WIDTH, mixture_density_grid, mixture_pdf


def normal_pdf(x: float, mu: float, sigma: float) -> float:
    return math.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))


def test_pdf_of_a_two_component_mixture_is_the_average_of_the_gaussians() -> None:
    # Components N(0, 1) and N(3, 2²); at x = 1: (φ(1) + φ(-1)/2) / 2 / √(2π) by hand.
    mu = torch.tensor([[0.0], [3.0]])
    sigma = torch.tensor([[1.0], [2.0]])
    x = torch.tensor([[1.0, 3.0]], dtype=torch.float64)
    by_hand_at_1 = 0.5 * (math.exp(-0.5) / 1.0 + math.exp(-0.5) / 2.0) / math.sqrt(2 * math.pi)
    by_hand_at_3 = 0.5 * (math.exp(-4.5) / 1.0 + 1.0 / 2.0) / math.sqrt(2 * math.pi)
    pdf = mixture_pdf(x, mu, sigma)
    assert pdf.shape == (1, 2) and pdf.dtype == torch.float64
    assert pdf[0, 0].item() == pytest.approx(by_hand_at_1, rel=1e-12)
    assert pdf[0, 1].item() == pytest.approx(by_hand_at_3, rel=1e-12)


def test_grid_spans_every_component_and_integrates_to_one() -> None:
    # Two rows: a bimodal mixture with far-apart components, and a single Gaussian.
    mu = torch.tensor([[-5.0, 2.0], [5.0, 2.0], [0.5, 2.0]])
    sigma = torch.tensor([[0.5, 0.3], [1.0, 0.3], [0.7, 0.3]])
    grid = mixture_density_grid(mu, sigma, 2001)
    assert grid.x.shape == grid.pdf.shape == (2, 2001)
    assert grid.x[0, 0].item() == pytest.approx(-5.0 - DEFAULT_WIDTH * 0.5)
    assert grid.x[0, -1].item() == pytest.approx(5.0 + DEFAULT_WIDTH * 1.0)
    assert grid.x[1, 0].item() == pytest.approx(2.0 - DEFAULT_WIDTH * 0.3)
    area = torch.trapezoid(grid.pdf, grid.x, dim=1)
    # All but the tails beyond 4 standard deviations (6.3e-5 of each component).
    assert area.tolist() == pytest.approx([1.0, 1.0], abs=1e-4)
    for n in range(2):
        for g in (0, 777, 2000):
            x = grid.x[n, g].item()
            by_hand = sum(normal_pdf(x, mu[s, n].item(), sigma[s, n].item()) for s in range(3)) / 3
            assert grid.pdf[n, g].item() == pytest.approx(by_hand, rel=1e-9)


def test_included_points_are_merged_in_order_and_evaluated_exactly() -> None:
    mu = torch.tensor([[0.0], [1.0]])
    sigma = torch.tensor([[1.0], [1.0]])
    grid = mixture_density_grid(
        mu, sigma, 5, include=torch.tensor([[0.123, -1.5]], dtype=torch.float64)
    )
    xs = grid.x[0].tolist()
    assert xs == sorted(xs) and len(xs) == 7 and 0.123 in xs and -1.5 in xs
    at = xs.index(0.123)
    by_hand = (normal_pdf(0.123, 0.0, 1.0) + normal_pdf(0.123, 1.0, 1.0)) / 2
    assert grid.pdf[0, at].item() == pytest.approx(by_hand, rel=1e-12)


def test_many_rows_are_chunked_without_changing_any_row() -> None:
    generator = torch.Generator().manual_seed(0)
    mu = torch.randn(50, 300, generator=generator, dtype=torch.float64)
    sigma = torch.rand(50, 300, generator=generator, dtype=torch.float64) + 0.1
    whole = mixture_density_grid(mu, sigma, 400)  # 6e6 elements: more than one chunk
    alone = mixture_density_grid(mu[:, 123:124], sigma[:, 123:124], 400)
    assert torch.equal(whole.x[123], alone.x[0])
    assert torch.allclose(whole.pdf[123], alone.pdf[0], rtol=1e-14, atol=0)


def test_bad_shapes_and_grids_are_refused() -> None:
    mu = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="at least 2 points"):
        mixture_density_grid(mu, mu + 1, 1)
    with pytest.raises(ValueError, match=r"\(S, N\)"):
        mixture_density_grid(mu, torch.ones(3, 3), 10)
    with pytest.raises(ValueError, match="include"):
        mixture_density_grid(mu, mu + 1, 10, include=torch.zeros(3, 1))
    with pytest.raises(ValueError, match="x must be"):
        mixture_pdf(torch.zeros(3, 4), mu, mu + 1)


def test_a_density_job_gets_its_curve_from_its_own_draws_whatever_shares_its_batch() -> None:
    torch.manual_seed(0)
    model = TabularBNN(features=("a", "b", "c"), target="y", hidden=(8,), rho_init=-2.0)
    predictor = RegressionPredictor(model, max_samples=16)
    rows = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    plain = Job(rows[:2], 16, 0.95)
    drawn = DensityJob(rows[2:], 8, 0.9, density_points=40)
    together = predictor([plain, drawn])
    (alone,) = predictor([DensityJob(rows[2:], 8, 0.9, density_points=40)])

    assert together[0].density_x is None and together[0].density_pdf is None
    assert together[1].density_x.shape == together[1].density_pdf.shape == (3, 43)
    np.testing.assert_array_equal(together[1].density_x, alone.density_x)
    np.testing.assert_allclose(together[1].density_pdf, alone.density_pdf, rtol=1e-6)
    # By hand: the mixture of the first 8 seeded networks' Gaussians at the grid's points.
    mu, sigma = regression_samples(model, torch.from_numpy(rows[2:]), fixed_posterior(model, 8))
    x = torch.from_numpy(alone.density_x).double()
    expected = mixture_pdf(x, mu.double(), sigma.double()).numpy()
    np.testing.assert_allclose(alone.density_pdf, expected, rtol=1e-5)
    for row in range(3):  # the interval's ends and the mean are points of the grid
        assert {alone.lower[row], alone.mean[row], alone.upper[row]} <= set(alone.density_x[row])
