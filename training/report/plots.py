"""The report's figures, drawn with matplotlib's object API on a headless (Agg) canvas.

Every figure shows every model of its part, a line, bar or panel each, so one network and
its ensemble compare at a glance: a pair (``NAME``, ``NAME-ensemble``) shares a colour, the
ensemble drawn dashed with square markers (:func:`model_styles`), and figures of one panel
per model put a pair side by side in one row (:func:`pair_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from models.ensemble import ENSEMBLE_SUFFIX
from training.corruptions import CORRUPTIONS, SEVERITIES
from training.report.evaluation import (
    DPI,
    ECE_BINS,
    REFUSAL_FRACTIONS,
    WINE_SHIFT_STEPS,
    CifarResult,
    WineResult,
    label,
)
from training.report.targets import CIFAR_TARGETS, WINE_TARGETS
from uncertainty.calibration import (
    COVERAGE_LEVELS,
    spread_skill_bins,
)

# No display anywhere this runs; only the Figure API is used, never pyplot's global state.
matplotlib.use("Agg")

# ---------------------------------------------------------------------------- styles


@dataclass(frozen=True)
class Style:
    colour: str
    line: str  # "-" for one network, "--" for an ensemble
    marker: str

    def fmt(self) -> dict[str, str]:
        return {"color": self.colour, "ls": self.line, "marker": self.marker}


def base_name(name: str) -> str:
    """The single network an ensemble's name extends: ``wine-bnn-ensemble`` → ``wine-bnn``."""
    return name.removesuffix(ENSEMBLE_SUFFIX)


def model_styles(names: list[str]) -> dict[str, Style]:
    """A colour per base name, in order of first appearance; an ensemble dashed, squares."""
    bases = list(dict.fromkeys(base_name(n) for n in names))
    styles = {}
    for name in names:
        colour = f"C{bases.index(base_name(name)) % 10}"
        ensemble = name != base_name(name)
        styles[name] = Style(colour, "--" if ensemble else "-", "s" if ensemble else "o")
    return styles


def pair_rows(names: list[str]) -> list[tuple[str | None, str | None]]:
    """``(single, ensemble)`` per base name, in order; a half the repository lacks is None."""
    rows: dict[str, list[str | None]] = {}
    for name in names:
        row = rows.setdefault(base_name(name), [None, None])
        row[0 if name == base_name(name) else 1] = name
    return [(single, ensemble) for single, ensemble in rows.values()]


def _grid(figure: Figure, names: list[str], height_ratios: tuple[float, ...] = (1,)) -> dict:
    """Axes per model laid out by :func:`pair_rows` (``len(height_ratios)`` stacked per
    model), the empty cells switched off; model name → its list of axes."""
    rows = pair_rows(names)
    columns = 2 if any(e is not None and s is not None for s, e in rows) else 1
    stack = len(height_ratios)
    axes = figure.subplots(
        stack * len(rows),
        columns,
        squeeze=False,
        height_ratios=height_ratios * len(rows),
    )
    placed: dict[str, list[Axes]] = {}
    for r, pair in enumerate(rows):
        cells = [n for n in pair if n is not None] if columns == 1 else list(pair)
        for c, name in enumerate(cells):
            cell = [axes[stack * r + i, c] for i in range(stack)]
            if name is None:
                for ax in cell:
                    ax.set_axis_off()
            else:
                placed[name] = cell
    return placed


def _grid_size(names: list[str], width: float, height: float) -> tuple[float, float]:
    rows = pair_rows(names)
    columns = 2 if any(e is not None and s is not None for s, e in rows) else 1
    return width * columns, height * len(rows)


def _save(figure: Figure, path: Path) -> None:
    figure.savefig(path, dpi=DPI)


# ---------------------------------------------------------------------------- wine


def plot_wine_calibration(results: dict[str, WineResult], path: Path) -> None:
    """Coverage against nominal level, its deviation with each target's band, and sharpness."""
    figure = Figure(figsize=(16, 5), layout="constrained")
    cover, gap, width = figure.subplots(1, 3)
    styles = model_styles(list(results))
    levels = np.asarray(COVERAGE_LEVELS)
    cover.plot([0.45, 1.0], [0.45, 1.0], ":", color="grey", label="ideal (coverage = level)")
    gap.axhline(0.0, ls=":", color="grey", label="ideal")
    bands = sorted(
        {
            (t.coverage_tolerance, name)
            for name, t in WINE_TARGETS.items()
            if t.coverage_tolerance is not None and name in results
        },
        reverse=True,
    )
    for (tolerance, name), alpha in zip(bands, (0.12, 0.2, 0.28), strict=False):
        gap.fill_between(
            levels,
            -tolerance,
            tolerance,
            color="tab:green",
            alpha=alpha,
            label=f"target for {name} (±{tolerance})",
        )
    for name, result in results.items():
        coverage = np.asarray([p.coverage for p in result.calibration])
        widths = [p.mean_width for p in result.calibration]
        style = styles[name].fmt()
        cover.plot(levels, coverage, label=name, **style)
        gap.plot(levels, coverage - levels, label=name, **style)
        width.plot(levels, widths, label=name, **style)
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
        ax.legend(loc="best" if ax is gap else "upper left", fontsize="small")
    _save(figure, path)


