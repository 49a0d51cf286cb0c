"""The report's README: every figure shown with its numbers and each number beside its target.

Tables hold a row per model (or per model and setting) with a ``members`` column, rows in
name order, so one network and its ensemble (``NAME``, ``NAME-ensemble``) sit one above the
other; where models are columns instead, the pair stands side by side.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.schemas import CIFAR_FAMILY, WINE_FAMILY
from training.corruptions import CORRUPTIONS, SEVERITIES
from training.report.evaluation import (
    ECE_BINS,
    NOTES_FILE,
    REFUSAL_FRACTIONS,
    WINE_SHIFT_STEPS,
    CifarResult,
    WineResult,
    label,
)
from training.report.ood import DIGITS_SOURCE
from training.report.targets import (
    CIFAR_TARGET_MODEL,
    WINE_TARGET_MODEL,
    Check,
    misses_by_model,
)
from uncertainty.calibration import (
    COVERAGE_LEVELS,
)

# ---------------------------------------------------------------------------- README


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _number(value: float | None, digits: int = 3) -> str:
    """A score, or "none" where the model has no such score (no epistemic term)."""
    return "none" if value is None else f"{value:.{digits}f}"


def _wine_section(results: dict[str, WineResult]) -> str:
    levels = [f"{level:.0%}" for level in COVERAGE_LEVELS]
    coverage = [
        [name, str(r.members), str(r.samples)] + [f"{p.coverage:.3f}" for p in r.calibration]
        for name, r in results.items()
    ]
    widths = [
        [name, str(r.members), str(r.samples)] + [f"{p.mean_width:.2f}" for p in r.calibration]
        for name, r in results.items()
    ]
    scores = [
        [
            name,
            str(r.members),
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
            "returns), at each nominal level:",
            _table(["model", "members", "posterior samples", *levels], coverage),
            "Mean width of that interval, its sharpness, in quality points:",
            _table(["model", "members", "posterior samples", *levels], widths),
            "NLL is the mean negative log density of the predictive mixture, CRPS its "
            "continuous ranked probability score (scoringrules' closed form for Gaussian "
            "mixtures), both per wine and lower-is-better; Spearman rho ranks the predicted std "
            "against the absolute error: does the spread track the error?",
            _table(
                [
                    "model",
                    "members",
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
            "expected. Each row is one network and its ensemble.",
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
            str(r.members),
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
                    "members",
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


def _wine_shift(wine: dict[str, WineResult]) -> list[str]:
    steps = [f"k = {k}" for k in WINE_SHIFT_STEPS]
    k_max = WINE_SHIFT_STEPS[-1]
    epistemic = [
        [name, str(r.members)]
        + ([f"{v:.3f}" for v in r.shift_epistemic] if r.has_epistemic else ["none"] * len(steps))
        + [_number(r.shift_auroc)]
        for name, r in wine.items()
    ]
    aleatoric = [
        [name, str(r.members)] + [f"{v:.3f}" for v in r.shift_aleatoric] for name, r in wine.items()
    ]
    return [
        "**Wine.** Each test row is pushed k training standard deviations further from the "
        "training mean in every feature, in the direction it already lies: "
        "x' = x + k·std·sign(x - mean), with mean and std of each feature over the training "
        "split. k = 0 is the test set itself.",
        "![Wine uncertainty under shift](wine_shift.png)",
        f"Mean epistemic std (quality points), and the AUROC of telling the k = {k_max} rows "
        "from the clean ones by it; one deterministic network has no epistemic term, a "
        "deterministic ensemble's is the spread between its members:",
        _table(
            ["model", "members", *steps, f"AUROC k = {k_max} vs clean, by epistemic"], epistemic
        ),
        "Mean aleatoric std (quality points), for contrast:",
        _table(["model", "members", *steps], aleatoric),
    ]


def _cifar_shift(cifar: dict[str, CifarResult]) -> list[str]:
    names = list(cifar)
    severity = [0, *SEVERITIES]
    rows = [
        [label(corruption), str(s)]
        + [f"{cifar[n].shift_epistemic[corruption][i]:.4g}" for n in names]
        + [f"{cifar[n].shift_accuracy[corruption][i]:.3f}" for n in names]
        for corruption in CORRUPTIONS
        for i, s in enumerate(severity)
    ]
    header = ["corruption", "severity"] + [f"{n}: epistemic" for n in names]
    header += [f"{n}: accuracy" for n in names]
    auc_rows = []
    for name, r in cifar.items():
        auc_rows += [
            [name, str(r.members), "epistemic (mutual information)"]
            + [f"{r.auroc_epistemic[n]:.3f}" for n in CORRUPTIONS],
            [name, str(r.members), "total (entropy of the mean)"]
            + [f"{r.auroc_total[n]:.3f}" for n in CORRUPTIONS],
        ]
    # Every model meets the same images: the subset depends on the seed alone.
    shift_images = next(iter(cifar.values())).shift_images
    return [
        f"**CIFAR-10.** {shift_images} test images (a seeded random subset) are "
        "corrupted at severities 1-5 with CIFAR-10-C's parameters (Hendrycks & Dietterich "
        "2019): additive Gaussian noise (std 0.04-0.10 of the pixel range), Gaussian blur "
        "(kernel std 0.4-1.0 px) and contrast loss (distance from the per-channel mean "
        "scaled by 0.75-0.15); see `training/corruptions.py`. Mean epistemic term in nats, "
        "and accuracy, per model:",
        "![CIFAR-10 epistemic uncertainty under corruption](cifar_shift.png)",
        _table(header, rows),
        "AUROC of telling clean images from severity-5 ones, per score (0.5 is chance):",
        _table(["model", "members", "score", *(label(n) for n in CORRUPTIONS)], auc_rows),
    ]


def _shift_section(wine: dict[str, WineResult] | None, cifar: dict[str, CifarResult] | None) -> str:
    parts = ["## 3. Shift: does the epistemic term grow where the model knows less?"]
    if wine is not None:
        parts += _wine_shift(wine)
    if cifar is not None:
        parts += _cifar_shift(cifar)
    return "\n\n".join(parts)


def _far_ood_section(cifar: dict[str, CifarResult]) -> str:
    rows = [
        [
            name,
            str(r.members),
            str(r.samples),
            str(r.far_ood.images),
            str(r.far_ood.test_images),
            f"{r.far_ood.mean_epistemic_test:.4g}",
            f"{r.far_ood.mean_epistemic_ood:.4g}",
            f"{r.far_ood.mean_total_test:.3f}",
            f"{r.far_ood.mean_total_ood:.3f}",
            _number(r.far_ood.auroc_epistemic),
            _number(r.far_ood.auroc_total),
        ]
        for name, r in cifar.items()
    ]
    return "\n\n".join(
        [
            "## 4. Far out of distribution: are images of another kind flagged?",
            f"The inputs are {DIGITS_SOURCE}: intensity scaled from 0-16 to 0-255, grey to "
            "three equal channels, Pillow's bilinear resize to 32×32 (as the service resizes "
            "an upload; `training/report/ood.py`). None is a CIFAR-10 class, so a model should "
            "be unsure of them whatever it answers. The AUROC is that of telling the digits "
            "(positives) from the CIFAR-10 test images by each score; 0.5 is chance.",
            "![Far out-of-distribution digits against CIFAR-10](cifar_ood.png)",
            _table(
                [
                    "model",
                    "members",
                    "posterior samples",
                    "digits",
                    "CIFAR-10 test images",
                    "mean epistemic, CIFAR-10 (nats)",
                    "mean epistemic, digits",
                    "mean total, CIFAR-10 (nats)",
                    "mean total, digits",
                    "AUROC by epistemic",
                    "AUROC by total",
                ],
                rows,
            ),
        ]
    )


def _misses_section(checks: list[Check], unchecked: list[str], notes: str | None) -> str:
    """The misses of this run per model, written from the checks; then ``NOTES.md``."""
    lines = []
    for model, missed in misses_by_model(checks).items():
        total = sum(1 for c in checks if c.model == model)
        if missed:
            lines.append(f"- **{model}** misses {len(missed)} of {total} targets:")
            lines += [f"  - {c.name}: {c.value}; target {c.target}" for c in missed]
        else:
            lines.append(f"- **{model}** meets all {total} of its targets.")
    lines += [
        f"- **{model}** is not in the repository: its targets are unchecked." for model in unchecked
    ]
    parts = ["## Misses and what was tried"]
    if lines:
        parts += ["In this run, per model with targets (from the checks above):", "\n".join(lines)]
    parts.append(
        notes.strip()
        if notes
        else f"Nothing recorded yet: write it in `{NOTES_FILE}` beside this file."
    )
    return "\n\n".join(parts)


def write_readme(
    path: Path,
    *,
    command: str,
    checkpoints: dict[str, dict[str, Any]],
    checks: list[Check],
    unchecked: list[str],
    wine: dict[str, WineResult] | None,
    cifar: dict[str, CifarResult] | None,
    notes: str | None,
    device: str,
) -> None:
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    scored = []
    if wine is not None:
        scored.append("every wine-* model on the wine split")
    if cifar is not None:
        scored.append("every cifar-* model on the CIFAR-10 test images")
    targeted = list(dict.fromkeys(c.model for c in checks))
    defaults = [
        f"{name} is what /predict/{family} serves by default"
        for name, family in ((WINE_TARGET_MODEL, WINE_FAMILY), (CIFAR_TARGET_MODEL, CIFAR_FAMILY))
        if name in targeted
    ]
    check_rows = [
        [c.model, c.name, c.value, c.target, "pass" if c.passed else "**miss**"] for c in checks
    ]
    provenance = [
        [
            name,
            info["kind"],
            str(info["members"]),
            f"`{info['file']}`",
            f"`{info['sha256'][:12]}`",
            str(info["samples"]),
            f"`{info['command']}`",
        ]
        for name, info in checkpoints.items()
    ]
    targets = [
        "## Targets",
        f"The issue's targets, checked on {', '.join(targeted) or 'no model'}"
        + (f" ({'; '.join(defaults)})" if defaults else "")
        + ".",
        _table(["model", "check", "value", "target", "result"], check_rows)
        if check_rows
        else "None checked: the repository holds none of the models they are for.",
    ]
    if unchecked:
        targets.append(
            f"Not in the repository, so not checked: {', '.join(unchecked)} (see the misses "
            "section)."
        )
    sections = [
        "# Calibration and shift report",
        "Does the served uncertainty mean what it says? Intervals should cover what they claim, "
        "confidence should match accuracy, and the epistemic term should grow where the model "
        "knows less. Every number comes from the repository's models below on the test data "
        f"({'; '.join(scored)}), with the same fixed posterior draws the service answers with: "
        "an ensemble of K members spreads its S draws over them (draw s from member s mod K), "
        "and a deterministic ensemble has K draws, one per member. A model and its ensemble "
        "(`NAME`, `NAME-ensemble`) share a colour in every figure, the ensemble dashed. "
        f"Generated {created} on {device} by:",
        f"```sh\n{command}\n```",
        "(`make report` runs it with the defaults.) This file is written by "
        "`training/report/`; edit `NOTES.md` beside it instead, which is embedded at the end.",
        *targets,
        "## Checkpoints",
        _table(
            ["model", "kind", "members", "file", "sha256", "posterior samples", "trained with"],
            provenance,
        ),
    ]
    if wine is not None:
        sections.append(_wine_section(wine))
    if cifar is not None:
        sections.append(_cifar_section(cifar))
    sections.append(_shift_section(wine, cifar))
    if cifar is not None:
        sections.append(_far_ood_section(cifar))
    sections.append(_misses_section(checks, unchecked, notes))
    path.write_text("\n\n".join(sections) + "\n")
