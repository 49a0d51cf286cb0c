"""The report command end to end on a tiny slice: real wine checkpoints, random-init CNNs."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import save_checkpoint
from models.cnn import BayesianCNN
from training import report
from training.datasets.cifar import CIFAR10_CLASSES
from training.manifest import write_manifest
from training.report.evaluation import shift_away
from training.report.repository import ReportError

WINE_PNGS = ("wine_calibration.png", "wine_pit.png", "wine_error_vs_std.png", "wine_shift.png")
CIFAR_PNGS = ("cifar_reliability.png", "cifar_refusal.png", "cifar_shift.png")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WINE_MODELS = ("wine-bnn", "wine-gaussian")
# The target model and a second one: the report scores every cifar-* model of the repository.
CIFAR_MODELS = (report.CIFAR_TARGET_MODEL, "cifar-second")


def _random_cnn(folder: Path, name: str, seed: int) -> None:
    torch.manual_seed(seed)
    model = BayesianCNN(classes=CIFAR10_CLASSES)
    path = folder / f"{name}.safetensors"
    save_checkpoint(model, path)
    write_manifest(path, model=model, command="test: random init", data={}, metrics={}, training={})


@pytest.fixture(scope="module")
def report_checkpoints(checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed wine checkpoints beside two untrained CIFAR models, and one model the
    report has no data for (neither wine-* nor cifar-*), which it leaves out."""
    folder = tmp_path_factory.mktemp("checkpoints")
    for name in WINE_MODELS:
        for suffix in (".safetensors", ".json"):
            shutil.copy(checkpoint_dir / f"{name}{suffix}", folder)
    for seed, name in enumerate(CIFAR_MODELS):
        _random_cnn(folder, name, seed)
    _random_cnn(folder, "other", 7)
    return folder


def _run(report_checkpoints: Path, data_dir: Path, output: Path, *extra: str) -> dict:
    argv = ["--repository", str(report_checkpoints), "--data-dir", str(data_dir)]
    argv += ["--output", str(output), "--wine-samples", "8", "--cifar-samples", "2"]
    argv += ["--cifar-per-class", "2", "--shift-images", "12", "--device", "cpu", "--no-progress"]
    return report.main([*argv, *extra])


