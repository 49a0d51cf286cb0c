"""Calibration and shift report of the repository's models: ``python -m training.report``.

An uncertainty service is only worth calling if its intervals cover what they claim and its
epistemic term grows where the model knows less. This scores every ``wine-*`` model of the
repository on the wine test split and every ``cifar-*`` model on the CIFAR-10 test images
and scikit-learn's digits (far out of distribution), single networks and ensembles side by
side, with the same fixed posterior draws the service answers with, and writes to ``--output``:
PNG plots, a ``README.md`` that shows them with every number beside its target, and
``metrics.json``. Notes on misses and retraining go in ``NOTES.md`` there, which is kept and
embedded in the README on every run, so regenerating the report does not lose them.
"""

from training.report.cli import main
from training.report.evaluation import COVERAGE_LEVELS, WINE_SHIFT_STEPS
from training.report.targets import (
    CIFAR_TARGET_MODEL,
    CIFAR_TARGETS,
    WINE_TARGET_MODEL,
    WINE_TARGETS,
)

__all__ = [
    "CIFAR_TARGETS",
    "CIFAR_TARGET_MODEL",
    "COVERAGE_LEVELS",
    "WINE_SHIFT_STEPS",
    "WINE_TARGETS",
    "WINE_TARGET_MODEL",
    "main",
]
