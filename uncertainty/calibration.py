"""Does the predictive uncertainty mean what it says? Calibration, sharpness and shift metrics.

A 90% interval is only useful if it holds the truth 90% of the time, and an epistemic term only
if it grows where the model has seen no data. These are the numbers that check it, computed from
the same S posterior draws the service answers with. Pure functions: tensors or arrays in,
numbers out; the maintained libraries do the work where they cover it (scoringrules for the
mixture CRPS, scikit-learn for AUROC, scipy for rank correlation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scoringrules
import torch
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score
from torch import Tensor

from uncertainty.metrics import interval_coverage, mean_interval_width
from uncertainty.mixture import mixture_cdf, mixture_quantile

__all__ = [
    "COVERAGE_LEVELS",
    "IntervalCalibration",
    "ReliabilityBins",
    "interval_calibration",
    "mixture_crps",
    "pit_values",
    "refusal_curve",
    "reliability_bins",
    "shift_auroc",
    "spread_error_correlation",
    "spread_skill_bins",
]

COVERAGE_LEVELS: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95, 0.99)

# The closed-form mixture CRPS builds an N × S × S array of component pairs; chunking the rows
# keeps it near 32 MiB in float64 whatever N is.
_CRPS_PAIRS_PER_CHUNK = 1 << 22

ArrayLike = Tensor | np.ndarray | Sequence[float]


def _numpy(values: ArrayLike) -> np.ndarray:
    if isinstance(values, Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _check_vector_pair(a: np.ndarray, b: np.ndarray, names: str) -> None:
    # An (N,) against an (N, 1) would broadcast to N × N and quietly give a wrong number.
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"{names} must be 1-d and the same length, got {a.shape} and {b.shape}")


@dataclass(frozen=True)
class IntervalCalibration:
    """Observed coverage and mean width of the central ``level`` interval.

    Coverage alone rewards arbitrarily wide intervals, so the width (sharpness) comes with it.
    """

    level: float
    coverage: float
    mean_width: float


def interval_calibration(
    target: Tensor, mu: Tensor, sigma: Tensor, levels: Sequence[float] = COVERAGE_LEVELS
) -> list[IntervalCalibration]:
    """Coverage of the exact central intervals of (1/S) Σ_s N(mu_s, sigma_s²) at each level.

    ``mu`` and ``sigma`` are S × N, ``target`` is N. The intervals are the mixture's quantiles,
    the ones the service returns, so this checks the served intervals and not a Gaussian
    stand-in for them.
    """
    points = []
    for level in levels:
        if not 0.0 < level < 1.0:
            raise ValueError(f"levels must lie strictly between 0 and 1, got {level}")
        lower = mixture_quantile(mu, sigma, (1.0 - level) / 2.0)
        upper = mixture_quantile(mu, sigma, (1.0 + level) / 2.0)
        points.append(
            IntervalCalibration(
                level=level,
                coverage=interval_coverage(target.to(lower.dtype), lower, upper),
                mean_width=mean_interval_width(lower, upper),
            )
        )
    return points


def pit_values(target: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
    """Probability integral transform F(y) of each target under its predictive mixture, (N,).

    For a calibrated forecast these are uniform on [0, 1]: a U shape means intervals too narrow,
    a hump too wide, a slope a biased mean. Float64, because the CDF saturates in the tails.
    """
    return mixture_cdf(target.to(torch.float64), mu.to(torch.float64), sigma.to(torch.float64))


def mixture_crps(target: Tensor, mu: Tensor, sigma: Tensor) -> float:
    """Mean CRPS of the equal-weight Gaussian mixtures (S × N) against ``target`` (N,).

    A proper score in the target's own units that rewards calibration and sharpness together,
    and unlike the NLL it stays bounded when a target lands far in a tail. The closed form
    (Grimit et al. 2006) comes from scoringrules' ``crps_mixnorm``.
    """
    if mu.shape != sigma.shape or mu.dim() != 2 or target.shape != mu.shape[1:]:
        raise ValueError(
            f"expected mu and sigma S × N and target N, got {tuple(mu.shape)}, "
            f"{tuple(sigma.shape)} and {tuple(target.shape)}"
        )
    y = _numpy(target).astype(np.float64)
    m = _numpy(mu).astype(np.float64).T  # N × S: scoringrules wants components last
    s = _numpy(sigma).astype(np.float64).T
    rows = max(1, _CRPS_PAIRS_PER_CHUNK // (m.shape[1] ** 2))
    total = 0.0
    for start in range(0, len(y), rows):
        chunk = slice(start, start + rows)
        scores = scoringrules.crps_mixnorm(y[chunk], m[chunk], s[chunk], backend="numpy")
        total += float(np.sum(scores))
    return total / len(y)


def spread_error_correlation(std: ArrayLike, abs_error: ArrayLike) -> float:
    """Spearman rank correlation of predicted std and absolute error.

    Does the spread track the error? Rank-based, because the question is whether larger
    predicted spreads go with larger errors, not whether the relation is linear.
    """
    spread, error = _numpy(std).astype(np.float64), _numpy(abs_error).astype(np.float64)
    _check_vector_pair(spread, error, "std and abs_error")
    return float(spearmanr(spread, error).statistic)


def spread_skill_bins(
    std: ArrayLike, error: ArrayLike, n_bins: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Mean predicted std and RMS error in ``n_bins`` equal-count bins of the predicted std.

    A calibrated predictive has RMS error equal to its std in every bin, so the pairs should
    lie on the diagonal; equal-count bins keep each point's noise alike.
    """
    spread, err = _numpy(std).astype(np.float64), _numpy(error).astype(np.float64)
    _check_vector_pair(spread, err, "std and error")
    if not 1 <= n_bins <= len(spread):
        raise ValueError(f"n_bins must be in [1, {len(spread)}], got {n_bins}")
    bins = np.array_split(np.argsort(spread, kind="stable"), n_bins)
    mean_std = np.array([spread[b].mean() for b in bins])
    rms_error = np.array([np.sqrt(np.mean(err[b] ** 2)) for b in bins])
    return mean_std, rms_error


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin mean confidence, accuracy and count of the top-label prediction.

    ``edges`` has ``n_bins + 1`` entries; an empty bin has confidence and accuracy NaN.
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray

    @property
    def calibration_error(self) -> float:
        """Count-weighted mean |accuracy - confidence|: the ECE this diagram pictures."""
        filled = self.count > 0
        gaps = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float(np.sum(self.count[filled] * gaps) / np.sum(self.count))


