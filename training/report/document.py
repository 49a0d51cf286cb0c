"""The report's README: every figure shown with its numbers and each number beside its target."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training.corruptions import CORRUPTIONS, SEVERITIES
from training.report.evaluation import (
    CIFAR_TARGET_MODEL,
    ECE_BINS,
    NOTES_FILE,
    REFUSAL_FRACTIONS,
    WINE_SHIFT_STEPS,
    WINE_TARGET_MODEL,
    Check,
    CifarResult,
    WineResult,
    _label,
)
from uncertainty.calibration import (
    COVERAGE_LEVELS,
)

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


def _cifar_section(results: dict[str, CifarResult]) -> str:
    scores = [
        [
            name,
            str(r.images),
            str(r.samples),
            f"{r.accuracy:.4f}",
            f"{r.nll:.4f}",
            f"{r.ece:.4f}",
        ]
        for name, r in results.items()
    ]
    header = ["refused"]
    for name in results:
        header += [f"{name}: accuracy, ranked by total", f"{name}: ranked by epistemic"]
    refusal = []
    for i, fraction in enumerate(REFUSAL_FRACTIONS):
        row = [f"{fraction:.0%}"]
        for r in results.values():
            row += [f"{r.refusal_total[i]:.4f}", f"{r.refusal_epistemic[i]:.4f}"]
        refusal.append(row)
    return "\n\n".join(
        [
            "## 2. CIFAR-10: is the confidence calibrated, and does uncertainty rank errors?",
            "![CIFAR-10 reliability diagram](cifar_reliability.png)",
            _table(
                [
                    "model",
                    "test images",
                    "posterior samples",
                    "accuracy",
                    "NLL",
                    f"ECE ({ECE_BINS} bins)",
                ],
                scores,
            ),
            "ECE is torchmetrics' top-label L1 calibration error with equal-width bins, the "
            'same bins the diagram draws. Refusing an image means answering "not sure": '
            "accuracy is then measured on the images kept, ranking by the entropy of the mean "
            "prediction (total) or by the mutual information between label and weights "
            "(epistemic).",
            "![CIFAR-10 accuracy when refusing the most uncertain images](cifar_refusal.png)",
            _table(header, refusal),
        ]
    )


def _shift_section(wine: dict[str, WineResult] | None, cifar: dict[str, CifarResult] | None) -> str:
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
            [name, str(s)]
            + [f"{r.shift_epistemic[n][i]:.4g}" for n in CORRUPTIONS]
            + [f"{r.shift_accuracy[n][i]:.3f}" for n in CORRUPTIONS]
            for name, r in cifar.items()
            for i, s in enumerate(severity)
        ]
        header = ["model", "severity"] + [f"{_label(n)}: epistemic" for n in CORRUPTIONS]
        header += [f"{_label(n)}: accuracy" for n in CORRUPTIONS]
        auc_rows = []
        for name, r in cifar.items():
            auc_rows += [
                [name, "epistemic (mutual information)"]
                + [f"{r.auroc_epistemic[n]:.3f}" for n in CORRUPTIONS],
                [name, "total (entropy of the mean)"]
                + [f"{r.auroc_total[n]:.3f}" for n in CORRUPTIONS],
            ]
        # Every model meets the same images: the subset depends on the seed alone.
        shift_images = next(iter(cifar.values())).shift_images
        parts += [
            f"**CIFAR-10.** {shift_images} test images (a seeded random subset) are "
            "corrupted at severities 1-5 with CIFAR-10-C's parameters (Hendrycks & Dietterich "
            "2019): additive Gaussian noise (std 0.04-0.10 of the pixel range), Gaussian blur "
            "(kernel std 0.4-1.0 px) and contrast loss (distance from the per-channel mean "
            "scaled by 0.75-0.15); see `training/corruptions.py`. Mean epistemic term in nats:",
            "![CIFAR-10 epistemic uncertainty under corruption](cifar_shift.png)",
            _table(header, rows),
            "AUROC of telling clean images from severity-5 ones, per score (0.5 is chance):",
            _table(["model", "score", *(_label(n) for n in CORRUPTIONS)], auc_rows),
        ]
    return "\n\n".join(parts)


def write_readme(
    path: Path,
    *,
    command: str,
    checkpoints: dict[str, dict[str, Any]],
    checks: list[Check],
    wine: dict[str, WineResult] | None,
    cifar: dict[str, CifarResult] | None,
    notes: str | None,
    device: str,
) -> None:
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    scored, targets = [], []
    if wine is not None:
        scored.append("every wine-* model on the wine split")
        targets.append(f"{WINE_TARGET_MODEL} (what /predict/wine serves by default)")
    if cifar is not None:
        scored.append("every cifar-* model on the CIFAR-10 test images")
        targets.append(f"{CIFAR_TARGET_MODEL} (what /predict/cifar serves by default)")
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
        "knows less. Every number comes from the repository's models below on the test data "
        f"({'; '.join(scored)}), with the same fixed posterior draws the service answers with. "
        f"Generated {created} on {device} by:",
        f"```sh\n{command}\n```",
        "(`make report` runs it with the defaults.) This file is written by "
        "`training/report/`; edit `NOTES.md` beside it instead, which is embedded at the end.",
        "## Targets",
        f"The issue's targets, checked on {' and '.join(targets)}.",
        _table(["check", "value", "target", "result"], check_rows)
        if check_rows
        else "None checked: the repository does not hold them.",
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
