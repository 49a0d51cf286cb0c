"""Test-set metrics of a trained model, from S posterior samples.

``python -m training.evaluate CHECKPOINT`` re-scores a checkpoint by its task: a tabular
model on the wine test split (or ``--csv FILE`` for a table of one's own, split as
``train_tabular`` split it), an image model on the CIFAR-10 test images (or ``--images DIR``
for a folder of one's own, its ``DIR/test``). For an image model it also computes the
epistemic threshold (:func:`epistemic_threshold`); ``--write-thresholds`` records it in the
manifest of a checkpoint trained before thresholds were, leaving the weights untouched.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from models.checkpoint import (
    CheckpointError,
    ServableModel,
    load_checkpoint,
    manifest_path,
    read_manifest,
)
from models.cnn import BayesianCNN
from models.device import resolve_device
from models.ensemble import Ensemble
from models.images import ImageDecodeError, to_model_input
from models.predictive import (
    class_probability_samples,
    draws_available,
    fixed_posterior,
    network_count,
    regression_samples,
)
from models.tabular import TabularRegressor
from models.task import IMAGE_CLASSIFICATION, TABULAR_REGRESSION
from training.cli import run_script
from training.datasets.cifar import CIFAR10_CLASSES, IMAGE_SIZE, load_cifar10
from training.datasets.images import ImageSet, load_image_folder
from training.datasets.location import DataNotFoundError
from training.datasets.table import TableError, read_table, split_table
from training.datasets.wine import WINE_FEATURES, load_wine
from training.manifest import training_command
from uncertainty.classification import summarize_classification
from uncertainty.metrics import (
    accuracy,
    brier_score,
    classification_nll,
    expected_calibration_error,
    interval_coverage,
    mean_interval_width,
    mixture_nll,
    rmse,
)
from uncertainty.regression import summarize_regression

INTERVAL_LEVEL = 0.95
# An image model's answers are flagged "not sure" (the web page) when their epistemic term is
# above this quantile of the same term over the model's own test images.
EPISTEMIC_QUANTILE = 0.95
# The manifest entry that holds it (GET /models shows it as ``epistemic_threshold``).
THRESHOLDS_KEY = "thresholds"


def evaluate_regression(
    model: nn.Module, x: np.ndarray, y: np.ndarray, *, samples: int
) -> dict[str, float | None]:
    """RMSE of the mean, NLL of the predictive mixture, PICP and width of the 95% interval.

    ``mean_epistemic_std`` is None for a deterministic network: it has no distribution over
    networks, so its epistemic term is not zero but not modelled (as its answers say).
    """
    device = next(model.parameters()).device
    # As the service draws: a deterministic ensemble's K networks at most, one network none.
    samples = draws_available(model, samples)
    posterior = fixed_posterior(model, samples) if network_count(model) != 1 else None
    mu, sigma = regression_samples(model, torch.as_tensor(x, device=device), posterior)
    target = torch.as_tensor(y, device=device)
    summary = summarize_regression(mu, sigma, INTERVAL_LEVEL)
    return {
        "rmse": rmse(summary.mean, target),
        "nll": mixture_nll(target, mu, sigma),
        "picp_95": interval_coverage(target, summary.lower, summary.upper),
        "interval_width_95": mean_interval_width(summary.lower, summary.upper),
        "mean_epistemic_std": (
            float(summary.epistemic_std.mean()) if posterior is not None else None
        ),
        "mean_aleatoric_std": float(summary.aleatoric_std.mean()),
        "samples": samples if posterior is not None else 1,
    }


@dataclass(frozen=True)
class ClassificationScores:
    """What scoring the test images gives: the manifest's ``test_metrics`` and ``thresholds``."""

    metrics: dict[str, float]
    thresholds: dict[str, float | int]