def plot_wine_pit(results: dict[str, WineResult], path: Path) -> None:
    """PIT histograms: flat if calibrated, U-shaped if over-confident, humped if too wide."""
    names = list(results)
    figure = Figure(figsize=_grid_size(names, 5.5, 4), layout="constrained")
    styles = model_styles(names)
    for name, (ax,) in _grid(figure, names).items():
        result = results[name]
        heights, _, _ = ax.hist(
            result.pit,
            bins=20,
            range=(0, 1),
            density=True,
            color=styles[name].colour,
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
    names = list(results)
    figure = Figure(figsize=_grid_size(names, 5.5, 4.6), layout="constrained")
    styles = model_styles(names)
    # Shared limits, so the models' spreads compare at a glance.
    right = max(float(r.std.max()) for r in results.values()) * 1.15
    top = max(float(r.abs_error.max()) for r in results.values()) * 1.05
    for name, (ax,) in _grid(figure, names).items():
        result = results[name]
        ax.scatter(
            result.std,
            result.abs_error,
            s=6,
            alpha=0.3,
            color=styles[name].colour,
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
    """Mean epistemic std (left) and, for contrast, aleatoric std (right) per model as test
    rows leave the training range; a model of one deterministic network has no epistemic
    term and is on the right alone."""
    figure = Figure(figsize=(14, 5), layout="constrained")
    epistemic, aleatoric = figure.subplots(1, 2)
    styles = model_styles(list(results))
    steps = list(WINE_SHIFT_STEPS)
    without = [name for name, r in results.items() if not r.has_epistemic]
    for name, result in results.items():
        style = styles[name].fmt()
        if result.has_epistemic:
            auc = f"AUROC k={steps[-1]} vs clean {result.shift_auroc:.2f}"
            epistemic.plot(steps, result.shift_epistemic, lw=2, label=f"{name} ({auc})", **style)
        aleatoric.plot(steps, result.shift_aleatoric, label=name, **style)
    epistemic.set(
        title="Wine: epistemic std under shift"
        + (f" (none for {', '.join(without)}: one network)" if without else ""),
        ylabel="mean epistemic std (quality points)",
    )
    aleatoric.set(title="Wine: aleatoric std under shift", ylabel="mean aleatoric std")
    for ax in (epistemic, aleatoric):
        ax.set(
            xlabel="shift k (training std per feature, away from the training mean)", xticks=steps
        )
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize="small")
    _save(figure, path)


# ---------------------------------------------------------------------------- CIFAR


def plot_cifar_reliability(results: dict[str, CifarResult], path: Path) -> None:
    """Reliability diagram per model: per-bin accuracy against confidence, the counts below."""
    names = list(results)
    figure = Figure(figsize=_grid_size(names, 6.5, 7), layout="constrained")
    styles = model_styles(names)
    for name, (diagram, counts) in _grid(figure, names, height_ratios=(3, 1)).items():
        result = results[name]
        bins = result.bins
        left, width = bins.edges[:-1], np.diff(bins.edges)
        acc = np.nan_to_num(bins.accuracy)
        gap = np.where(bins.count > 0, np.nan_to_num(bins.confidence) - acc, 0.0)
        diagram.bar(
            left,
            acc,
            width=width,
            align="edge",
            color=styles[name].colour,
            edgecolor="black",
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
                f"{name} ({ECE_BINS} bins, S={result.samples}): "
                f"ECE {result.ece:.3f}, accuracy {result.accuracy:.3f}"
            ),
            ylabel="accuracy",
            xlim=(0, 1),
            ylim=(0, 1),
        )
        diagram.legend(loc="upper left")
        counts.bar(left, bins.count, width=width, align="edge", color="grey", edgecolor="black")
        counts.set(
            xlim=(0, 1), xlabel="confidence (top-class probability)", ylabel="images", yscale="log"
        )
    _save(figure, path)


def plot_cifar_refusal(results: dict[str, CifarResult], path: Path) -> None:
    """Accuracy on what is kept after refusing the most uncertain images: ranked by total
    entropy (left) and by the epistemic term (right), a line per model."""
    figure = Figure(figsize=(14, 5), layout="constrained")
    by_total, by_epistemic = figure.subplots(1, 2, sharey=True)
    styles = model_styles(list(results))
    refused = 100 * np.asarray(REFUSAL_FRACTIONS)
    for name, result in results.items():
        style = styles[name]
        curves = ((by_total, result.refusal_total), (by_epistemic, result.refusal_epistemic))
        for ax, curve in curves:
            ax.plot(refused, curve, label=name, **style.fmt())
            ax.axhline(
                result.accuracy,
                ls=":",
                color=style.colour,
                alpha=0.7,
                label=f"{name}: refuse at random (expected)",
            )
    by_total.set(
        title="CIFAR-10: refuse the highest total entropy", ylabel="accuracy on the images kept"
    )
    by_epistemic.set(title="CIFAR-10: refuse the highest epistemic term (mutual information)")
    for ax in (by_total, by_epistemic):
        ax.set(xlabel="images refused (%)")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize="small")
    _save(figure, path)


