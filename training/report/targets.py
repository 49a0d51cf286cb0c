"""The issue's targets, per model, and the checks of the report's numbers against them.

Targets are stated per model name: a model of the repository without an entry here is scored
and shown but checked against nothing, and a model with an entry that the repository does
not hold is said to be unchecked (:func:`unchecked_models`), not silently passed over. Each
check names its model, so the misses can be listed per model (:func:`misses_by_model`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

from models.ensemble import ENSEMBLE_SUFFIX
from service.schemas import CIFAR_DEFAULT, CIFAR_FAMILY, WINE_DEFAULT, WINE_FAMILY, family_model
from training.report.evaluation import (
    ECE_BINS,
    WINE_SHIFT_STEPS,
    CifarResult,
    WineResult,
    label,
)

__all__ = [
    "CIFAR_TARGETS",
    "CIFAR_TARGET_MODEL",
    "WINE_TARGETS",
    "WINE_TARGET_MODEL",
    "Check",
    "CifarTargets",
    "WineTargets",
    "cifar_checks",
    "misses_by_model",
    "unchecked_models",
    "wine_checks",
]

# The models /predict/wine and /predict/cifar serve by default, and their ensembles.
WINE_TARGET_MODEL = family_model(WINE_FAMILY, WINE_DEFAULT)
CIFAR_TARGET_MODEL = family_model(CIFAR_FAMILY, CIFAR_DEFAULT)
WINE_GAUSSIAN_MODEL = family_model(WINE_FAMILY, "gaussian")


@dataclass(frozen=True)
class Check:
    """One target of the issue: whose, what was measured, what it had to be, and whether."""

    model: str
    name: str
    value: str
    target: str
    passed: bool


@dataclass(frozen=True)
class WineTargets:
    """What a wine model must reach; None: no target for that number."""

    coverage_tolerance: float | None = None  # |coverage - nominal| at every level
    rmse: float | None = None  # at most
    nll: float | None = None  # at most
    epistemic_rising: bool = False  # with every shift step


@dataclass(frozen=True)
class CifarTargets:
    """What a CIFAR model must reach; None: no target for that number."""

    samples: int | None = None  # the S the targets are stated at; None: any
    accuracy: float | None = None  # at least
    ece: float | None = None  # at most
    epistemic_rising: bool = False  # with every severity step, every corruption
    auroc: float | None = None  # clean vs severity 5 by epistemic, at least ...
    auroc_min_corruptions: int = 2  # ... for this many corruptions
    far_ood_auroc: float | None = None  # digits vs CIFAR-10 test images by epistemic


WINE_TARGETS: dict[str, WineTargets] = {
    WINE_TARGET_MODEL: WineTargets(coverage_tolerance=0.03, epistemic_rising=True),
    WINE_TARGET_MODEL + ENSEMBLE_SUFFIX: WineTargets(coverage_tolerance=0.02, rmse=0.68, nll=0.98),
    WINE_GAUSSIAN_MODEL + ENSEMBLE_SUFFIX: WineTargets(rmse=0.70, nll=1.00),
}
CIFAR_TARGETS: dict[str, CifarTargets] = {
    CIFAR_TARGET_MODEL: CifarTargets(ece=0.05, epistemic_rising=True, auroc=0.8),
    CIFAR_TARGET_MODEL + ENSEMBLE_SUFFIX: CifarTargets(
        samples=32,
        accuracy=0.77,
        ece=0.035,
        epistemic_rising=True,
        auroc=0.8,
        far_ood_auroc=0.9,
    ),
}


def _rising(values: list[float]) -> bool:
    return all(b > a for a, b in pairwise(values))


def _arrow(values: list[float], digits: int, kind: str = "f") -> str:
    return " → ".join(f"{v:.{digits}{kind}}" for v in values)


def wine_checks(results: dict[str, WineResult]) -> list[Check]:
    """Every wine model's targets, for those of ``results`` that have any."""
    checks: list[Check] = []
    for name, result in results.items():
        targets = WINE_TARGETS.get(name)
        if targets is not None:
            checks += _wine_model_checks(result, targets)
    return checks


