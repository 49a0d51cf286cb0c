"""Calibration and shift report of the checkpoints: ``python -m training.report``.

An uncertainty service is only worth calling if its intervals cover what they claim and its
epistemic term grows where the model knows less. This scores the checkpoints on the test data,
with the same fixed posterior draws the service answers with, and writes to ``--output``:
PNG plots, a ``README.md`` that shows them with every number beside its target, and
``metrics.json``. Notes on misses and retraining go in ``NOTES.md`` there, which is kept and
embedded in the README on every run, so regenerating the report does not lose them.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor, nn
from tqdm import tqdm

from models.checkpoint import load_checkpoint, read_manifest, verify_checkpoint
from models.device import resolve_device
from models.images import to_model_input
from models.layers import Posterior
from models.predictive import (
    class_probability_samples,
    fixed_posterior,
    is_bayesian,
    regression_samples,
)
from training.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from training.datasets.cifar import ImageSet, load_cifar10
from training.datasets.location import DATA_DIR_ENV
from training.datasets.wine import WineSplit, load_wine
from training.manifest import training_command
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
    spread_skill_bins,
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

# No display anywhere this runs; only the Figure API is used, never pyplot's global state.
matplotlib.use("Agg")

WINE_MODELS = ("wine-bnn", "wine-gaussian")
CIFAR_MODEL = "cifar-bcnn"
TASKS = ("wine", "cifar")

# Targets of the issue: wine-bnn coverage within ±0.03 of nominal, ECE ≤ 0.05, epistemic
# rising with every shift step, AUROC (clean vs severity 5) ≥ 0.8 for two corruptions or more.
COVERAGE_TOLERANCE = 0.03
ECE_TARGET = 0.05
AUROC_TARGET = 0.8
AUROC_MIN_CORRUPTIONS = 2

WINE_SHIFT_STEPS = (0, 1, 2, 4)  # training standard deviations
REFUSAL_FRACTIONS = tuple(round(0.05 * i, 2) for i in range(11))  # 0 … 50%
ECE_BINS = 15
SUMMARY_LEVEL = 0.95  # the classification summary needs a level; only its entropies are used
NOTES_FILE = "NOTES.md"
DPI = 120


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Check:
    """One target of the issue: what was measured, what it had to be, and whether it was."""

    name: str
    value: str
    target: str
    passed: bool


@dataclass
class WineResult:
    name: str
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

    def to_json(self) -> dict[str, Any]:
        return {
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
class CifarResult:
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

    def to_json(self) -> dict[str, Any]:
        return {
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
        }


def _nan_to_none(values: np.ndarray) -> list[float | None]:
    # JSON has no NaN; an empty reliability bin is "no value", not a number.
    return [None if np.isnan(v) else float(v) for v in values]


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
    posterior = fixed_posterior(model, samples) if is_bayesian(model) else None

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


def evaluate_cifar_model(
    model: nn.Module,
    test: ImageSet,
    *,
    samples: int,
    shift_images: int,
    batch_size: int,
    seed: int,
    progress: bool,
) -> CifarResult:
    """Reliability, refusal curves and the corruption sweep of the CIFAR model."""
    posterior = fixed_posterior(model, samples)
    clean = predict_images(
        model, test.images, posterior, batch_size=batch_size, desc="CIFAR test", progress=progress
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
    epistemic = {name: [float(clean_epistemic.mean())] for name in CORRUPTIONS}
    accuracies = {name: [clean_accuracy] for name in CORRUPTIONS}
    auroc_epistemic, auroc_total = {}, {}
    sweep = [(name, severity) for name in CORRUPTIONS for severity in SEVERITIES]
    for name, severity in tqdm(sweep, desc="CIFAR shift", disable=not progress):
        images = corrupt(subset_images, name, severity, seed=seed)
        shifted = predict_images(
            model,
            images,
            posterior,
            desc=f"{name} {severity}",
            batch_size=batch_size,
            progress=progress,
        )
        epistemic[name].append(float(shifted.epistemic.mean()))
        accuracies[name].append(accuracy(shifted.probabilities, subset_labels))
        if severity == SEVERITIES[-1]:
            auroc_epistemic[name] = shift_auroc(clean_epistemic, shifted.epistemic)
            auroc_total[name] = shift_auroc(clean_total, shifted.total)
    return CifarResult(
        samples=samples,
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
    )


# ---------------------------------------------------------------------------- targets


def _rising(values: list[float]) -> bool:
    return all(b > a for a, b in pairwise(values))


def _arrow(values: list[float], digits: int, kind: str = "f") -> str:
    return " → ".join(f"{v:.{digits}{kind}}" for v in values)


def wine_checks(results: dict[str, WineResult]) -> list[Check]:
    bnn = results["wine-bnn"]
    checks = [
        Check(
            name=f"wine-bnn coverage of the {p.level:.0%} interval",
            value=f"{p.coverage:.3f}",
            target=f"{p.level - COVERAGE_TOLERANCE:.2f}-{min(p.level + COVERAGE_TOLERANCE, 1):.2f}",
            passed=abs(p.coverage - p.level) <= COVERAGE_TOLERANCE + 1e-9,
        )
        for p in bnn.calibration
    ]
    steps = ", ".join(map(str, WINE_SHIFT_STEPS))
    checks.append(
        Check(
            name=f"wine-bnn mean epistemic std rises with each shift step (k = {steps})",
            value=_arrow(bnn.shift_epistemic, 3),
            target="strictly rising",
            passed=_rising(bnn.shift_epistemic),
        )
    )
    return checks


def cifar_checks(result: CifarResult) -> list[Check]:
    checks = [
        Check(
            name=f"CIFAR ECE ({ECE_BINS} bins)",
            value=f"{result.ece:.4f}",
            target=f"≤ {ECE_TARGET}",
            passed=result.ece <= ECE_TARGET,
        )
    ]
    for name, values in result.shift_epistemic.items():
        checks.append(
            Check(
                name=f"CIFAR mean epistemic rises with each severity: {_label(name)}",
                value=_arrow(values, 4, "g"),
                target="strictly rising",
                passed=_rising(values),
            )
        )
    good = [name for name, auc in result.auroc_epistemic.items() if auc >= AUROC_TARGET]
    aucs = ", ".join(f"{_label(n)} {a:.3f}" for n, a in result.auroc_epistemic.items())
    checks.append(
        Check(
            name="CIFAR AUROC clean vs severity 5, by epistemic",
            value=f"{aucs} ({len(good)} of {len(result.auroc_epistemic)} ≥ {AUROC_TARGET})",
            target=f"≥ {AUROC_TARGET} for at least {AUROC_MIN_CORRUPTIONS} corruptions",
            passed=len(good) >= AUROC_MIN_CORRUPTIONS,
        )
    )
    return checks


def _label(name: str) -> str:
    return name.replace("_", " ")


# ---------------------------------------------------------------------------- plots


def _save(figure: Figure, path: Path) -> None:
    figure.savefig(path, dpi=DPI)


def plot_wine_calibration(results: dict[str, WineResult], path: Path) -> None:
    """Coverage against nominal level, its deviation with the ±0.03 band, and sharpness."""
    figure = Figure(figsize=(15, 4.6), layout="constrained")
    cover, gap, width = figure.subplots(1, 3)
    levels = np.asarray(COVERAGE_LEVELS)
    cover.plot([0.45, 1.0], [0.45, 1.0], "--", color="grey", label="ideal (coverage = level)")
    gap.axhline(0.0, ls="--", color="grey", label="ideal")
    gap.fill_between(
        levels,
        -COVERAGE_TOLERANCE,
        COVERAGE_TOLERANCE,
        color="tab:green",
        alpha=0.15,
        label=f"target for wine-bnn (±{COVERAGE_TOLERANCE})",
    )
    for name, result in results.items():
        coverage = np.asarray([p.coverage for p in result.calibration])
        widths = [p.mean_width for p in result.calibration]
        cover.plot(levels, coverage, "o-", label=name)
        gap.plot(levels, coverage - levels, "o-", label=name)
        width.plot(levels, widths, "o-", label=name)
    cover.set(
        title="Wine: coverage of the central interval",
        xlabel="nominal level",
        ylabel="observed coverage (test set)",
        xlim=(0.45, 1.0),
        ylim=(0.45, 1.0),
    )
    gap.set(
        title="Coverage - nominal (above 0: too wide)",
        xlabel="nominal level",
        ylabel="coverage - nominal",
    )
    width.set(
        title="Sharpness: mean interval width",
        xlabel="nominal level",
        ylabel="mean width (quality points)",
    )
    for ax in (gap, width):
        ax.set_xticks(levels, [f"{v:.0%}" for v in levels], rotation=45)
    for ax in (cover, gap, width):
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
    _save(figure, path)


def plot_wine_pit(results: dict[str, WineResult], path: Path) -> None:
    """PIT histograms: flat if calibrated, U-shaped if over-confident, humped if too wide."""
    figure = Figure(figsize=(5 * len(results), 4), layout="constrained")
    axes: list[Axes] = list(np.atleast_1d(figure.subplots(1, len(results))))
    for ax, (name, result) in zip(axes, results.items(), strict=True):
        heights, _, _ = ax.hist(
            result.pit,
            bins=20,
            range=(0, 1),
            density=True,
            color="tab:blue",
            alpha=0.7,
            edgecolor="white",
            label="test targets",
        )
        ax.axhline(1.0, ls="--", color="black", label="uniform (calibrated)")
        ax.set(
            title=f"{name}: PIT histogram",
            xlabel="PIT = F(y), predictive CDF at the target",
            ylabel="density",
            xlim=(0, 1),
            ylim=(0, 1.35 * max(float(heights.max()), 1.0)),
        )
        ax.legend(loc="upper center", ncols=2)
    _save(figure, path)


def plot_wine_error_vs_std(results: dict[str, WineResult], path: Path) -> None:
    """Absolute error against predicted std, with the binned RMS error against the diagonal."""
    figure = Figure(figsize=(5.5 * len(results), 4.6), layout="constrained")
    axes: list[Axes] = list(np.atleast_1d(figure.subplots(1, len(results))))
    # Shared limits, so the two models' spreads compare at a glance.
    right = max(float(r.std.max()) for r in results.values()) * 1.15
    top = max(float(r.abs_error.max()) for r in results.values()) * 1.05
    for ax, (name, result) in zip(axes, results.items(), strict=True):
        ax.scatter(
            result.std,
            result.abs_error,
            s=6,
            alpha=0.3,
            color="tab:blue",
            label="|error| of one test wine",
        )
        mean_std, rms_error = spread_skill_bins(result.std, result.abs_error, n_bins=10)
        ax.plot(mean_std, rms_error, "o-", color="tab:red", label="RMS error per std decile")
        ax.plot([0, right], [0, right], "--", color="grey", label="calibrated: RMS error = std")
        ax.set(
            title=f"{name}: |error| vs std (Spearman rho {result.spread_correlation:.2f})",
            xlabel="predicted std of the predictive (quality points)",
            ylabel="absolute error of the mean (quality points)",
            xlim=(0, right),
            ylim=(0, top),
        )
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
    _save(figure, path)


def plot_wine_shift(results: dict[str, WineResult], path: Path) -> None:
    """Mean epistemic (and, for contrast, aleatoric) std as test rows leave the training range."""
    figure = Figure(figsize=(7, 4.6), layout="constrained")
    ax = figure.subplots()
    steps = list(WINE_SHIFT_STEPS)
    for name, result in results.items():
        if result.shift_auroc is not None:
            ax.plot(steps, result.shift_epistemic, "o-", lw=2, label=f"{name} epistemic std")
            ax.plot(steps, result.shift_aleatoric, "s--", label=f"{name} aleatoric std")
        else:
            ax.plot(steps, result.shift_aleatoric, "^:", label=f"{name} std (aleatoric only)")
    ax.set(
        title="Wine: uncertainty as test rows are pushed out of the training range",
        xlabel="shift k (training std per feature, away from the training mean)",
        ylabel="mean predicted std (quality points)",
        xticks=steps,
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    _save(figure, path)


def plot_cifar_reliability(result: CifarResult, path: Path) -> None:
    """Reliability diagram: per-bin accuracy against confidence, with the bins' counts below."""
    figure = Figure(figsize=(6.5, 7), layout="constrained")
    diagram, counts = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    bins = result.bins
    left, width = bins.edges[:-1], np.diff(bins.edges)
    acc = np.nan_to_num(bins.accuracy)
    gap = np.where(bins.count > 0, np.nan_to_num(bins.confidence) - acc, 0.0)
    diagram.bar(
        left,
        acc,
        width=width,
        align="edge",
        color="tab:blue",
        edgecolor="navy",
        label="accuracy in bin",
    )
    diagram.bar(
        left,
        gap,
        bottom=acc,
        width=width,
        align="edge",
        color="tab:red",
        alpha=0.3,
        edgecolor="tab:red",
        hatch="//",
        label="gap to mean confidence",
    )
    diagram.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    diagram.set(
        title=(
            f"CIFAR-10 reliability ({ECE_BINS} bins, S={result.samples}): "
            f"ECE {result.ece:.3f}, accuracy {result.accuracy:.3f}"
        ),
        ylabel="accuracy",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    diagram.legend(loc="upper left")
    counts.bar(left, bins.count, width=width, align="edge", color="grey", edgecolor="black")
    counts.set(xlabel="confidence (top-class probability)", ylabel="images", yscale="log")
    _save(figure, path)


def plot_cifar_refusal(result: CifarResult, path: Path) -> None:
    """Accuracy on what is kept after refusing the most uncertain images."""
    figure = Figure(figsize=(7, 4.6), layout="constrained")
    ax = figure.subplots()
    refused = 100 * np.asarray(REFUSAL_FRACTIONS)
    ax.plot(refused, result.refusal_total, "o-", label="refuse highest total entropy")
    ax.plot(refused, result.refusal_epistemic, "s-", label="refuse highest epistemic (MI)")
    ax.axhline(result.accuracy, ls="--", color="grey", label="refuse at random (expected)")
    ax.set(
        title="CIFAR-10: accuracy when refusing the most uncertain images",
        xlabel="images refused (%)",
        ylabel="accuracy on the images kept",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    _save(figure, path)


def plot_cifar_shift(result: CifarResult, path: Path) -> None:
    """Mean epistemic term and accuracy by corruption severity."""
    figure = Figure(figsize=(13, 4.6), layout="constrained")
    epistemic, acc = figure.subplots(1, 2)
    severity = [0, *SEVERITIES]
    for name in CORRUPTIONS:
        auc = result.auroc_epistemic[name]
        label = f"{_label(name)} (AUROC clean vs 5: {auc:.2f})"
        epistemic.plot(severity, result.shift_epistemic[name], "o-", label=label)
        acc.plot(severity, result.shift_accuracy[name], "o-", label=_label(name))
    acc.axhline(1 / result.classes, ls="--", color="grey", label="chance")
    epistemic.set(
        title=f"CIFAR-10: epistemic uncertainty under corruption ({result.shift_images} images)",
        xlabel="severity (0 = clean)",
        ylabel="mean epistemic term (mutual information, nats)",
        xticks=severity,
    )
    acc.set(
        title="CIFAR-10: accuracy under corruption",
        xlabel="severity (0 = clean)",
        ylabel="accuracy",
        xticks=severity,
        ylim=(0, 1),
    )
    for ax in (epistemic, acc):
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    _save(figure, path)


# ---------------------------------------------------------------------------- README


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _wine_section(results: dict[str, WineResult]) -> str:
    names = list(results)
    header = ["nominal level"]
    for name in names:
        header += [f"{name} coverage", f"{name} mean width"]
    rows = []
    for i, level in enumerate(COVERAGE_LEVELS):
        row = [f"{level:g}"]
        for name in names:
            point = results[name].calibration[i]
            row += [f"{point.coverage:.3f}", f"{point.mean_width:.2f}"]
        rows.append(row)
    scores = [
        [
            name,
            str(r.samples),
            f"{r.rmse:.3f}",
            f"{r.nll:.3f}",
            f"{r.crps:.3f}",
            f"{r.spread_correlation:.2f}",
        ]
        for name, r in results.items()
    ]
    return "\n\n".join(
        [
            "## 1. Wine quality: do the intervals cover what they claim?",
            "![Wine interval calibration](wine_calibration.png)",
            "Coverage is the fraction of the 735 test wines whose quality lies inside the exact "
            "central interval of the posterior predictive mixture (the interval the service "
            "returns); mean width is its sharpness, in quality points.",
            _table(header, rows),
            "NLL is the mean negative log density of the predictive mixture, CRPS its "
            "continuous ranked probability score (scoringrules' closed form for Gaussian "
            "mixtures), both per wine and lower-is-better; Spearman rho ranks the predicted std "
            "against the absolute error: does the spread track the error?",
            _table(
                [
                    "model",
                    "posterior samples",
                    "RMSE",
                    "NLL",
                    "CRPS",
                    "Spearman rho(std, abs. error)",
                ],
                scores,
            ),
            "The PIT is each target's predictive CDF value F(y): uniform when the predictive is "
            "calibrated, U-shaped when its intervals are too narrow, humped when too wide, "
            "sloped when its mean is biased. Quality is an integer score, so some texture is "
            "expected.",
            "![Wine PIT histograms](wine_pit.png)",
            "Does the spread track the error? Each dot is one test wine; the red line is the "
            "RMS error within each tenth of the wines sorted by predicted std, which for a "
            "calibrated predictive lies on the diagonal.",
            "![Wine absolute error against predicted std](wine_error_vs_std.png)",
        ]
    )


def _cifar_section(result: CifarResult) -> str:
    refusal = [
        [f"{fraction:.0%}", f"{by_total:.4f}", f"{by_epistemic:.4f}"]
        for fraction, by_total, by_epistemic in zip(
            REFUSAL_FRACTIONS, result.refusal_total, result.refusal_epistemic, strict=True
        )
    ]
    return "\n\n".join(
        [
            "## 2. CIFAR-10: is the confidence calibrated, and does uncertainty rank errors?",
            "![CIFAR-10 reliability diagram](cifar_reliability.png)",
            _table(
                ["test images", "posterior samples", "accuracy", "NLL", f"ECE ({ECE_BINS} bins)"],
                [
                    [
                        str(result.images),
                        str(result.samples),
                        f"{result.accuracy:.4f}",
                        f"{result.nll:.4f}",
                        f"{result.ece:.4f}",
                    ],
                ],
            ),
            "ECE is torchmetrics' top-label L1 calibration error with equal-width bins, the "
            'same bins the diagram draws. Refusing an image means answering "not sure": '
            "accuracy is then measured on the images kept, ranking by the entropy of the mean "
            "prediction (total) or by the mutual information between label and weights "
            "(epistemic).",
            "![CIFAR-10 accuracy when refusing the most uncertain images](cifar_refusal.png)",
            _table(["refused", "accuracy, ranked by total", "ranked by epistemic"], refusal),
        ]
    )


def _shift_section(wine: dict[str, WineResult] | None, cifar: CifarResult | None) -> str:
    parts = ["## 3. Shift: does the epistemic term grow where the model knows less?"]
    if wine is not None:
        k_max = WINE_SHIFT_STEPS[-1]
        rows = []
        for i, k in enumerate(WINE_SHIFT_STEPS):
            row = [str(k)]
            for result in wine.values():
                if result.shift_auroc is not None:
                    row += [f"{result.shift_epistemic[i]:.3f}", f"{result.shift_aleatoric[i]:.3f}"]
                else:
                    row.append(f"{result.shift_aleatoric[i]:.3f}")
            rows.append(row)
        header = ["k"]
        for name, result in wine.items():
            if result.shift_auroc is not None:
                header += [f"{name} epistemic std", f"{name} aleatoric std"]
            else:
                header.append(f"{name} std")
        aurocs = ", ".join(
            f"{name} {r.shift_auroc:.3f}" for name, r in wine.items() if r.shift_auroc is not None
        )
        parts += [
            "**Wine.** Each test row is pushed k training standard deviations further from the "
            "training mean in every feature, in the direction it already lies: "
            "x' = x + k·std·sign(x - mean), with mean and std of each feature over the training "
            "split. k = 0 is the test set itself.",
            "![Wine uncertainty under shift](wine_shift.png)",
            _table(header, rows),
            f"AUROC of telling the k = {k_max} rows from the clean ones by epistemic std: "
            f"{aurocs or 'no Bayesian model'}.",
        ]
    if cifar is not None:
        severity = [0, *SEVERITIES]
        rows = [
            [str(s)]
            + [f"{cifar.shift_epistemic[n][i]:.4g}" for n in CORRUPTIONS]
            + [f"{cifar.shift_accuracy[n][i]:.3f}" for n in CORRUPTIONS]
            for i, s in enumerate(severity)
        ]
        header = ["severity"] + [f"{_label(n)}: epistemic" for n in CORRUPTIONS]
        header += [f"{_label(n)}: accuracy" for n in CORRUPTIONS]
        auc_rows = [
            ["epistemic (mutual information)"]
            + [f"{cifar.auroc_epistemic[n]:.3f}" for n in CORRUPTIONS],
            ["total (entropy of the mean)"] + [f"{cifar.auroc_total[n]:.3f}" for n in CORRUPTIONS],
        ]
        parts += [
            f"**CIFAR-10.** {cifar.shift_images} test images (a seeded random subset) are "
            "corrupted at severities 1-5 with CIFAR-10-C's parameters (Hendrycks & Dietterich "
            "2019): additive Gaussian noise (std 0.04-0.10 of the pixel range), Gaussian blur "
            "(kernel std 0.4-1.0 px) and contrast loss (distance from the per-channel mean "
            "scaled by 0.75-0.15); see `training/corruptions.py`. Mean epistemic term in nats:",
            "![CIFAR-10 epistemic uncertainty under corruption](cifar_shift.png)",
            _table(header, rows),
            "AUROC of telling clean images from severity-5 ones, per score (0.5 is chance):",
            _table(["score", *(_label(n) for n in CORRUPTIONS)], auc_rows),
        ]
    return "\n\n".join(parts)


def write_readme(
    path: Path,
    *,
    command: str,
    checkpoints: dict[str, dict[str, Any]],
    checks: list[Check],
    wine: dict[str, WineResult] | None,
    cifar: CifarResult | None,
    notes: str | None,
    device: str,
) -> None:
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    check_rows = [[c.name, c.value, c.target, "pass" if c.passed else "**miss**"] for c in checks]
    provenance = [
        [
            name,
            f"`{info['file']}`",
            f"`{info['sha256'][:12]}`",
            str(info["samples"]),
            f"`{info['command']}`",
        ]
        for name, info in checkpoints.items()
    ]
    sections = [
        "# Calibration and shift report",
        "Does the served uncertainty mean what it says? Intervals should cover what they claim, "
        "confidence should match accuracy, and the epistemic term should grow where the model "
        "knows less. Every number comes from the checkpoints below on the test data, with the "
        "same fixed posterior draws the service answers with. Generated "
        f"{created} on {device} by:",
        f"```sh\n{command}\n```",
        "(`make report` runs it with the defaults.) This file is written by "
        "`training/report.py`; edit `NOTES.md` beside it instead, which is embedded at the end.",
        "## Targets",
        _table(["check", "value", "target", "result"], check_rows),
        "## Checkpoints",
        _table(["model", "file", "sha256", "posterior samples", "trained with"], provenance),
    ]
    if wine is not None:
        sections.append(_wine_section(wine))
    if cifar is not None:
        sections.append(_cifar_section(cifar))
    sections.append(_shift_section(wine, cifar))
    sections += [
        "## Misses and what was tried",
        notes.strip()
        if notes
        else f"Nothing recorded yet: write it in `{NOTES_FILE}` beside this file.",
    ]
    path.write_text("\n\n".join(sections) + "\n")


# ---------------------------------------------------------------------------- main


def _checkpoint_info(path: Path, samples: int) -> dict[str, Any]:
    return {
        "file": path.name,
        "sha256": verify_checkpoint(path),
        "samples": samples,
        "command": read_manifest(path).get("command", "?"),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Write the calibration and shift report of the checkpoints: PNG plots, "
        "README.md with every number beside its target, and metrics.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--checkpoint-dir", type=Path, default=Path("checkpoints"), help="checkpoints and manifests"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"data folder; None: ${DATA_DIR_ENV}, else ../shared/data",
    )
    parser.add_argument("--output", type=Path, default=Path("reports"), help="report folder")
    parser.add_argument(
        "--tasks", nargs="+", choices=TASKS, default=list(TASKS), help="which parts to run"
    )
    parser.add_argument("--wine-samples", type=int, default=100, help="posterior samples, wine")
    parser.add_argument("--cifar-samples", type=int, default=32, help="posterior samples, CIFAR")
    parser.add_argument(
        "--cifar-per-class",
        type=int,
        default=None,
        help="CIFAR test images per class; None: all 1000",
    )
    parser.add_argument(
        "--shift-images", type=int, default=1000, help="CIFAR test images in the corruption sweep"
    )
    parser.add_argument("--batch-size", type=int, default=100, help="images per forward pass")
    parser.add_argument("--seed", type=int, default=0, help="shift subset and corruption noise")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cuda or cpu")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Score the checkpoints, write the plots, ``README.md`` and ``metrics.json``."""
    args = build_parser().parse_args(argv)
    progress = not args.no_progress
    device = resolve_device(args.device)
    output: Path = args.output
    output.mkdir(parents=True, exist_ok=True)
    command = training_command("training.report", argv)
    checkpoints: dict[str, dict[str, Any]] = {}
    checks: list[Check] = []
    wine: dict[str, WineResult] | None = None
    cifar: CifarResult | None = None

    if "wine" in args.tasks:
        split = load_wine(args.data_dir)
        wine = {}
        for name in tqdm(WINE_MODELS, desc="wine", disable=not progress):
            path = args.checkpoint_dir / f"{name}.safetensors"
            model = load_checkpoint(path, device)
            wine[name] = evaluate_wine_model(name, model, split, samples=args.wine_samples)
            checkpoints[name] = _checkpoint_info(path, wine[name].samples)
        plot_wine_calibration(wine, output / "wine_calibration.png")
        plot_wine_pit(wine, output / "wine_pit.png")
        plot_wine_error_vs_std(wine, output / "wine_error_vs_std.png")
        plot_wine_shift(wine, output / "wine_shift.png")
        checks += wine_checks(wine)

    if "cifar" in args.tasks:
        path = args.checkpoint_dir / f"{CIFAR_MODEL}.safetensors"
        model = load_checkpoint(path, device)
        test = load_cifar10("test", args.data_dir, per_class=args.cifar_per_class)
        cifar = evaluate_cifar_model(
            model,
            test,
            samples=args.cifar_samples,
            shift_images=args.shift_images,
            batch_size=args.batch_size,
            seed=args.seed,
            progress=progress,
        )
        checkpoints[CIFAR_MODEL] = _checkpoint_info(path, args.cifar_samples)
        plot_cifar_reliability(cifar, output / "cifar_reliability.png")
        plot_cifar_refusal(cifar, output / "cifar_refusal.png")
        plot_cifar_shift(cifar, output / "cifar_shift.png")
        checks += cifar_checks(cifar)

    notes_path = output / NOTES_FILE
    notes = notes_path.read_text() if notes_path.is_file() else None
    write_readme(
        output / "README.md",
        command=command,
        checkpoints=checkpoints,
        checks=checks,
        wine=wine,
        cifar=cifar,
        notes=notes,
        device=str(device),
    )
    metrics: dict[str, Any] = {
        "command": command,
        "checkpoints": checkpoints,
        "checks": [vars(c) for c in checks],
        "all_passed": all(c.passed for c in checks),
    }
    if wine is not None:
        metrics["wine"] = {name: r.to_json() for name, r in wine.items()}
    if cifar is not None:
        metrics["cifar"] = cifar.to_json()
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    for check in checks:
        print(f"{'pass' if check.passed else 'MISS'}  {check.name}: {check.value}")
    return metrics


if __name__ == "__main__":
    main()
