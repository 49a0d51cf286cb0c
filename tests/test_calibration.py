import math
from statistics import NormalDist

import numpy as np
import pytest
import torch

import uncertainty.calibration as calibration
from uncertainty.calibration import (
    interval_calibration,
    mixture_crps,
    pit_values,
    refusal_curve,
    reliability_bins,
    shift_auroc,
    spread_error_correlation,
    spread_skill_bins,
)
from uncertainty.metrics import expected_calibration_error

LEVELS = (0.5, 0.8, 0.9, 0.95, 0.99)


def _calibrated_mixture_sample(
    n: int, s: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Targets drawn from the very mixtures that predict them: calibrated by construction."""
    gen = torch.Generator().manual_seed(seed)
    mu = torch.randn(s, n, generator=gen, dtype=torch.float64) * 2
    sigma = torch.rand(s, n, generator=gen, dtype=torch.float64) + 0.2
    component = torch.randint(s, (n,), generator=gen)
    rows = torch.arange(n)
    y = mu[component, rows] + sigma[component, rows] * torch.randn(
        n, generator=gen, dtype=torch.float64
    )
    return y, mu, sigma


def _sampling_tolerance(level: float, n: int) -> float:
    return 4 * math.sqrt(level * (1 - level) / n)  # four binomial standard errors


def test_coverage_of_a_calibrated_gaussian_matches_each_level() -> None:
    n = 20_000
    y, mu, sigma = _calibrated_mixture_sample(n, s=1)
    points = interval_calibration(y, mu, sigma, LEVELS)
    assert [p.level for p in points] == list(LEVELS)
    for p in points:
        assert p.coverage == pytest.approx(p.level, abs=_sampling_tolerance(p.level, n))
        # A single Gaussian's central interval is mu ± z·sigma: width 2·z·mean(sigma).
        z = NormalDist().inv_cdf((1 + p.level) / 2)
        assert p.mean_width == pytest.approx(2 * z * sigma.mean().item(), rel=1e-9)


def test_coverage_of_a_calibrated_mixture_matches_each_level() -> None:
    n = 20_000
    y, mu, sigma = _calibrated_mixture_sample(n, s=5, seed=1)
    for p in interval_calibration(y, mu, sigma, LEVELS):
        assert p.coverage == pytest.approx(p.level, abs=_sampling_tolerance(p.level, n))


def test_coverage_exposes_overconfident_intervals() -> None:
    y, mu, sigma = _calibrated_mixture_sample(5_000, s=1, seed=2)
    narrow = interval_calibration(y, mu, sigma / 2, (0.9,))[0]
    wide = interval_calibration(y, mu, sigma * 2, (0.9,))[0]
    # Half the sigma: P(|Z| < 2·1.645 / 2) = P(|Z| < 0.82) ≈ 0.59; double: P(|Z| < 3.29) ≈ 0.999.
    assert narrow.coverage == pytest.approx(0.588, abs=0.03)
    assert wide.coverage > 0.995


def test_coverage_rejects_levels_outside_0_1() -> None:
    with pytest.raises(ValueError, match="strictly between"):
        interval_calibration(torch.zeros(2), torch.zeros(1, 2), torch.ones(1, 2), (1.0,))


def test_pit_hand_cases() -> None:
    mus, sigmas = [[0.0, 1.0], [2.0, 1.0]], [[1.0, 2.0], [0.5, 2.0]]
    y = [0.5, 3.0]
    expected = [
        0.5 * (NormalDist(mus[0][n], sigmas[0][n]).cdf(y[n])
               + NormalDist(mus[1][n], sigmas[1][n]).cdf(y[n]))
        for n in range(2)
    ]  # fmt: skip
    got = pit_values(torch.tensor(y), torch.tensor(mus), torch.tensor(sigmas))
    assert got.dtype == torch.float64
    assert got.tolist() == pytest.approx(expected, rel=1e-6)


def test_pit_of_a_calibrated_mixture_is_uniform() -> None:
    y, mu, sigma = _calibrated_mixture_sample(20_000, s=4, seed=3)
    pit = pit_values(y, mu, sigma).numpy()
    counts, _ = np.histogram(pit, bins=10, range=(0, 1))
    # Each decile holds 2000 ± 4·sqrt(2000·0.9) ≈ ±170.
    assert np.all(np.abs(counts - 2000) < 170)


def _gaussian_crps(y: float, mu: float, sigma: float) -> float:
    """Gneiting & Raftery's closed form for one Gaussian, as an independent reference."""
    z = (y - mu) / sigma
    unit = NormalDist()
    return sigma * (z * (2 * unit.cdf(z) - 1) + 2 * unit.pdf(z) - 1 / math.sqrt(math.pi))


def test_crps_of_one_gaussian_matches_the_closed_form() -> None:
    y, mu, sigma = [0.0, 1.5, -3.0], [0.0, 0.5, 1.0], [1.0, 0.5, 2.0]
    expected = sum(map(_gaussian_crps, y, mu, sigma)) / 3
    got = mixture_crps(torch.tensor(y), torch.tensor([mu]), torch.tensor([sigma]))
    assert got == pytest.approx(expected, rel=1e-10)
    # A point at the target: CRPS = sigma·(2φ(0) - 1/√π) = sigma·(√2 - 1)/√π.
    assert _gaussian_crps(0.0, 0.0, 1.0) == pytest.approx((math.sqrt(2) - 1) / math.sqrt(math.pi))


def test_crps_of_a_mixture_matches_monte_carlo() -> None:
    # CRPS(F, y) = E|X - y| - ½ E|X - X'|, X, X' independent draws from F.
    mu = torch.tensor([[-1.0], [0.5], [3.0]], dtype=torch.float64)
    sigma = torch.tensor([[0.5], [1.0], [0.3]], dtype=torch.float64)
    y = 0.7
    rng = np.random.default_rng(0)
    m = 400_000

    def draw() -> np.ndarray:
        k = rng.integers(3, size=m)
        return mu[k, 0].numpy() + sigma[k, 0].numpy() * rng.standard_normal(m)

    x, x_prime = draw(), draw()
    monte_carlo = np.mean(np.abs(x - y)) - 0.5 * np.mean(np.abs(x - x_prime))
    assert mixture_crps(torch.tensor([y], dtype=torch.float64), mu, sigma) == pytest.approx(
        monte_carlo, rel=0.01
    )


def test_crps_is_the_same_however_rows_are_chunked(monkeypatch: pytest.MonkeyPatch) -> None:
    y, mu, sigma = _calibrated_mixture_sample(50, s=6, seed=4)
    whole = mixture_crps(y, mu, sigma)
    monkeypatch.setattr(calibration, "_CRPS_PAIRS_PER_CHUNK", 7 * 36)  # 7 rows a chunk
    assert mixture_crps(y, mu, sigma) == pytest.approx(whole, rel=1e-12)
    per_row = [mixture_crps(y[i : i + 1], mu[:, i : i + 1], sigma[:, i : i + 1]) for i in range(50)]
    assert whole == pytest.approx(sum(per_row) / 50, rel=1e-12)


def test_crps_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="S × N"):
        mixture_crps(torch.zeros(3), torch.zeros(2, 4), torch.ones(2, 4))


