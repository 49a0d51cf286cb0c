"""Scores for the report: wine intervals and shift; CIFAR reliability, refusal, corruption
shift and far out-of-distribution digits.

Each part scores every model of its family in the repository (``wine-*`` on the wine split,
``cifar-*`` on the CIFAR-10 test images), one network or an ensemble alike, with the draws
the service answers with (:func:`report_posterior`); :mod:`training.report.targets` checks
the numbers against the issue's targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from models.images import to_model_input
from models.layers import Posterior
from models.predictive import (
    class_probability_samples,
    draws_available,
    fixed_posterior,
    member_count,
    network_count,
    regression_samples,
)
from training.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from training.datasets.images import ImageSet
from training.datasets.wine import WineSplit
from training.report.ood import DIGITS_SOURCE
from uncertainty.calibration import (
    COVERAGE_LEVELS,
    IntervalCalibration,
    ReliabilityBins,
    interval_calibration,
    mixture_crps,
    pit_values,
    refusal_curve,
    reliability_bins,
    shift_auroc,
    spread_error_correlation,
)
from uncertainty.classification import summarize_classification
from uncertainty.metrics import (
    accuracy,
    classification_nll,
    expected_calibration_error,
    mixture_nll,
    rmse,
)
from uncertainty.regression import summarize_regression

# The report's parts, each a family of the repository: part F scores every F-* model.
TASKS = ("wine", "cifar")

WINE_SHIFT_STEPS = (0, 1, 2, 4)  # training standard deviations
REFUSAL_FRACTIONS = tuple(round(0.05 * i, 2) for i in range(11))  # 0 … 50%
ECE_BINS = 15
SUMMARY_LEVEL = 0.95  # the classification summary needs a level; only its entropies are used
NOTES_FILE = "NOTES.md"
DPI = 120


# ---------------------------------------------------------------------------- results


@dataclass
class WineResult:
    name: str
    members: int  # networks of the ensemble; 1 for one network
    samples: int
    rmse: float
    nll: float
    crps: float
    calibration: list[IntervalCalibration]
    spread_correlation: float
    shift_epistemic: list[float]
    shift_aleatoric: list[float]
    shift_auroc: float | None
    pit: np.ndarray = field(repr=False)
    std: np.ndarray = field(repr=False)
    abs_error: np.ndarray = field(repr=False)

    @property
    def has_epistemic(self) -> bool:
        """One deterministic network has no epistemic term, so nothing to rank shift by."""
        return self.shift_auroc is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "members": self.members,
            "samples": self.samples,
            "rmse": self.rmse,
            "nll": self.nll,
            "crps": self.crps,
            "coverage": {f"{p.level:g}": p.coverage for p in self.calibration},
            "mean_interval_width": {f"{p.level:g}": p.mean_width for p in self.calibration},
            "spearman_std_abs_error": self.spread_correlation,
            "shift": {
                "k": list(WINE_SHIFT_STEPS),
                "mean_epistemic_std": self.shift_epistemic,
                "mean_aleatoric_std": self.shift_aleatoric,
                f"auroc_clean_vs_k{WINE_SHIFT_STEPS[-1]}_epistemic": self.shift_auroc,
            },
        }


@dataclass
class FarOodResult:
    """Telling far out-of-distribution images (the digits) from the CIFAR-10 test images.

    The AUROC by epistemic term is None for a model of one deterministic network: it has none.
    """

    source: str
    images: int  # far-OOD images
    test_images: int  # CIFAR-10 test images they are told from
    mean_epistemic_test: float
    mean_epistemic_ood: float
    mean_total_test: float
    mean_total_ood: float
    auroc_epistemic: float | None
    auroc_total: float
    epistemic_test: np.ndarray = field(repr=False)
    epistemic_ood: np.ndarray = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "images": self.images,
            "test_images": self.test_images,
            "mean_epistemic_nats": {
                "test": self.mean_epistemic_test,
                "ood": self.mean_epistemic_ood,
            },
            "mean_total_nats": {"test": self.mean_total_test, "ood": self.mean_total_ood},
            "auroc_epistemic": self.auroc_epistemic,
            "auroc_total": self.auroc_total,
        }


@dataclass
class CifarResult:
    name: str
    members: int  # networks of the ensemble; 1 for one network
    samples: int
    images: int
    classes: int
    accuracy: float
    nll: float
    ece: float
    bins: ReliabilityBins
    refusal_total: np.ndarray
    refusal_epistemic: np.ndarray
    shift_images: int
    shift_epistemic: dict[str, list[float]]  # per corruption, severity 0 (clean) … 5
    shift_accuracy: dict[str, list[float]]
    auroc_epistemic: dict[str, float]  # clean vs severity 5
    auroc_total: dict[str, float]
    far_ood: FarOodResult

    def to_json(self) -> dict[str, Any]:
        return {
            "members": self.members,
            "samples": self.samples,
            "test_images": self.images,
            "accuracy": self.accuracy,
            "nll": self.nll,
            f"ece_{ECE_BINS}": self.ece,
            "reliability": {
                "edges": self.bins.edges.tolist(),
                "confidence": _nan_to_none(self.bins.confidence),
                "accuracy": _nan_to_none(self.bins.accuracy),
                "count": self.bins.count.tolist(),
            },
            "refusal": {
                "fraction": list(REFUSAL_FRACTIONS),
                "accuracy_by_total": self.refusal_total.tolist(),
                "accuracy_by_epistemic": self.refusal_epistemic.tolist(),
            },
            "shift": {
                "images": self.shift_images,
                "severity": [0, *SEVERITIES],
                "mean_epistemic_nats": self.shift_epistemic,
                "accuracy": self.shift_accuracy,
                "auroc_clean_vs_5_epistemic": self.auroc_epistemic,
                "auroc_clean_vs_5_total": self.auroc_total,
            },
            "far_ood": self.far_ood.to_json(),
        }


def _nan_to_none(values: np.ndarray) -> list[float | None]:
    # JSON has no NaN; an empty reliability bin is "no value", not a number.
    return [None if np.isnan(v) else float(v) for v in values]


def report_posterior(model: nn.Module, samples: int) -> Posterior | None:
    """The draws the service answers with at ``samples``: that many, or a deterministic
    ensemble's K networks if fewer; None for one deterministic network, which has none."""
    if network_count(model) == 1:
        return None
    return fixed_posterior(model, draws_available(model, samples))