def score_classification(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    samples: int,
    batch_size: int = 100,
    progress: bool = True,
) -> ClassificationScores:
    """Accuracy, NLL, Brier and 15-bin ECE of the posterior predictive mean, and the
    epistemic threshold, from one pass over the test images."""
    device = next(model.parameters()).device
    posterior = fixed_posterior(model, samples)
    mean_probs, epistemic = [], []
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc=f"test S={samples}", disable=not progress, leave=False):
        batch = to_model_input(images[start : start + batch_size]).to(device)
        summary = summarize_classification(
            class_probability_samples(model, batch, posterior), INTERVAL_LEVEL
        )
        mean_probs.append(summary.probabilities.cpu())
        epistemic.append(summary.epistemic.cpu())
    probs = torch.cat(mean_probs)
    target = torch.as_tensor(labels)
    epistemic_terms = torch.cat(epistemic)
    metrics = {
        "accuracy": accuracy(probs, target),
        "nll": classification_nll(probs, target),
        "brier": brier_score(probs, target),
        "ece_15": expected_calibration_error(probs, target, n_bins=15),
        "mean_epistemic_nats": float(epistemic_terms.mean()),
        "samples": samples,
    }
    return ClassificationScores(metrics, epistemic_threshold(epistemic_terms, samples=samples))


def evaluate_classification(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    samples: int,
    batch_size: int = 100,
    progress: bool = True,
) -> dict[str, float]:
    """Accuracy, NLL, Brier and 15-bin ECE of the posterior predictive mean."""
    return score_classification(
        model, images, labels, samples=samples, batch_size=batch_size, progress=progress
    ).metrics


def epistemic_threshold(
    epistemic: Tensor, *, samples: int, quantile: float = EPISTEMIC_QUANTILE
) -> dict[str, float | int]:
    """The manifest's ``thresholds`` entry: the ``quantile`` of the test images' epistemic
    terms (mutual information, nats, at ``samples`` draws), numpy's linear interpolation.

    From the model's own test set because what counts as unusually unsure differs from model
    to model (a tempered posterior spreads less); recorded with the draws it was measured at,
    since fewer draws see less disagreement between networks.
    """
    values = epistemic.detach().to(torch.float64).flatten()
    if values.numel() == 0:
        raise ValueError("no epistemic terms to take a quantile of")
    return {
        "epistemic_nats": float(torch.quantile(values, quantile)),
        "quantile": quantile,
        "samples": samples,
        "images": values.numel(),
    }


def record_thresholds(checkpoint: Path, thresholds: dict[str, Any], command: str) -> Path:
    """Write ``thresholds`` (and the command that computed them) into ``checkpoint``'s
    manifest; every other entry, and the checkpoint file its sha256 names, stays as it is."""
    path = manifest_path(checkpoint)
    manifest = json.loads(path.read_text())
    manifest[THRESHOLDS_KEY] = {**thresholds, "command": command}
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def _tabular_test_rows(
    model: TabularRegressor | Ensemble, args: argparse.Namespace
) -> tuple[np.ndarray, np.ndarray]:
    if args.csv is None:
        if model.features != WINE_FEATURES:
            raise TableError(
                f"{args.checkpoint} was not trained on the wine features; "
                "pass --csv FILE (and --target COLUMN) with its table"
            )
        split = load_wine(args.data_dir)
        return split.x_test, split.y_test
    table = read_table(
        args.csv,
        target=args.target or model.target_name,
        features=model.features,
        drop_invalid=args.drop_invalid,
    )
    recorded = read_manifest(args.checkpoint).get("data", {}).get("sha256")
    if recorded is not None and recorded != table.fingerprint:
        print(
            f"note: {args.csv} does not hold the rows {args.checkpoint} was trained on "
            "(their fingerprints differ): the test split is not the one it was scored on; "
            "was it trained with --drop-invalid, or on another version of the file?",
            file=sys.stderr,
        )
    split = split_table(table)
    return split.x_test, split.y_test