def test_constant_predictor_has_the_known_ece() -> None:
    # Always 70% sure of class 0, right 60% of the time: one bin, ECE = |0.6 - 0.7| = 0.1.
    n = 1000
    probs = torch.tensor([0.7, 0.1, 0.1, 0.1]).repeat(n, 1)
    labels = torch.zeros(n, dtype=torch.long)
    labels[600:] = torch.tensor([1, 2, 3]).repeat(134)[:400]
    bins = reliability_bins(probs, labels, n_bins=15)
    filled = np.flatnonzero(bins.count)
    assert filled.tolist() == [10]  # 0.7 lies in [10/15, 11/15)
    assert bins.count[10] == n
    assert bins.confidence[10] == pytest.approx(0.7)
    assert bins.accuracy[10] == pytest.approx(0.6)
    assert np.isnan(bins.accuracy[0]) and np.isnan(bins.confidence[0])
    assert bins.calibration_error == pytest.approx(0.1)
    assert expected_calibration_error(probs, labels, n_bins=15) == pytest.approx(
        0.1, abs=1e-4
    )  # float32 sums


def test_reliability_bins_reproduce_torchmetrics_ece() -> None:
    gen = torch.Generator().manual_seed(5)
    probs = torch.distributions.Dirichlet(torch.full((10,), 0.3)).sample((3000,))
    labels = torch.multinomial(probs, 1, generator=gen).squeeze(1)  # calibrated-ish
    labels[:500] = torch.randint(10, (500,), generator=gen)  # …and some noise
    bins = reliability_bins(probs, labels)
    assert bins.edges.tolist() == pytest.approx(np.linspace(0, 1, 16).tolist())
    assert bins.count.sum() == 3000
    assert bins.calibration_error == pytest.approx(
        expected_calibration_error(probs, labels, n_bins=15), abs=1e-6
    )