def _wine_model_checks(result: WineResult, targets: WineTargets) -> list[Check]:
    name = result.name
    checks = []
    bounds = (("RMSE", result.rmse, targets.rmse), ("NLL", result.nll, targets.nll))
    for score, value, bound in bounds:
        if bound is not None:
            checks.append(Check(name, score, f"{value:.3f}", f"≤ {bound:.2f}", value <= bound))
    tolerance = targets.coverage_tolerance
    if tolerance is not None:
        checks += [
            Check(
                model=name,
                name=f"coverage of the {p.level:.0%} interval",
                value=f"{p.coverage:.3f}",
                target=f"{p.level - tolerance:.2f}-{min(p.level + tolerance, 1):.2f}",
                passed=abs(p.coverage - p.level) <= tolerance + 1e-9,
            )
            for p in result.calibration
        ]
    if targets.epistemic_rising:
        steps = ", ".join(map(str, WINE_SHIFT_STEPS))
        checks.append(
            Check(
                model=name,
                name=f"mean epistemic std rises with each shift step (k = {steps})",
                value=_arrow(result.shift_epistemic, 3),
                target="strictly rising",
                passed=result.has_epistemic and _rising(result.shift_epistemic),
            )
        )
    return checks


def cifar_checks(results: dict[str, CifarResult]) -> list[Check]:
    """Every CIFAR model's targets, for those of ``results`` that have any."""
    checks: list[Check] = []
    for name, result in results.items():
        targets = CIFAR_TARGETS.get(name)
        if targets is not None:
            checks += _cifar_model_checks(result, targets)
    return checks


def _cifar_model_checks(result: CifarResult, targets: CifarTargets) -> list[Check]:
    name = result.name
    # A target stated at S draws is met only when measured at S: fewer draws see less.
    at_s = targets.samples is None or result.samples == targets.samples
    where = "" if targets.samples is None else f" at S={targets.samples}"
    measured = "" if at_s else f" (at S={result.samples})"
    checks = []
    if targets.accuracy is not None:
        checks.append(
            Check(
                model=name,
                name="accuracy",
                value=f"{result.accuracy:.4f}{measured}",
                target=f"≥ {targets.accuracy}{where}",
                passed=at_s and result.accuracy >= targets.accuracy,
            )
        )
    if targets.ece is not None:
        checks.append(
            Check(
                model=name,
                name=f"ECE ({ECE_BINS} bins)",
                value=f"{result.ece:.4f}{measured}",
                target=f"≤ {targets.ece}{where}",
                passed=at_s and result.ece <= targets.ece,
            )
        )
    if targets.epistemic_rising:
        for corruption, values in result.shift_epistemic.items():
            checks.append(
                Check(
                    model=name,
                    name=f"mean epistemic rises with each severity: {label(corruption)}",
                    value=_arrow(values, 4, "g"),
                    target="strictly rising",
                    passed=_rising(values),
                )
            )
    if targets.auroc is not None:
        good = [c for c, auc in result.auroc_epistemic.items() if auc >= targets.auroc]
        aucs = ", ".join(f"{label(c)} {a:.3f}" for c, a in result.auroc_epistemic.items())
        checks.append(
            Check(
                model=name,
                name="AUROC clean vs severity 5, by epistemic",
                value=f"{aucs} ({len(good)} of {len(result.auroc_epistemic)} ≥ {targets.auroc})",
                target=f"≥ {targets.auroc} for at least {targets.auroc_min_corruptions} "
                "corruptions",
                passed=len(good) >= targets.auroc_min_corruptions,
            )
        )
    if targets.far_ood_auroc is not None:
        ood = result.far_ood
        by_epistemic = "none" if ood.auroc_epistemic is None else f"{ood.auroc_epistemic:.3f}"
        checks.append(
            Check(
                model=name,
                name="AUROC digits vs CIFAR-10 test images, by epistemic",
                value=f"{by_epistemic} (by total: {ood.auroc_total:.3f})",
                target=f"≥ {targets.far_ood_auroc}",
                passed=ood.auroc_epistemic is not None
                and ood.auroc_epistemic >= targets.far_ood_auroc,
            )
        )
    return checks


def unchecked_models(part: str, scored: Iterable[str]) -> list[str]:
    """The models of ``part`` ("wine" or "cifar") with targets that were not scored: the
    repository does not hold them (yet)."""
    targets = WINE_TARGETS if part == WINE_FAMILY else CIFAR_TARGETS
    present = set(scored)
    return [name for name in targets if name not in present]


def misses_by_model(checks: Iterable[Check]) -> dict[str, list[Check]]:
    """Model → its missed checks, for every model with a check (an empty list: all met)."""
    misses: dict[str, list[Check]] = {}
    for check in checks:
        misses.setdefault(check.model, [])
        if not check.passed:
            misses[check.model].append(check)
    return misses
