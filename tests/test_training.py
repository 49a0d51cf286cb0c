"""Training scripts end to end on tiny slices: checkpoint, manifest, reload, re-scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.checkpoint import file_sha256, load_checkpoint, read_manifest
from training import evaluate, sweep_wine, train_cifar, train_tabular, train_wine
from training.datasets.cifar import CIFAR10_CLASSES, load_cifar10
from training.datasets.table import TableError
from training.datasets.wine import WINE_FEATURES, WINE_TARGET, load_wine
from training.evaluate import evaluate_classification, evaluate_regression


def assert_same_metrics(actual: dict[str, float | None], expected: dict[str, float | None]) -> None:
    """Equal to float rounding; a None (a deterministic model's epistemic term) stays None."""
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        assert actual[name] == (None if value is None else pytest.approx(value, rel=1e-6)), name


@pytest.mark.parametrize("model", ["bnn", "gaussian"])
def test_train_wine_tiny(model: str, data_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / f"wine-{model}.safetensors"
    argv = ["--model", model, "--epochs", "3", "--train-rows", "300", "--hidden", "8"]
    argv += ["--data-dir", str(data_dir), "--output", str(output), "--no-progress"]
    metrics = train_wine.main(argv)

    manifest = read_manifest(output)
    assert manifest["sha256"] == file_sha256(output)
    assert manifest["name"] == f"wine-{model}" and manifest["task"] == "tabular-regression"
    assert manifest["kind"] == f"tabular-{model}"
    assert (
        manifest["command"].startswith("python -m training.train_wine ")
        and "--train-rows 300" in manifest["command"]
    )
    # Where the data came from, relative to the data folder: no build-machine path.
    assert manifest["data"]["source"] == "wine"
    assert manifest["data"]["test_rows"] == 735
    assert manifest["data"]["train_rows"] + manifest["data"]["validation_rows"] == 300
    assert manifest["training"]["epochs_run"] == 3 and manifest["training"]["seed"] == 0
    assert set(manifest["test_metrics"]) == {
        "rmse",
        "nll",
        "picp_95",
        "interval_width_95",
        "mean_epistemic_std",
        "mean_aleatoric_std",
        "samples",
    }
    # A deterministic network has no epistemic term: null, not 0.0.
    assert (manifest["test_metrics"]["mean_epistemic_std"] is None) == (model == "gaussian")

    # The file alone reproduces the metrics computed from the in-memory model...
    reloaded_model = load_checkpoint(output)
    assert reloaded_model.features == WINE_FEATURES and reloaded_model.target_name == WINE_TARGET
    split = load_wine(data_dir)
    reloaded = evaluate_regression(
        reloaded_model, split.x_test, split.y_test, samples=metrics["samples"]
    )
    assert_same_metrics(reloaded, metrics)
    # ... and so does the re-scoring command, on the wine split by default.
    rescored = evaluate.main([str(output), "--data-dir", str(data_dir), "--device", "cpu"])
    assert_same_metrics(rescored, metrics)


def test_wine_defaults_are_the_committed_checkpoints(checkpoint_dir: Path) -> None:
    # Same settings as wrote the served checkpoints (whose training records them).
    for model, hidden in (("bnn", [64, 64, 64]), ("gaussian", [50])):
        recorded = read_manifest(checkpoint_dir / f"wine-{model}.safetensors")["training"]
        assert recorded["config"]["hidden"] == hidden == train_wine.DEFAULT_HIDDEN[model]
        assert (recorded["batch_size"], recorded["lr"], recorded["seed"]) == (64, 1e-3, 0)


@pytest.mark.parametrize("members", [1, 2], ids=["one network", "an ensemble"])
def test_evaluate_rescores_a_table_model_on_its_own_split(tmp_path: Path, members: int) -> None:
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (120, 2))
    y = x[:, 0] - 2 * x[:, 1] + rng.normal(0, 0.1, 120)
    csv = tmp_path / "plane.csv"
    rows = [f"{a:.5f},{b:.5f},{t:.5f}" for (a, b), t in zip(x, y, strict=True)]
    csv.write_text("\n".join(["u,v,w", *rows]) + "\n")
    argv = ["--csv", str(csv), "--target", "w", "--name", "plane", "--epochs", "5"]
    argv += ["--members", str(members)]
    metrics = train_tabular.main([*argv, "--output-dir", str(tmp_path), "--no-progress"])
    checkpoint = tmp_path / "plane.safetensors"
    assert_same_metrics(evaluate.main([str(checkpoint), "--csv", str(csv)]), metrics)
    # Without --csv the model is not a wine model: say what to pass.
    with pytest.raises(TableError, match="--csv"):
        evaluate.main([str(checkpoint)])


def test_train_cifar_tiny(data_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "cifar.safetensors"
    argv = ["--epochs", "1", "--train-per-class", "8", "--test-per-class", "2", "--samples", "2"]
    argv += ["--batch-size", "40", "--data-dir", str(data_dir), "--output", str(output)]
    metrics = train_cifar.main([*argv, "--no-progress"])

    manifest = read_manifest(output)
    assert manifest["sha256"] == file_sha256(output)
    assert manifest["name"] == "cifar" and manifest["kind"] == "bayesian-cnn"
    assert manifest["data"]["train"]["rows"] == 80 and manifest["data"]["test"]["rows"] == 20
    assert manifest["data"]["train"]["source"] == "cifar10/train"
    assert manifest["training"]["kl_weight"] == 0.03
    assert set(manifest["test_metrics"]) == {
        "accuracy",
        "nll",
        "brier",
        "ece_15",
        "mean_epistemic_nats",
        "samples",
    }
    model = load_checkpoint(output)
    assert model.classes == CIFAR10_CLASSES and model.image_size == 32
    test = load_cifar10("test", data_dir, per_class=2)
    reloaded = evaluate_classification(model, test.images, test.labels, samples=2, progress=False)
    assert reloaded == pytest.approx(metrics, rel=1e-6)


def test_the_wine_sweep_scores_every_setting_on_rows_no_member_trained_on(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid = {"gaussian": [((8,), 1.0, 1e-3), ((4, 4), 1.0, 1e-2)], "bnn": [((8,), 0.5, 1e-3)]}
    monkeypatch.setattr(sweep_wine, "GRID", grid)
    rows = sweep_wine.main(["--members", "2", "--epochs", "2"])
    assert [(r["model"], tuple(r["hidden"]), r["prior_sigma"], r["lr"]) for r in rows] == [
        (model, *setting) for model in ("bnn", "gaussian") for setting in grid[model]
    ]
    data = sweep_wine.selection_data(data_dir)
    split = load_wine(data_dir)
    # The selection rows are training rows that no member fits or stops on: the fit rows
    # and the selection rows together are the training split, row for row.
    both = np.concatenate([data.x_train, data.x_test])
    assert sorted(map(bytes, both)) == sorted(map(bytes, split.x_train))
    assert all(0 < r["selection"]["rmse"] < 2 for r in rows)


def test_wine_ensembles_default_to_their_own_widths(checkpoint_dir: Path) -> None:
    for model in ("bnn", "gaussian"):
        recorded = read_manifest(checkpoint_dir / f"wine-{model}-ensemble.safetensors")
        member = recorded["training"]["config"]["member"]
        assert member["hidden"] == train_wine.ENSEMBLE_HIDDEN[model]
        assert recorded["command"].endswith(f"--model {model} --members 5 --no-progress")