def test_reliability_bins_put_certainty_in_the_top_bin() -> None:
    bins = reliability_bins(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]), 15)
    assert bins.count[-1] == 2 and bins.accuracy[-1] == 0.5


def test_refusal_curve_hand_case() -> None:
    correct = [True, False, True, False]
    uncertainty = [0.1, 0.9, 0.2, 0.5]
    # 0%: 2/4; 25% refuses row 1 → 2/3; 50% refuses rows 1 and 3 → 2/2.
    got = refusal_curve(correct, uncertainty, [0.0, 0.25, 0.5])
    assert got.tolist() == pytest.approx([0.5, 2 / 3, 1.0])
    # An uncertainty that ranks the errors first would lose accuracy instead.
    assert refusal_curve(correct, [0.9, 0.1, 0.8, 0.2], [0.5]).tolist() == [0.0]


def test_refusal_curve_breaks_ties_by_refusing_later_rows() -> None:
    got = refusal_curve(torch.tensor([True, True, False, False]), torch.zeros(4), [0.5])
    assert got.tolist() == [1.0]


def test_refusal_curve_rejects_refusing_everything() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        refusal_curve([True, False], [0.1, 0.2], [1.0])
    with pytest.raises(ValueError, match="same length"):
        refusal_curve([True, False], [0.1], [0.0])


def test_shift_auroc_hand_cases() -> None:
    # Pairs (clean, shifted): 0.1<0.3, 0.2<0.3, 0.1<0.15 are right, 0.2>0.15 is wrong: 3/4.
    assert shift_auroc([0.1, 0.2], [0.3, 0.15]) == pytest.approx(0.75)
    assert shift_auroc(np.array([0.0, 0.1]), torch.tensor([0.5, 0.6])) == 1.0
    assert shift_auroc([0.2, 0.2], [0.2, 0.2]) == 0.5  # ties count half
    with pytest.raises(ValueError, match="at least one"):
        shift_auroc([], [0.1])


def test_spread_error_correlation_and_skill_bins() -> None:
    rng = np.random.default_rng(6)
    std = rng.uniform(0.2, 2.0, size=20_000)
    error = std * rng.standard_normal(std.size)  # calibrated: RMS error = std in every bin
    mean_std, rms = spread_skill_bins(std, error, n_bins=10)
    assert np.all(np.diff(mean_std) > 0)
    assert rms == pytest.approx(mean_std, rel=0.1)
    assert spread_error_correlation(std, np.abs(error)) > 0.3
    assert spread_error_correlation([1.0, 2.0, 3.0], [0.1, 0.5, 0.7]) == pytest.approx(1.0)
    assert spread_error_correlation(std, rng.permutation(np.abs(error))) == pytest.approx(
        0.0, abs=0.05
    )
