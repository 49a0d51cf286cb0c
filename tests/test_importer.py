"""Importing PyTorch-BayesianCNN's BBB3Conv3FC checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from models.checkpoint import (
    CheckpointError,
    file_sha256,
    load_checkpoint,
    read_manifest,
    verify_checkpoint,
)
from models.importer import load_bayesiancnn_file
from models.layers import posterior_mean
from training import import_bayesiancnn
from training.datasets.cifar import CIFAR10_CLASSES

# (name, weight shape) of BBB3Conv3FC for CIFAR-10, as PyTorch-BayesianCNN builds it.
SHAPES = {
    "conv1": (32, 3, 5, 5),
    "conv2": (64, 32, 5, 5),
    "conv3": (128, 64, 5, 5),
    "fc1": (1000, 512),
    "fc2": (1000, 1000),
    "fc3": (10, 1000),
}


def _their_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in SHAPES.items():
        fan_in = torch.tensor(shape[1:]).prod().item()
        state[f"{name}.W_mu"] = torch.randn(shape, generator=g) / fan_in**0.5
        state[f"{name}.W_rho"] = torch.randn(shape, generator=g) - 5
        state[f"{name}.bias_mu"] = torch.randn(shape[0], generator=g) * 0.1
        state[f"{name}.bias_rho"] = torch.randn(shape[0], generator=g) - 5
    return state


def _hand_written_forward(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    # BBB3Conv3FC at its posterior mean, written out layer by layer.
    paddings = {"conv1": 2, "conv2": 2, "conv3": 1}
    for name, padding in paddings.items():
        x = F.conv2d(x, state[f"{name}.W_mu"], state[f"{name}.bias_mu"], padding=padding)
        x = F.max_pool2d(F.softplus(x), kernel_size=3, stride=2)
    x = x.reshape(len(x), -1)
    x = F.softplus(x @ state["fc1.W_mu"].T + state["fc1.bias_mu"])
    x = F.softplus(x @ state["fc2.W_mu"].T + state["fc2.bias_mu"])
    return x @ state["fc3.W_mu"].T + state["fc3.bias_mu"]


def test_imported_mean_logits_equal_hand_written_forward(tmp_path: Path) -> None:
    state = _their_state_dict()
    path = tmp_path / "model_3conv3fc_lrt_softplus.pt"
    torch.save(state, path)
    model = load_bayesiancnn_file(path, classes=CIFAR10_CLASSES)
    images = torch.rand(4, 3, 32, 32)
    logits = model(images, posterior_mean(model))[0]
    torch.testing.assert_close(logits, _hand_written_forward(state, images), rtol=1e-4, atol=1e-5)
    # Their sigma is log1p(exp(rho)), as ours.
    torch.testing.assert_close(model.fc2.weight_sigma, torch.log1p(torch.exp(state["fc2.W_rho"])))


def test_missing_and_unexpected_keys(tmp_path: Path) -> None:
    state = _their_state_dict()
    del state["fc2.W_rho"]
    torch.save(state, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match=r"missing 'fc2\.W_rho'"):
        load_bayesiancnn_file(tmp_path / "a.pt", classes=CIFAR10_CLASSES)
    state = _their_state_dict()
    state["fc4.W_mu"] = torch.zeros(1)
    torch.save(state, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match=r"fc4\.W_mu"):
        load_bayesiancnn_file(tmp_path / "b.pt", classes=CIFAR10_CLASSES)


def test_wrong_shape_is_reported(tmp_path: Path) -> None:
    state = _their_state_dict()
    state["conv2.W_mu"] = torch.zeros(64, 32, 3, 3)
    torch.save(state, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=r"conv2\.weight_mu: shape \(64, 32, 3, 3\)"):
        load_bayesiancnn_file(tmp_path / "c.pt", classes=CIFAR10_CLASSES)


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


def test_pickled_code_is_never_run(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"conv1.W_mu": _Exploit()}, path)
    with pytest.raises(CheckpointError, match="tensors-only"):
        load_bayesiancnn_file(path, classes=CIFAR10_CLASSES)


def test_import_command_writes_a_servable_checkpoint(data_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "theirs.pt"
    torch.save(_their_state_dict(), source)
    output = tmp_path / "imported.safetensors"
    argv = [str(source), "--output", str(output), "--samples", "2", "--test-per-class", "1"]
    metrics = import_bayesiancnn.main([*argv, "--data-dir", str(data_dir), "--no-progress"])
    assert verify_checkpoint(output) == file_sha256(output)
    manifest = read_manifest(output)
    assert manifest["test_metrics"] == metrics and manifest["name"] == "imported"
    assert (
        manifest["kind"] == "bayesian-cnn" and manifest["data"]["test"]["source"] == "cifar10/test"
    )
    assert manifest["data"]["imported_from"]["sha256"] == file_sha256(source)
    model = load_checkpoint(output)
    assert model.classes == CIFAR10_CLASSES
    state = _their_state_dict()
    images = torch.rand(2, 3, 32, 32)
    expected = _hand_written_forward(state, images)
    torch.testing.assert_close(
        model(images, posterior_mean(model))[0], expected, rtol=1e-4, atol=1e-5
    )
