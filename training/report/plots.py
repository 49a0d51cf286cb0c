"""The report's figures, drawn with matplotlib's object API on a headless (Agg) canvas."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from training.corruptions import CORRUPTIONS, SEVERITIES
from training.report.evaluation import (
    COVERAGE_TOLERANCE,
    DPI,
    ECE_BINS,
    REFUSAL_FRACTIONS,
    WINE_SHIFT_STEPS,
    WINE_TARGET_MODEL,
    CifarResult,
    WineResult,
    _label,
)
from uncertainty.calibration import (
    COVERAGE_LEVELS,
    spread_skill_bins,
)

# No display anywhere this runs; only the Figure API is used, never pyplot's global state.
matplotlib.use("Agg")

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
        label=f"target for {WINE_TARGET_MODEL} (±{COVERAGE_TOLERANCE})",
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


def plot_cifar_reliability(results: dict[str, CifarResult], path: Path) -> None:
    """Reliability diagram per model: per-bin accuracy against confidence, the counts below."""
    figure = Figure(figsize=(6.5 * len(results), 7), layout="constrained")
    axes = figure.subplots(2, len(results), sharex="col", height_ratios=(3, 1), squeeze=False)
    for (diagram, counts), (name, result) in zip(axes.T, results.items(), strict=True):
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
                f"{name} on CIFAR-10 ({ECE_BINS} bins, S={result.samples}): "
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


def plot_cifar_refusal(results: dict[str, CifarResult], path: Path) -> None:
    """Accuracy on what is kept after refusing the most uncertain images, per model."""
    figure = Figure(figsize=(7, 4.6), layout="constrained")
    ax = figure.subplots()
    refused = 100 * np.asarray(REFUSAL_FRACTIONS)
    for i, (name, result) in enumerate(results.items()):
        # Two colours per model, one per ranking score; its random baseline dashed.
        ax.plot(
            refused,
            result.refusal_total,
            "o-",
            color=f"C{2 * i}",
            label=f"{name}: refuse highest total entropy",
        )
        ax.plot(
            refused,
            result.refusal_epistemic,
            "s-",
            color=f"C{2 * i + 1}",
            label=f"{name}: refuse highest epistemic (MI)",
        )
        ax.axhline(
            result.accuracy,
            ls="--",
            color=f"C{2 * i}",
            alpha=0.6,
            label=f"{name}: refuse at random (expected)",
        )
    ax.set(
        title="CIFAR-10: accuracy when refusing the most uncertain images",
        xlabel="images refused (%)",
        ylabel="accuracy on the images kept",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    _save(figure, path)


def plot_cifar_shift(results: dict[str, CifarResult], path: Path) -> None:
    """Mean epistemic term and accuracy by corruption severity, a row per model."""
    figure = Figure(figsize=(13, 4.6 * len(results)), layout="constrained")
    axes = figure.subplots(len(results), 2, squeeze=False)
    severity = [0, *SEVERITIES]
    for (epistemic, acc), (name, result) in zip(axes, results.items(), strict=True):
        for corruption in CORRUPTIONS:
            auc = result.auroc_epistemic[corruption]
            label = f"{_label(corruption)} (AUROC clean vs 5: {auc:.2f})"
            epistemic.plot(severity, result.shift_epistemic[corruption], "o-", label=label)
            acc.plot(severity, result.shift_accuracy[corruption], "o-", label=_label(corruption))
        acc.axhline(1 / result.classes, ls="--", color="grey", label="chance")
        epistemic.set(
            title=f"{name}: epistemic uncertainty under corruption ({result.shift_images} images)",
            xlabel="severity (0 = clean)",
            ylabel="mean epistemic term (mutual information, nats)",
            xticks=severity,
        )
        acc.set(
            title=f"{name}: CIFAR-10 accuracy under corruption",
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