def reliability_bins(probabilities: Tensor, labels: Tensor, n_bins: int = 15) -> ReliabilityBins:
    """Equal-width confidence bins of a reliability diagram, ``probabilities`` N × C.

    The same bins as torchmetrics' calibration error, bin i holding confidences in
    [i/n, (i+1)/n), so the picture shows exactly the ECE that is reported; the one difference
    is that a confidence of exactly 1 joins the top bin instead of a bin of its own.
    """
    if probabilities.dim() != 2 or labels.shape != probabilities.shape[:1]:
        raise ValueError(
            f"expected probabilities N × C and labels N, got {tuple(probabilities.shape)} "
            f"and {tuple(labels.shape)}"
        )
    confidence, predicted = probabilities.detach().cpu().to(torch.float64).max(dim=-1)
    correct = (predicted == labels.detach().cpu()).to(torch.float64)
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)
    index = (torch.bucketize(confidence, edges, right=True) - 1).clamp(0, n_bins - 1)
    count = torch.bincount(index, minlength=n_bins).to(torch.float64)
    conf_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, confidence)
    correct_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, correct)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ReliabilityBins(
            edges=edges.numpy(),
            confidence=(conf_sum / count).numpy(),
            accuracy=(correct_sum / count).numpy(),
            count=count.numpy().astype(np.int64),
        )


def refusal_curve(
    correct: ArrayLike, uncertainty: ArrayLike, fractions: Sequence[float]
) -> np.ndarray:
    """Accuracy on the inputs kept after refusing the most uncertain ``fraction`` of them.

    Refusing round(fraction · N) inputs, highest ``uncertainty`` first (ties: the later input
    is refused first). If the uncertainty ranks errors well, accuracy climbs as more is
    refused; a random ranking keeps it flat.
    """
    hit = _numpy(correct).astype(np.float64)
    score = _numpy(uncertainty).astype(np.float64)
    _check_vector_pair(hit, score, "correct and uncertainty")
    order = np.argsort(score, kind="stable")  # most certain first
    cumulative = np.cumsum(hit[order])
    accuracies = []
    for fraction in fractions:
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"fractions must lie in [0, 1), got {fraction}")
        kept = len(hit) - round(fraction * len(hit))
        if kept < 1:
            raise ValueError(f"refusing {fraction:.0%} of {len(hit)} inputs leaves none")
        accuracies.append(cumulative[kept - 1] / kept)
    return np.asarray(accuracies)


def shift_auroc(clean_scores: ArrayLike, shifted_scores: ArrayLike) -> float:
    """AUROC of telling shifted inputs from clean ones by a score (higher: more shifted).

    The probability that a random shifted input scores above a random clean one, ties counting
    half: 0.5 is no better than chance. Computed by scikit-learn's ``roc_auc_score``.
    """
    clean, shifted = _numpy(clean_scores).ravel(), _numpy(shifted_scores).ravel()
    if len(clean) == 0 or len(shifted) == 0:
        raise ValueError("need at least one clean and one shifted score")
    labels = np.concatenate([np.zeros(len(clean)), np.ones(len(shifted))])
    return float(roc_auc_score(labels, np.concatenate([clean, shifted])))
