"""The epistemic threshold: computed from the test images, recorded in the manifest, served."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import save_checkpoint, verify_checkpoint
from models.cnn import BayesianCNN
from models.images import to_model_input
from models.predictive import class_probability_samples, fixed_posterior
from training.evaluate import (
    EPISTEMIC_QUANTILE,
    THRESHOLDS_KEY,
    epistemic_threshold,
    record_thresholds,
    score_classification,
)
from training.manifest import write_manifest
from uncertainty.classification import summarize_classification


def test_threshold_is_the_quantile_of_the_terms_with_numpys_interpolation() -> None:
    assert epistemic_threshold(torch.arange(101.0), samples=8) == {
        "epistemic_nats": 95.0,
        "quantile": EPISTEMIC_QUANTILE,
        "samples": 8,
        "images": 101,
    }
    terms = torch.rand(997, generator=torch.Generator().manual_seed(1))
    found = epistemic_threshold(terms, samples=32, quantile=0.9)["epistemic_nats"]
    assert found == pytest.approx(float(np.percentile(terms.double().numpy(), 90)), rel=1e-12)
    with pytest.raises(ValueError, match="no epistemic terms"):
        epistemic_threshold(torch.empty(0), samples=1)


def test_scoring_gives_the_threshold_of_the_same_draws_as_the_metrics() -> None:
    torch.manual_seed(0)
    model = BayesianCNN(classes=("a", "b", "c"), image_size=32, rho_init=-2.0).eval()
    images = np.random.default_rng(0).integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(30) % 3
    scores = score_classification(model, images, labels, samples=6, batch_size=7, progress=False)
    # By hand: the epistemic term of every image at the seeded posterior's 6 draws.
    probs = class_probability_samples(model, to_model_input(images), fixed_posterior(model, 6))
    terms = summarize_classification(probs, 0.95).epistemic.double().numpy()
    assert scores.thresholds["images"] == 30 and scores.thresholds["samples"] == 6
    assert scores.thresholds["epistemic_nats"] == pytest.approx(
        float(np.percentile(terms, 95)), rel=1e-5
    )
    assert scores.metrics["mean_epistemic_nats"] == pytest.approx(float(terms.mean()), rel=1e-5)


def test_recording_leaves_the_weights_and_the_rest_of_the_manifest_alone(tmp_path: Path) -> None:
    model = BayesianCNN(classes=("a", "b"), image_size=32)
    checkpoint = tmp_path / "tiny.safetensors"
    save_checkpoint(model, checkpoint)
    manifest = write_manifest(
        checkpoint, model=model, command="test", data={}, metrics={"samples": 2}, training={}
    )
    before = json.loads(manifest.read_text())
    weights = checkpoint.read_bytes()
    thresholds = {"epistemic_nats": 0.25, "quantile": 0.95, "samples": 2, "images": 4}
    record_thresholds(checkpoint, thresholds, "python -m training.evaluate tiny --write-thresholds")
    after = json.loads(manifest.read_text())
    assert after[THRESHOLDS_KEY] == {
        **thresholds,
        "command": "python -m training.evaluate tiny --write-thresholds",
    }
    assert {k: v for k, v in after.items() if k != THRESHOLDS_KEY} == before
    assert checkpoint.read_bytes() == weights
    verify_checkpoint(checkpoint)  # the sha256 still holds


def test_the_committed_cifar_manifest_holds_a_threshold_measured_on_its_test_set(
    checkpoint_dir: Path,
) -> None:
    manifest = json.loads((checkpoint_dir / "cifar-bcnn.json").read_text())
    recorded = manifest[THRESHOLDS_KEY]
    assert recorded["images"] == manifest["data"]["test"]["rows"]
    assert recorded["samples"] == manifest["test_metrics"]["samples"]
    assert recorded["quantile"] == EPISTEMIC_QUANTILE
    # Above the mean epistemic term of the same images, as a 95th percentile must be.
    assert recorded["epistemic_nats"] > manifest["test_metrics"]["mean_epistemic_nats"]
    verify_checkpoint(checkpoint_dir / "cifar-bcnn.safetensors")  # weights as committed
