"""Test-set metrics of a trained model, from S posterior samples."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from models.checkpoint import load_checkpoint, read_manifest
from models.cifar import BayesianCNN
from models.device import resolve_device
from models.images import to_model_input
from models.predictive import (
    class_probability_samples,
    fixed_posterior,
    is_bayesian,
    regression_samples,
)
from training.datasets.cifar import load_cifar10
from training.datasets.wine import load_wine
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


def evaluate_wine(
    model: nn.Module, x: np.ndarray, y: np.ndarray, *, samples: int
) -> dict[str, float]:
    """RMSE of the mean, NLL of the predictive mixture, PICP and width of the 95% interval."""
    device = next(model.parameters()).device
    posterior = fixed_posterior(model, samples) if is_bayesian(model) else None
    mu, sigma = regression_samples(model, torch.as_tensor(x, device=device), posterior)
    target = torch.as_tensor(y, device=device)
    summary = summarize_regression(mu, sigma, INTERVAL_LEVEL)
    return {
        "rmse": rmse(summary.mean, target),
        "nll": mixture_nll(target, mu, sigma),
        "picp_95": interval_coverage(target, summary.lower, summary.upper),
        "interval_width_95": mean_interval_width(summary.lower, summary.upper),
        "mean_epistemic_std": float(summary.epistemic_std.mean()),
        "mean_aleatoric_std": float(summary.aleatoric_std.mean()),
        "samples": samples if posterior is not None else 1,
    }


def evaluate_cifar(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    samples: int,
    batch_size: int = 100,
    progress: bool = True,
) -> dict[str, float]:
    """Accuracy, NLL, Brier and 15-bin ECE of the posterior predictive mean."""
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
    return {
        "accuracy": accuracy(probs, target),
        "nll": classification_nll(probs, target),
        "brier": brier_score(probs, target),
        "ece_15": expected_calibration_error(probs, target, n_bins=15),
        "mean_epistemic_nats": float(torch.cat(epistemic).mean()),
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    """``python -m training.evaluate CHECKPOINT``: score a checkpoint on its test split."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument(
        "--samples",
        type=int,
        default=None,
        help="posterior samples (default: as recorded in the manifest)",
    )
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    model = load_checkpoint(args.checkpoint, resolve_device(args.device))
    recorded = read_manifest(args.checkpoint).get("test_metrics", {})
    samples = args.samples or int(recorded.get("samples", 32))
    if isinstance(model, BayesianCNN):
        test = load_cifar10("test", args.data_dir)
        metrics = evaluate_cifar(model, test.images, test.labels, samples=samples)
    else:
        split = load_wine(args.data_dir)
        metrics = evaluate_wine(model, split.x_test, split.y_test, samples=samples)
    print(
        json.dumps(
            {"checkpoint": str(args.checkpoint), "test_metrics": metrics, "recorded": recorded},
            indent=2,
        )
    )
    return metrics


if __name__ == "__main__":
    main()