def test_report_end_to_end_on_a_tiny_slice(
    report_checkpoints: Path, data_dir: Path, tmp_path: Path
) -> None:
    output = tmp_path / "reports"
    output.mkdir()
    (output / "NOTES.md").write_text("Tried prior sigma 0.05: no change.\n")
    returned = _run(report_checkpoints, data_dir, output)

    for name in (*WINE_PNGS, *CIFAR_PNGS):
        png = (output / name).read_bytes()
        assert png.startswith(PNG_SIGNATURE) and len(png) > 10_000, name
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(returned))

    bnn, gaussian = metrics["wine"]["wine-bnn"], metrics["wine"]["wine-gaussian"]
    assert bnn["samples"] == 8 and gaussian["samples"] == 1
    for wine in (bnn, gaussian):
        coverage = [wine["coverage"][f"{level:g}"] for level in report.COVERAGE_LEVELS]
        widths = [wine["mean_interval_width"][f"{level:g}"] for level in report.COVERAGE_LEVELS]
        assert coverage == sorted(coverage) and widths == sorted(widths)
        # Trained models: within 0.1 of nominal even at S=8; a wrong interval would not be.
        for level, covered in zip(report.COVERAGE_LEVELS, coverage, strict=True):
            assert abs(covered - level) < 0.1
        assert 0.5 < wine["rmse"] < 1.0 and 0.8 < wine["nll"] < 1.5 and 0.2 < wine["crps"] < 0.8
        assert wine["spearman_std_abs_error"] > 0
    shift = bnn["shift"]["mean_epistemic_std"]
    assert len(shift) == len(report.WINE_SHIFT_STEPS) and shift[-1] > shift[0] > 0
    assert gaussian["shift"]["mean_epistemic_std"] == [0.0] * len(report.WINE_SHIFT_STEPS)

    assert set(metrics["checkpoints"]) == {*WINE_MODELS, *CIFAR_MODELS}
    assert list(metrics["cifar"]) == sorted(CIFAR_MODELS)
    for cifar in metrics["cifar"].values():
        assert cifar["test_images"] == 20 and cifar["shift"]["images"] == 12
        assert 0 <= cifar["accuracy"] <= 1 and 0 <= cifar["ece_15"] <= 1
        assert math.isfinite(cifar["nll"]) and cifar["nll"] > 0
        assert sum(cifar["reliability"]["count"]) == 20
        assert cifar["refusal"]["accuracy_by_total"][0] == pytest.approx(cifar["accuracy"])
        for name in ("gaussian_noise", "gaussian_blur", "contrast"):
            values = cifar["shift"]["mean_epistemic_nats"][name]
            assert len(values) == 6 and min(values) >= 0
            assert 0 <= cifar["shift"]["auroc_clean_vs_5_epistemic"][name] <= 1
    # Two different networks, two sets of numbers: each model was scored, not one twice.
    first, second = (metrics["cifar"][name] for name in CIFAR_MODELS)
    assert first["nll"] != second["nll"]

    # The targets are checked on the target models alone.
    checks = metrics["checks"]
    assert len(checks) == len(report.COVERAGE_LEVELS) + 1 + 1 + 3 + 1
    assert metrics["all_passed"] == all(c["passed"] for c in checks)
    targets = (report.WINE_TARGET_MODEL, report.CIFAR_TARGET_MODEL)
    assert all(c["name"].startswith(targets) for c in checks)

    readme = (output / "README.md").read_text()
    for name in (*WINE_PNGS, *CIFAR_PNGS):
        assert f"]({name})" in readme
    for check in checks:
        assert check["name"] in readme
    assert "Tried prior sigma 0.05: no change." in readme
    assert "python -m training.report --repository" in readme
    for name in (*WINE_MODELS, *CIFAR_MODELS):
        assert f"| {name} |" in readme
    assert "other" not in metrics["checkpoints"] and "| other |" not in readme
    assert "x' = x + k·std·sign(x - mean)" in readme


def test_report_of_wine_alone(report_checkpoints: Path, data_dir: Path, tmp_path: Path) -> None:
    metrics = _run(report_checkpoints, data_dir, tmp_path, "--tasks", "wine")
    assert "cifar" not in metrics and set(metrics["checkpoints"]) == set(WINE_MODELS)
    assert all((tmp_path / name).is_file() for name in WINE_PNGS)
    assert not any((tmp_path / name).exists() for name in CIFAR_PNGS)
    readme = (tmp_path / "README.md").read_text()
    assert "CIFAR" not in readme and "Nothing recorded yet" in readme


def test_a_part_without_models_is_an_error(tmp_path: Path) -> None:
    _random_cnn(tmp_path, "cifar-only", 0)
    with pytest.raises(ReportError, match=r"holds no wine-\* model \(it holds: cifar-only\)"):
        report.main(["--repository", str(tmp_path), "--output", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_a_family_model_that_does_not_fit_its_data_is_an_error(
    data_dir: Path, tmp_path: Path
) -> None:
    _random_cnn(tmp_path, "wine-cnn", 0)
    with pytest.raises(ReportError, match="wine-cnn is scored on the wine split"):
        _run(tmp_path, data_dir, tmp_path / "out", "--tasks", "wine")


def test_shift_away_moves_each_feature_k_stds_outward() -> None:
    x = np.array([[1.0, 5.0, 2.0]], dtype=np.float32)
    mean, std = np.array([2.0, 2.0, 2.0]), np.array([1.0, 2.0, 3.0])
    shifted = shift_away(x, mean, std, 2)
    assert shifted.dtype == np.float32
    # Below the mean moves down, above moves up, on the mean stays.
    np.testing.assert_array_equal(shifted, [[-1.0, 9.0, 2.0]])
    np.testing.assert_array_equal(shift_away(x, mean, std, 0), x)