# ---------------------------------------------------------------------------- wine


def shift_away(x: np.ndarray, mean: np.ndarray, std: np.ndarray, k: float) -> np.ndarray:
    """Push every feature k training standard deviations further from the training mean.

    x' = x + k·std·sign(x - mean), per feature: each row moves outward in every coordinate, in
    the direction it already lies, so its standardised distance from the training mean grows
    by exactly k per feature. Values may leave the physical range (negative acidity): the point
    is inputs the network has never seen.
    """
    shifted = x.astype(np.float64) + k * std * np.sign(x - mean)
    return shifted.astype(x.dtype)


def evaluate_wine_model(
    name: str, model: nn.Module, split: WineSplit, *, samples: int
) -> WineResult:
    """Coverage, PIT, sharpness, NLL, CRPS, spread-vs-error and the shift sweep of one model."""
    device = next(model.parameters()).device
    posterior = report_posterior(model, samples)

    def predict(x: np.ndarray) -> tuple[Tensor, Tensor]:
        mu, sigma = regression_samples(model, torch.as_tensor(x, device=device), posterior)
        return mu.cpu().double(), sigma.cpu().double()

    mu, sigma = predict(split.x_test)
    target = torch.as_tensor(split.y_test, dtype=torch.float64)
    summary = summarize_regression(mu, sigma, SUMMARY_LEVEL)
    abs_error = (target - summary.mean).abs()

    train = split.x_train.astype(np.float64)
    mean, std = train.mean(axis=0), train.std(axis=0)
    epistemic: list[float] = []
    aleatoric: list[float] = []
    per_row: list[Tensor] = []
    for k in WINE_SHIFT_STEPS:
        shifted = summarize_regression(
            *predict(shift_away(split.x_test, mean, std, k)), SUMMARY_LEVEL
        )
        epistemic.append(float(shifted.epistemic_std.mean()))
        aleatoric.append(float(shifted.aleatoric_std.mean()))
        per_row.append(shifted.epistemic_std)
    return WineResult(
        name=name,
        members=member_count(model),
        samples=mu.shape[0],
        rmse=rmse(summary.mean, target),
        nll=mixture_nll(target, mu, sigma),
        crps=mixture_crps(target, mu, sigma),
        calibration=interval_calibration(target, mu, sigma, COVERAGE_LEVELS),
        spread_correlation=spread_error_correlation(summary.std, abs_error),
        shift_epistemic=epistemic,
        shift_aleatoric=aleatoric,
        shift_auroc=shift_auroc(per_row[0], per_row[-1]) if posterior is not None else None,
        pit=pit_values(target, mu, sigma).numpy(),
        std=summary.std.numpy(),
        abs_error=abs_error.numpy(),
    )


# ---------------------------------------------------------------------------- CIFAR


@dataclass(frozen=True)
class ImagePredictions:
    probabilities: Tensor  # N × C, posterior predictive mean
    total: Tensor  # N, entropy of the mean, nats
    epistemic: Tensor  # N, mutual information, nats


def predict_images(
    model: nn.Module,
    images: np.ndarray,
    posterior: Posterior,
    *,
    batch_size: int,
    desc: str,
    progress: bool,
) -> ImagePredictions:
    """The service's classification summary for each image, in batches."""
    device = next(model.parameters()).device
    probabilities, total, epistemic = [], [], []
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc=desc, disable=not progress, leave=False):
        batch = to_model_input(images[start : start + batch_size]).to(device)
        probs = class_probability_samples(model, batch, posterior)
        summary = summarize_classification(probs, SUMMARY_LEVEL)
        probabilities.append(summary.probabilities.cpu())
        total.append(summary.total.cpu())
        epistemic.append(summary.epistemic.cpu())
    return ImagePredictions(torch.cat(probabilities), torch.cat(total), torch.cat(epistemic))