def plot_cifar_shift(results: dict[str, CifarResult], path: Path) -> None:
    """Mean epistemic term (top) and accuracy (bottom) by severity, a column per corruption,
    a line per model."""
    figure = Figure(figsize=(6 * len(CORRUPTIONS), 9), layout="constrained")
    axes = figure.subplots(2, len(CORRUPTIONS), squeeze=False, sharex=True)
    styles = model_styles(list(results))
    severity = [0, *SEVERITIES]
    shift_images = next(iter(results.values())).shift_images
    for (epistemic, acc), corruption in zip(axes.T, CORRUPTIONS, strict=True):
        for name, result in results.items():
            style = styles[name].fmt()
            auc = result.auroc_epistemic[corruption]
            epistemic.plot(
                severity,
                result.shift_epistemic[corruption],
                label=f"{name} (AUROC clean vs 5: {auc:.2f})",
                **style,
            )
            acc.plot(severity, result.shift_accuracy[corruption], label=name, **style)
        classes = next(iter(results.values())).classes
        acc.axhline(1 / classes, ls=":", color="grey", label="chance")
        epistemic.set(
            title=f"{label(corruption)}: epistemic term ({shift_images} images)",
            ylabel="mean epistemic term (mutual information, nats)",
        )
        acc.set(
            title=f"{label(corruption)}: accuracy",
            xlabel="severity (0 = clean)",
            ylabel="accuracy",
            xticks=severity,
            ylim=(0, 1),
        )
        for ax in (epistemic, acc):
            ax.ticklabel_format(axis="y", useOffset=False)
            ax.grid(alpha=0.3)
            ax.legend(loc="best", fontsize="small")
    _save(figure, path)


def plot_cifar_ood(results: dict[str, CifarResult], examples: np.ndarray, path: Path) -> None:
    """Far out-of-distribution digits: a strip of them as the models see them; AUROC against
    the CIFAR-10 test images by each score, a pair of bars per model; and per model the
    epistemic term's distribution on both."""
    names = list(results)
    styles = model_styles(names)
    figure = Figure(figsize=(max(12, 5 * (1 + len(names))), 6.4), layout="constrained")
    strip, bottom = figure.subfigures(2, 1, height_ratios=(1, 4))
    shown = examples[:12]
    for ax, image in zip(strip.subplots(1, len(shown), squeeze=False)[0], shown, strict=True):
        ax.imshow(image)
        ax.set_axis_off()
    strip.suptitle("The far-OOD inputs: scikit-learn's 8×8 digits as 32×32 RGB model input")
    panels = bottom.subplots(1, 1 + len(names), squeeze=False)[0]
    bars, histograms = panels[0], panels[1:]
    x = np.arange(len(names))
    for offset, score, hatch in ((-0.2, "epistemic", ""), (0.2, "total", "//")):
        for i, name in enumerate(names):
            ood = results[name].far_ood
            value = ood.auroc_epistemic if score == "epistemic" else ood.auroc_total
            if value is not None:
                bars.bar(
                    x[i] + offset,
                    value,
                    width=0.38,
                    color=styles[name].colour,
                    hatch=hatch,
                    edgecolor="black",
                    label=f"by {score}" if i == 0 else None,
                )
                bars.text(x[i] + offset, value + 0.01, f"{value:.2f}", ha="center", fontsize=8)
    targets = {t.far_ood_auroc for n, t in CIFAR_TARGETS.items() if n in results}
    for target in sorted(t for t in targets if t is not None):
        bars.axhline(target, ls="--", color="tab:green", label=f"target {target}")
    bars.axhline(0.5, ls=":", color="grey", label="chance")
    bars.set_xticks(x, names, rotation=15)
    bars.set(title="AUROC digits vs CIFAR-10 test images", ylabel="AUROC", ylim=(0, 1.05))
    bars.legend(loc="lower right", fontsize="small")
    for ax, name in zip(histograms, names, strict=True):
        ood = results[name].far_ood
        values = np.concatenate([ood.epistemic_test, ood.epistemic_ood])
        positive = values[values > 0]
        low = float(positive.min()) if len(positive) else 1e-6
        edges = np.geomspace(low, max(float(values.max()), low * 10), 40)
        for data, what, colour in (
            (ood.epistemic_test, f"CIFAR-10 test ({ood.test_images})", "grey"),
            (ood.epistemic_ood, f"digits ({ood.images})", styles[name].colour),
        ):
            ax.hist(
                np.clip(data, low, None),
                bins=edges,
                weights=np.full(len(data), 1 / len(data)),
                histtype="step",
                lw=2,
                color=colour,
                label=what,
            )
        ax.set(
            title=f"{name} (S={results[name].samples})",
            xscale="log",
            xlabel="epistemic term (mutual information, nats)",
            ylabel="fraction of the images",
        )
        ax.legend(loc="upper left", fontsize="small")
    _save(figure, path)
