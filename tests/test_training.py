"""Training scripts end to end on tiny slices: checkpoint, manifest, reload."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.checkpoint import file_sha256, load_checkpoint, read_manifest
from training import train_cifar, train_wine
from training.datasets.cifar import load_cifar10
from training.datasets.wine import load_wine
from training.evaluate import evaluate_cifar, evaluate_wine


@pytest.mark.parametrize("model", ["bnn", "gaussian"])
def test_train_wine_tiny(model: str, data_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / f"wine-{model}.safetensors"
    argv = ["--model", model, "--epochs", "3", "--train-rows", "300", "--hidden", "8"]
    argv += ["--data-dir", str(data_dir), "--output", str(output), "--no-progress"]
    metrics = train_wine.main(argv)

    manifest = read_manifest(output)
    assert manifest["sha256"] == file_sha256(output)
    assert manifest["model"] == f"wine-{model}"
    assert (
        manifest["command"].startswith("python -m ") and "--train-rows 300" in manifest["command"]
    )
    assert manifest["data"]["test_rows"] == 735
    assert set(manifest["test_metrics"]) >= {"rmse", "nll", "picp_95", "interval_width_95"}

    # The file alone reproduces the metrics computed from the in-memory model.
    split = load_wine(data_dir)
    reloaded = evaluate_wine(
        load_checkpoint(output), split.x_test, split.y_test, samples=metrics["samples"]
    )
    assert reloaded == pytest.approx(metrics, rel=1e-6)


def test_train_cifar_tiny(data_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "cifar.safetensors"
    argv = ["--epochs", "1", "--train-per-class", "8", "--test-per-class", "2", "--samples", "2"]
    argv += ["--batch-size", "40", "--data-dir", str(data_dir), "--output", str(output)]
    metrics = train_cifar.main([*argv, "--no-progress"])

    manifest = read_manifest(output)
    assert manifest["sha256"] == file_sha256(output)
    assert manifest["data"]["train"]["rows"] == 80 and manifest["data"]["test"]["rows"] == 20
    assert set(manifest["test_metrics"]) >= {"accuracy", "nll", "brier", "ece_15"}
    test = load_cifar10("test", data_dir, per_class=2)
    reloaded = evaluate_cifar(
        load_checkpoint(output), test.images, test.labels, samples=2, progress=False
    )
    assert reloaded == pytest.approx(metrics, rel=1e-6)