def far_ood_result(
    clean: ImagePredictions, far: ImagePredictions, *, has_epistemic: bool
) -> FarOodResult:
    """How well each uncertainty score tells the far images (the positives) from the clean
    test images; by epistemic term only for a model that has one."""
    return FarOodResult(
        source=DIGITS_SOURCE,
        images=len(far.total),
        test_images=len(clean.total),
        mean_epistemic_test=float(clean.epistemic.mean()),
        mean_epistemic_ood=float(far.epistemic.mean()),
        mean_total_test=float(clean.total.mean()),
        mean_total_ood=float(far.total.mean()),
        auroc_epistemic=shift_auroc(clean.epistemic, far.epistemic) if has_epistemic else None,
        auroc_total=shift_auroc(clean.total, far.total),
        epistemic_test=clean.epistemic.numpy(),
        epistemic_ood=far.epistemic.numpy(),
    )


def evaluate_cifar_model(
    name: str,
    model: nn.Module,
    test: ImageSet,
    *,
    samples: int,
    shift_images: int,
    far_images: np.ndarray,
    batch_size: int,
    seed: int,
    progress: bool,
) -> CifarResult:
    """Reliability, refusal curves, the corruption sweep and the far-OOD digits of one CIFAR
    model.

    The shift subset and the corruption noise depend on ``seed`` alone, so every model of a
    report meets the same corrupted images.
    """
    posterior = report_posterior(model, samples)
    if posterior is None:
        raise ValueError(f"{name} has no posterior draws; every CIFAR model is Bayesian")
    clean = predict_images(
        model, test.images, posterior, batch_size=batch_size, desc=f"{name} test", progress=progress
    )
    labels = torch.as_tensor(test.labels)
    correct = clean.probabilities.argmax(dim=-1) == labels

    # A seeded random subset: the test files are ordered by class, so a prefix would be one class.
    rng = np.random.default_rng(seed)
    subset = np.sort(rng.permutation(len(labels))[: min(shift_images, len(labels))])
    subset_images, subset_labels = test.images[subset], labels[subset]
    index = torch.as_tensor(subset)
    clean_epistemic, clean_total = clean.epistemic[index], clean.total[index]
    clean_accuracy = accuracy(clean.probabilities[index], subset_labels)
    epistemic = {c: [float(clean_epistemic.mean())] for c in CORRUPTIONS}
    accuracies = {c: [clean_accuracy] for c in CORRUPTIONS}
    auroc_epistemic, auroc_total = {}, {}
    sweep = [(c, severity) for c in CORRUPTIONS for severity in SEVERITIES]
    for corruption, severity in tqdm(sweep, desc=f"{name} shift", disable=not progress):
        images = corrupt(subset_images, corruption, severity, seed=seed)
        shifted = predict_images(
            model,
            images,
            posterior,
            desc=f"{corruption} {severity}",
            batch_size=batch_size,
            progress=progress,
        )
        epistemic[corruption].append(float(shifted.epistemic.mean()))
        accuracies[corruption].append(accuracy(shifted.probabilities, subset_labels))
        if severity == SEVERITIES[-1]:
            auroc_epistemic[corruption] = shift_auroc(clean_epistemic, shifted.epistemic)
            auroc_total[corruption] = shift_auroc(clean_total, shifted.total)
    far = predict_images(
        model, far_images, posterior, batch_size=batch_size, desc="digits", progress=progress
    )
    return CifarResult(
        name=name,
        members=member_count(model),
        samples=posterior.num_samples,
        images=len(labels),
        classes=clean.probabilities.shape[-1],
        accuracy=accuracy(clean.probabilities, labels),
        nll=classification_nll(clean.probabilities, labels),
        ece=expected_calibration_error(clean.probabilities, labels, n_bins=ECE_BINS),
        bins=reliability_bins(clean.probabilities, labels, n_bins=ECE_BINS),
        refusal_total=refusal_curve(correct, clean.total, REFUSAL_FRACTIONS),
        refusal_epistemic=refusal_curve(correct, clean.epistemic, REFUSAL_FRACTIONS),
        shift_images=len(subset),
        shift_epistemic=epistemic,
        shift_accuracy=accuracies,
        auroc_epistemic=auroc_epistemic,
        auroc_total=auroc_total,
        far_ood=far_ood_result(clean, far, has_epistemic=network_count(model) != 1),
    )


def label(name: str) -> str:
    """A corruption's name as the report prints it: ``gaussian_noise`` → ``gaussian noise``."""
    return name.replace("_", " ")
