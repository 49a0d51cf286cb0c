"""The report command end to end on a tiny slice: real wine checkpoints and ensembles of them,
random-init CNNs and an ensemble of two; and the far-OOD digits and their AUROC by hand."""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from models.checkpoint import load_checkpoint, save_checkpoint
from models.cnn import BayesianCNN
from models.ensemble import Ensemble
from training import report
from training.datasets.cifar import CIFAR10_CLASSES
from training.manifest import write_manifest
from training.report.evaluation import ImagePredictions, far_ood_result, shift_away
from training.report.ood import digit_images
from training.report.plots import pair_rows
from training.report.repository import ReportError

WINE_PNGS = ("wine_calibration.png", "wine_pit.png", "wine_error_vs_std.png", "wine_shift.png")
CIFAR_PNGS = (
    "cifar_reliability.png",
    "cifar_refusal.png",
    "cifar_shift.png",
    "cifar_ood.png",
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SINGLE_WINE = ("wine-bnn", "wine-gaussian")
# Each family as one network and as an ensemble: the report scores every model of the family.
WINE_MODELS = (*SINGLE_WINE, "wine-bnn-ensemble", "wine-gaussian-ensemble")
CIFAR_MODELS = (report.CIFAR_TARGET_MODEL, "cifar-bcnn-ensemble")
OOD_IMAGES = 12


def _write(model: nn.Module, folder: Path, name: str) -> None:
    path = folder / f"{name}.safetensors"
    save_checkpoint(model, path)
    write_manifest(path, model=model, command="test: made up", data={}, metrics={}, training={})


def _random_cnn(seed: int) -> BayesianCNN:
    torch.manual_seed(seed)
    return BayesianCNN(classes=CIFAR10_CLASSES)


def _perturbed(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` whose weights are moved a little: a second member that disagrees."""
    generator = torch.Generator().manual_seed(seed)
    moved = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in moved.parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.add_(0.05 * parameter.std() * noise)
    return moved


@pytest.fixture(scope="module")
def report_checkpoints(checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed wine checkpoints and an ensemble of each (the BNN twice: one network's
    draws; the Gaussian beside a perturbed copy: a deterministic ensemble with an epistemic
    term), two untrained CIFAR networks, one of them an ensemble of two, and one model the
    report has no data for (neither wine-* nor cifar-*), which it leaves out."""
    folder = tmp_path_factory.mktemp("checkpoints")
    for name in SINGLE_WINE:
        for suffix in (".safetensors", ".json"):
            shutil.copy(checkpoint_dir / f"{name}{suffix}", folder)
    bnn = load_checkpoint(checkpoint_dir / "wine-bnn.safetensors")
    gaussian = load_checkpoint(checkpoint_dir / "wine-gaussian.safetensors")
    _write(Ensemble.of([bnn, bnn]), folder, "wine-bnn-ensemble")
    _write(Ensemble.of([gaussian, _perturbed(gaussian, 1)]), folder, "wine-gaussian-ensemble")
    _write(_random_cnn(0), folder, report.CIFAR_TARGET_MODEL)
    _write(Ensemble.of([_random_cnn(1), _random_cnn(2)]), folder, "cifar-bcnn-ensemble")
    _write(_random_cnn(7), folder, "other")
    return folder


def _run(report_checkpoints: Path, data_dir: Path, output: Path, *extra: str) -> dict:
    argv = ["--repository", str(report_checkpoints), "--data-dir", str(data_dir)]
    argv += ["--output", str(output), "--wine-samples", "8", "--cifar-samples", "2"]
    argv += ["--cifar-per-class", "2", "--shift-images", "12", "--ood-images", str(OOD_IMAGES)]
    argv += ["--device", "cpu", "--no-progress"]
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

    # By name: one network, then its ensemble.
    assert list(metrics["wine"]) == sorted(WINE_MODELS)
    wine = metrics["wine"]
    bnn, gaussian = wine["wine-bnn"], wine["wine-gaussian"]
    bnn_ensemble, gaussian_ensemble = wine["wine-bnn-ensemble"], wine["wine-gaussian-ensemble"]
    # A deterministic ensemble has one draw per member, as the service serves it.
    assert [bnn["samples"], gaussian["samples"]] == [8, 1]
    assert [bnn_ensemble["samples"], gaussian_ensemble["samples"]] == [8, 2]
    assert [wine[name]["members"] for name in WINE_MODELS] == [1, 1, 2, 2]
    for result in wine.values():
        coverage = [result["coverage"][f"{level:g}"] for level in report.COVERAGE_LEVELS]
        widths = [result["mean_interval_width"][f"{level:g}"] for level in report.COVERAGE_LEVELS]
        assert coverage == sorted(coverage) and widths == sorted(widths)
        # Trained models: within 0.1 of nominal even at S=8; a wrong interval would not be.
        for level, covered in zip(report.COVERAGE_LEVELS, coverage, strict=True):
            assert abs(covered - level) < 0.1
        assert 0.5 < result["rmse"] < 1.0 and 0.8 < result["nll"] < 1.5
        assert 0.2 < result["crps"] < 0.8 and result["spearman_std_abs_error"] > 0
    # Two copies of one BNN draw what it draws alone: the ensemble met the service's draws.
    for key in ("rmse", "nll", "crps", "coverage", "mean_interval_width"):
        assert bnn_ensemble[key] == pytest.approx(bnn[key]), key
    for key in ("mean_epistemic_std", "mean_aleatoric_std"):
        assert bnn_ensemble["shift"][key] == pytest.approx(bnn["shift"][key]), key
    shift = bnn["shift"]["mean_epistemic_std"]
    assert len(shift) == len(report.WINE_SHIFT_STEPS) and shift[-1] > shift[0] > 0
    assert gaussian["shift"]["mean_epistemic_std"] == [0.0] * len(report.WINE_SHIFT_STEPS)
    assert gaussian["shift"]["auroc_clean_vs_k4_epistemic"] is None
    # Its members disagree: a deterministic ensemble does have an epistemic term.
    assert min(gaussian_ensemble["shift"]["mean_epistemic_std"]) > 0
    assert 0 <= gaussian_ensemble["shift"]["auroc_clean_vs_k4_epistemic"] <= 1

    assert set(metrics["checkpoints"]) == {*WINE_MODELS, *CIFAR_MODELS}
    assert metrics["checkpoints"]["cifar-bcnn-ensemble"]["members"] == 2
    assert metrics["checkpoints"]["cifar-bcnn-ensemble"]["kind"] == "bayesian-cnn-ensemble"
    assert list(metrics["cifar"]) == sorted(CIFAR_MODELS)
    for cifar in metrics["cifar"].values():
        assert cifar["test_images"] == 20 and cifar["shift"]["images"] == 12
        assert cifar["samples"] == 2
        assert 0 <= cifar["accuracy"] <= 1 and 0 <= cifar["ece_15"] <= 1
        assert math.isfinite(cifar["nll"]) and cifar["nll"] > 0
        assert sum(cifar["reliability"]["count"]) == 20
        assert cifar["refusal"]["accuracy_by_total"][0] == pytest.approx(cifar["accuracy"])
        for name in ("gaussian_noise", "gaussian_blur", "contrast"):
            values = cifar["shift"]["mean_epistemic_nats"][name]
            assert len(values) == 6 and min(values) >= 0
            assert 0 <= cifar["shift"]["auroc_clean_vs_5_epistemic"][name] <= 1
        ood = cifar["far_ood"]
        assert ood["images"] == OOD_IMAGES and ood["test_images"] == 20
        assert 0 <= ood["auroc_epistemic"] <= 1 and 0 <= ood["auroc_total"] <= 1
        assert min(ood["mean_epistemic_nats"].values()) >= 0
    assert [metrics["cifar"][name]["members"] for name in CIFAR_MODELS] == [1, 2]
    # Two different networks, two sets of numbers: each model was scored, not one twice.
    first, second = (metrics["cifar"][name] for name in CIFAR_MODELS)
    assert first["nll"] != second["nll"]

    # The targets: per model, for the models with targets alone.
    checks = metrics["checks"]
    per_model = {model: sum(c["model"] == model for c in checks) for model in metrics["misses"]}
    assert per_model == {
        "wine-bnn": 5 + 1,  # coverage at 5 levels, epistemic rising
        "wine-bnn-ensemble": 2 + 5,  # RMSE, NLL, coverage
        "wine-gaussian-ensemble": 2,  # RMSE, NLL
        "cifar-bcnn": 1 + 3 + 1,  # ECE, rising per corruption, AUROC
        "cifar-bcnn-ensemble": 2 + 3 + 1 + 1,  # accuracy, ECE, rising, AUROC, digits AUROC
    }
    assert sum(per_model.values()) == len(checks) and metrics["unchecked"] == []
    assert metrics["all_passed"] == all(c["passed"] for c in checks)
    for model, missed in metrics["misses"].items():
        assert missed == [c["name"] for c in checks if c["model"] == model and not c["passed"]]
    # Its accuracy and ECE targets are stated at S=32: at S=2 they are not met, whatever the
    # numbers.
    at_s = [c for c in checks if c["model"] == "cifar-bcnn-ensemble" and "S=32" in c["target"]]
    assert len(at_s) == 2 and not any(c["passed"] for c in at_s)
    assert all("(at S=2)" in c["value"] for c in at_s)

    readme = (output / "README.md").read_text()
    for name in (*WINE_PNGS, *CIFAR_PNGS):
        assert f"]({name})" in readme
    for check in checks:
        assert f"| {check['model']} | {check['name']} | {check['value']} |" in readme
    for model, missed in metrics["misses"].items():
        if missed:
            assert f"- **{model}** misses {len(missed)} of {per_model[model]} targets" in readme
        else:
            assert f"- **{model}** meets all {per_model[model]} of its targets." in readme
    assert "Tried prior sigma 0.05: no change." in readme
    assert "python -m training.report --repository" in readme
    for name in (*WINE_MODELS, *CIFAR_MODELS):
        assert f"| {name} |" in readme
    assert "other" not in metrics["checkpoints"] and "| other |" not in readme
    assert "x' = x + k·std·sign(x - mean)" in readme
    assert "## 4. Far out of distribution" in readme


def test_report_of_wine_alone(checkpoint_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    # One network of each kind alone: the ensembles' targets are said to be unchecked.
    folder = tmp_path / "repository"
    folder.mkdir()
    for name in SINGLE_WINE:
        for suffix in (".safetensors", ".json"):
            shutil.copy(checkpoint_dir / f"{name}{suffix}", folder)
    output = tmp_path / "out"
    metrics = _run(folder, data_dir, output, "--tasks", "wine")
    assert "cifar" not in metrics and set(metrics["checkpoints"]) == set(SINGLE_WINE)
    assert all((output / name).is_file() for name in WINE_PNGS)
    assert not any((output / name).exists() for name in CIFAR_PNGS)
    assert metrics["unchecked"] == ["wine-bnn-ensemble", "wine-gaussian-ensemble"]
    assert set(metrics["misses"]) == {"wine-bnn"}
    readme = (output / "README.md").read_text()
    assert "CIFAR" not in readme and "Nothing recorded yet" in readme
    assert "- **wine-bnn-ensemble** is not in the repository" in readme


def test_a_part_without_models_is_an_error(tmp_path: Path) -> None:
    _write(_random_cnn(0), tmp_path, "cifar-only")
    with pytest.raises(ReportError, match=r"holds no wine-\* model \(it holds: cifar-only\)"):
        report.main(["--repository", str(tmp_path), "--output", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("members", [1, 2])
def test_a_family_model_that_does_not_fit_its_data_is_an_error(
    data_dir: Path, tmp_path: Path, members: int
) -> None:
    # An ensemble is checked by its members' kind: of CNNs, it does not take wine rows either.
    cnns = [_random_cnn(seed) for seed in range(members)]
    _write(cnns[0] if members == 1 else Ensemble.of(cnns), tmp_path, "wine-cnn")
    kind = "bayesian-cnn" if members == 1 else "bayesian-cnn-ensemble"
    with pytest.raises(ReportError, match=f"wine-cnn is scored on the wine split.* a {kind} "):
        _run(tmp_path, data_dir, tmp_path / "out", "--tasks", "wine")


def test_shift_away_moves_each_feature_k_stds_outward() -> None:
    x = np.array([[1.0, 5.0, 2.0]], dtype=np.float32)
    mean, std = np.array([2.0, 2.0, 2.0]), np.array([1.0, 2.0, 3.0])
    shifted = shift_away(x, mean, std, 2)
    assert shifted.dtype == np.float32
    # Below the mean moves down, above moves up, on the mean stays.
    np.testing.assert_array_equal(shifted, [[-1.0, 9.0, 2.0]])
    np.testing.assert_array_equal(shift_away(x, mean, std, 0), x)


def test_digit_images_are_cifar_sized_rgb_of_the_full_range() -> None:
    images, digits = digit_images()
    original = load_digits()
    assert images.shape == (1797, 32, 32, 3) and images.dtype == np.uint8
    assert (images.min(), images.max()) == (0, 255)  # 0-16 scaled to 0-255
    np.testing.assert_array_equal(digits, original.target)
    # Grey: three equal channels.
    assert (images[..., 0] == images[..., 1]).all() and (images[..., 1] == images[..., 2]).all()
    # Upscaling by interpolation keeps each image's brightness: its mean is the 8×8 one's.
    np.testing.assert_allclose(
        images.mean(axis=(1, 2, 3)), original.images.mean(axis=(1, 2)) * 255 / 16, atol=0.5
    )


def test_a_digit_subset_is_seeded_and_labelled() -> None:
    images, digits = digit_images(7, seed=3)
    again, _ = digit_images(7, seed=3)
    all_images, all_digits = digit_images()
    assert images.shape == (7, 32, 32, 3)
    np.testing.assert_array_equal(images, again)
    # Each is one of the full set's, with its digit.
    for image, digit in zip(images, digits, strict=True):
        matches = np.flatnonzero((all_images == image).all(axis=(1, 2, 3)))
        assert len(matches) >= 1 and digit in all_digits[matches]
    with pytest.raises(ValueError, match="at least one"):
        digit_images(0)


def _predictions(total: list[float], epistemic: list[float]) -> ImagePredictions:
    probabilities = torch.full((len(total), 10), 0.1)
    return ImagePredictions(probabilities, torch.tensor(total), torch.tensor(epistemic))


def test_far_ood_auroc_by_hand() -> None:
    clean = _predictions(total=[1.0, 2.0, 0.5], epistemic=[0.1, 0.4, 0.35])
    far = _predictions(total=[2.0, 0.2], epistemic=[0.3, 0.8])
    result = far_ood_result(clean, far, has_epistemic=True)
    # Of the 3 × 2 (clean, digit) pairs, those where the digit scores higher, ties half:
    # epistemic 0.3 beats 0.1 only, 0.8 beats all three: 4 of 6.
    assert result.auroc_epistemic == pytest.approx(4 / 6)
    # total: 2.0 beats 1.0 and 0.5 and ties 2.0 (2.5), 0.2 beats none: 2.5 of 6.
    assert result.auroc_total == pytest.approx(2.5 / 6)
    assert (result.images, result.test_images) == (2, 3)
    assert result.mean_epistemic_ood == pytest.approx(0.55)
    assert result.mean_total_test == pytest.approx(3.5 / 3)
    # One deterministic network: no epistemic term to rank by.
    assert far_ood_result(clean, far, has_epistemic=False).auroc_epistemic is None


def test_a_network_and_its_ensemble_share_a_row_of_panels() -> None:
    names = ["cifar-bcnn", "cifar-bcnn-ensemble", "cifar-x-ensemble", "cifar-y"]
    assert pair_rows(names) == [
        ("cifar-bcnn", "cifar-bcnn-ensemble"),
        (None, "cifar-x-ensemble"),
        ("cifar-y", None),
    ]