def _image_test_set(model: BayesianCNN | Ensemble, args: argparse.Namespace) -> ImageSet:
    if args.images is None:
        if model.classes != CIFAR10_CLASSES or model.image_size != IMAGE_SIZE:
            raise DataNotFoundError(
                f"{args.checkpoint} is not a CIFAR-10 classifier; pass --images DIR "
                "(with DIR/test/<class>/ images)"
            )
        return load_cifar10("test", args.data_dir)
    return load_image_folder(
        args.images / "test", size=model.image_size, classes=model.classes, progress=True
    )


def add_test_data_options(parser: argparse.ArgumentParser) -> None:
    """Where a model's test split comes from: wine and CIFAR-10 by default, or one's own."""
    parser.add_argument("--data-dir", type=Path, default=None)
    table = parser.add_argument_group("a tabular model trained on a table of one's own")
    table.add_argument("--csv", type=Path, default=None, help="the CSV file it was trained on")
    table.add_argument("--target", default=None, help="target column (default: the model's)")
    table.add_argument("--drop-invalid", action="store_true", help="as given to train_tabular")
    images = parser.add_argument_group("an image model trained on a folder of one's own")
    images.add_argument("--images", type=Path, default=None, help="folder with a test/ folder")


def score_on_test_split(
    model: ServableModel, checkpoint: Path, args: argparse.Namespace, *, samples: int
) -> tuple[dict[str, float | None], dict[str, Any] | None]:
    """The model's test metrics, by its task (and an image model's epistemic thresholds);
    ``args`` say where its data is (:func:`add_test_data_options`), ``checkpoint`` names it
    in messages and holds the fingerprint of the table it was trained on."""
    args.checkpoint = checkpoint
    if model.task == IMAGE_CLASSIFICATION:
        assert isinstance(model, BayesianCNN | Ensemble)
        test = _image_test_set(model, args)
        scores = score_classification(model, test.images, test.labels, samples=samples)
        return dict(scores.metrics), scores.thresholds
    if model.task == TABULAR_REGRESSION:
        assert isinstance(model, TabularRegressor | Ensemble)
        x_test, y_test = _tabular_test_rows(model, args)
        return evaluate_regression(model, x_test, y_test, samples=samples), None
    raise CheckpointError(f"{checkpoint}: no evaluation for task {model.task!r}")


def main(argv: list[str] | None = None) -> dict[str, float | None]:
    """``python -m training.evaluate CHECKPOINT``: score a checkpoint on its test split."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument(
        "--samples",
        type=int,
        default=None,
        help="posterior samples (default: as recorded in the manifest)",
    )
    parser.add_argument("--device", default="auto")
    add_test_data_options(parser)
    parser.add_argument(
        "--write-thresholds",
        action="store_true",
        help="image models: record the epistemic threshold in the checkpoint's manifest "
        "(weights untouched)",
    )
    args = parser.parse_args(argv)

    model = load_checkpoint(args.checkpoint, resolve_device(args.device))
    if args.write_thresholds and model.task != IMAGE_CLASSIFICATION:
        parser.error("--write-thresholds: only image models have an epistemic threshold")
    recorded = read_manifest(args.checkpoint).get("test_metrics", {})
    samples = args.samples or int(recorded.get("samples", 32))
    metrics, thresholds = score_on_test_split(model, args.checkpoint, args, samples=samples)
    extra = {THRESHOLDS_KEY: thresholds} if thresholds is not None else {}
    if thresholds is not None and args.write_thresholds:
        command = training_command("training.evaluate", argv)
        print(f"wrote {record_thresholds(args.checkpoint, thresholds, command)}")
    print(
        json.dumps(
            {
                "checkpoint": str(args.checkpoint),
                "test_metrics": metrics,
                **extra,
                "recorded": recorded,
            },
            indent=2,
        )
    )
    return metrics


if __name__ == "__main__":
    run_script(main, (TableError, DataNotFoundError, CheckpointError, ImageDecodeError))
