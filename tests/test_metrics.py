import math
from statistics import NormalDist

import pytest
import torch

from uncertainty.metrics import (
    accuracy,
    brier_score,
    classification_nll,
    expected_calibration_error,
    interval_coverage,
    mean_interval_width,
    mixture_nll,
    rmse,
)


def test_rmse_hand_case() -> None:
    assert rmse(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0])) == pytest.approx(math.sqrt(2.5))
    assert rmse(torch.tensor([3, 3]), torch.tensor([3, 3])) == 0.0


def test_rmse_rejects_broadcasting_shapes() -> None:
    with pytest.raises(ValueError, match="same shape"):
        rmse(torch.zeros(3, 1), torch.zeros(3))


def test_mixture_nll_single_component_is_gaussian_nll() -> None:
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(50, generator=gen, dtype=torch.float64) * 3
    mu = torch.randn(1, 50, generator=gen, dtype=torch.float64)
    sigma = torch.rand(1, 50, generator=gen, dtype=torch.float64) + 0.1
    expected = -torch.distributions.Normal(mu[0], sigma[0]).log_prob(y).mean().item()
    assert mixture_nll(y, mu, sigma) == pytest.approx(expected, rel=1e-12)


def test_mixture_nll_two_components_hand_case() -> None:
    y = [0.3, -2.0]
    mus, sigmas = [[-1.0, 0.0], [1.0, 4.0]], [[0.5, 1.0], [2.0, 0.1]]
    per_example = [
        -math.log(0.5 * NormalDist(mus[0][n], sigmas[0][n]).pdf(y[n])
                  + 0.5 * NormalDist(mus[1][n], sigmas[1][n]).pdf(y[n]))
        for n in range(2)
    ]  # fmt: skip
    got = mixture_nll(torch.tensor(y), torch.tensor(mus), torch.tensor(sigmas))
    assert got == pytest.approx(sum(per_example) / 2, rel=1e-5)


def test_mixture_nll_is_finite_far_from_every_component() -> None:
    # The density underflows to 0 here (z = 1000), but the log-density is 0.5·z² + log √(2π).
    got = mixture_nll(torch.tensor([1000.0]), torch.zeros(3, 1), torch.ones(3, 1))
    assert got == pytest.approx(0.5 * 1000.0**2 + 0.5 * math.log(2 * math.pi))


def test_interval_coverage_and_width_hand_case() -> None:
    y = torch.tensor([0.0, 1.0, 2.0, 3.0])
    lower = torch.tensor([0.0, 1.5, 1.0, -1.0])
    upper = torch.tensor([1.0, 2.5, 2.0, 2.0])
    # Both ends inclusive: rows 0 and 2 sit on a boundary and count as covered.
    assert interval_coverage(y, lower, upper) == pytest.approx(0.5)
    assert mean_interval_width(lower, upper) == pytest.approx((1 + 1 + 1 + 3) / 4)


def test_calibrated_gaussian_interval_covers_its_level() -> None:
    n = 100_000
    y = torch.randn(n, generator=torch.Generator().manual_seed(3))
    half_width = NormalDist().inv_cdf(0.975)
    lower, upper = torch.full((n,), -half_width), torch.full((n,), half_width)
    # Binomial standard error sqrt(0.95·0.05/n) ≈ 6.9e-4; allow 5 of them.
    tolerance = 5 * math.sqrt(0.95 * 0.05 / n)
    assert interval_coverage(y, lower, upper) == pytest.approx(0.95, abs=tolerance)
    assert mean_interval_width(lower, upper) == pytest.approx(2 * half_width)


def test_accuracy_hand_case() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.7, 0.3]])
    assert accuracy(probs, torch.tensor([0, 1, 0, 1])) == pytest.approx(0.5)


def test_classification_nll_hand_case() -> None:
    probs = torch.tensor([[0.5, 0.5, 0.0], [0.25, 0.0, 0.75]], dtype=torch.float64)
    labels = torch.tensor([1, 2])
    assert classification_nll(probs, labels) == pytest.approx((math.log(2) + math.log(4 / 3)) / 2)


def test_classification_nll_stays_finite_for_zero_probability() -> None:
    got = classification_nll(torch.tensor([[1.0, 0.0]]), torch.tensor([1]))
    assert math.isfinite(got)
    assert got > 20  # still a heavy penalty


def test_brier_score_extremes_and_hand_case() -> None:
    labels = torch.tensor([0, 2, 1, 2])
    perfect = torch.nn.functional.one_hot(labels, 3).float()
    assert brier_score(perfect, labels) == 0.0
    for c in (2, 3, 10):
        uniform = torch.full((4, c), 1 / c)
        assert brier_score(uniform, labels.clamp(max=c - 1)) == pytest.approx(1 - 1 / c)
    # (0.7 - 1)² + (0.3 - 0)² = 0.18
    assert brier_score(torch.tensor([[0.7, 0.3]]), torch.tensor([0])) == pytest.approx(0.18)


def test_ece_of_constant_overconfident_predictor() -> None:
    probs = torch.tensor([[0.7, 0.3]]).expand(10, 2)
    labels = torch.tensor([0, 1] * 5)
    assert expected_calibration_error(probs, labels) == pytest.approx(abs(0.7 - 0.5), abs=1e-6)


def test_ece_two_bin_hand_case() -> None:
    # Bin at confidence 0.9: accuracy 1, gap 0.1. Bin at 0.62: accuracy 1/2, gap 0.12.
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.38, 0.62], [0.38, 0.62]])
    labels = torch.tensor([0, 0, 1, 0])
    expected = 0.5 * 0.1 + 0.5 * 0.12
    assert expected_calibration_error(probs, labels) == pytest.approx(expected, abs=1e-6)


def test_ece_of_confident_correct_predictor_is_zero() -> None:
    labels = torch.tensor([0, 1, 2, 1])
    probs = torch.nn.functional.one_hot(labels, 3).float()
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-7)
