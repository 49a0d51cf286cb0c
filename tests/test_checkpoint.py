"""Checkpoints: safetensors round trip, clear errors for missing or corrupt files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from models.checkpoint import (
    CheckpointError,
    file_sha256,
    load_checkpoint,
    manifest_path,
    save_checkpoint,
    verify_checkpoint,
)
from models.cnn import BayesianCNN
from models.predictive import fixed_posterior
from models.tabular import TabularBNN, TabularGaussian
from training.datasets.cifar import CIFAR10_CLASSES
from training.datasets.wine import WINE_FEATURES, WINE_TARGET

WINE = {"features": WINE_FEATURES, "target": WINE_TARGET}


def _outputs(model: nn.Module) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(0)
    if isinstance(model, BayesianCNN):
        return (model(torch.rand(2, 3, 32, 32), fixed_posterior(model, 3)),)
    x = torch.randn(4, 11)
    if isinstance(model, TabularGaussian):
        return model(x)
    return model(x, fixed_posterior(model, 3))


@pytest.mark.parametrize(
    "model",
    [
        TabularBNN(**WINE, hidden=[6], noise="homoscedastic", prior_sigma=0.4),
        TabularGaussian(**WINE, hidden=[5, 3]),
        BayesianCNN(classes=CIFAR10_CLASSES, prior_sigma=0.2),
    ],
    ids=["tabular-bnn", "tabular-gaussian", "bayesian-cnn"],
)
def test_round_trip_gives_identical_outputs(model: nn.Module, tmp_path: Path) -> None:
    if isinstance(model, BayesianCNN):
        model.normalize.fit(torch.rand(3, 1, 1), torch.rand(3, 1, 1) + 0.5)
    else:
        model.standardize.fit(torch.rand(11), torch.rand(11) + 0.5)
    model.eval()
    path = tmp_path / "m.safetensors"
    digest = save_checkpoint(model, path)
    assert digest == file_sha256(path)
    loaded = load_checkpoint(path)
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.config == model.config
    if isinstance(model, BayesianCNN):
        assert loaded.classes == model.classes
    else:
        assert (loaded.features, loaded.target_name) == (model.features, model.target_name)
    for a, b in zip(_outputs(model), _outputs(loaded), strict=True):
        assert torch.equal(a, b)


def test_file_holds_no_pickle(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_checkpoint(TabularGaussian(**WINE, hidden=[2]), path)
    header_size = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8 : 8 + header_size])
    assert header["__metadata__"]["kind"] == "tabular-gaussian"
    assert json.loads(header["__metadata__"]["config"])["features"] == list(WINE_FEATURES)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.safetensors"
    with pytest.raises(CheckpointError, match=r"not found: .*nowhere\.safetensors"):
        load_checkpoint(path)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_file_names_the_path(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "bad.safetensors"
    save_checkpoint(TabularGaussian(**WINE, hidden=[2]), path)
    data = path.read_bytes()
    path.write_bytes(b"\x00garbage" * 10 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"bad\.safetensors"):
        load_checkpoint(path)


def test_unknown_kind_and_mismatched_weights(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "odd.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={"kind": "resnet", "config": "{}"})
    with pytest.raises(CheckpointError, match="'resnet'"):
        load_checkpoint(path)
    state = {k: v.contiguous() for k, v in TabularGaussian(**WINE, hidden=[3]).state_dict().items()}
    config = json.dumps({**WINE, "hidden": [4]})
    save_file(state, str(path), metadata={"kind": "tabular-gaussian", "config": config})
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(path)


def test_verify_against_manifest(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    digest = save_checkpoint(TabularGaussian(**WINE, hidden=[2]), path)
    with pytest.raises(CheckpointError, match=r"no manifest .*m\.json"):
        verify_checkpoint(path)
    manifest_path(path).write_text(json.dumps({"sha256": digest}))
    assert verify_checkpoint(path) == digest
    save_checkpoint(TabularGaussian(**WINE, hidden=[3]), path)  # swapped weights, stale manifest
    with pytest.raises(CheckpointError, match="records"):
        verify_checkpoint(path)


def test_a_checkpoint_of_before_the_repository_says_how_to_convert_it(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "wine-gaussian.safetensors"
    state = {k: v.contiguous() for k, v in TabularGaussian(**WINE, hidden=[3]).state_dict().items()}
    save_file(state, str(path), metadata={"kind": "wine-gaussian", "config": '{"hidden": [3]}'})
    with pytest.raises(CheckpointError, match=r"training\.upgrade_checkpoint .*wine-gaussian"):
        load_checkpoint(path)
