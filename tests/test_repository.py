"""The model repository: what a folder holds is what is served, and start-up says what is wrong."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from models.checkpoint import file_sha256
from service.metrics import ServiceMetrics
from service.registry import ModelRegistry, StartupError
from service.repository import RepositoryError, find_models
from service.settings import Settings


def copy_models(source: Path, target: Path, *pairs: tuple[str, str]) -> Path:
    """Copy checkpoint ``name`` (and its manifest) into ``target`` as ``new_name``."""
    target.mkdir(exist_ok=True)
    for name, new_name in pairs:
        shutil.copyfile(source / f"{name}.safetensors", target / f"{new_name}.safetensors")
        shutil.copyfile(source / f"{name}.json", target / f"{new_name}.json")
    return target


def opened(folder: Path, **settings: object) -> ModelRegistry:
    registry = ModelRegistry(Settings(model_repository=folder, **settings), ServiceMetrics())
    registry.open()
    return registry


def test_every_checkpoint_is_a_model_named_by_its_file(
    checkpoint_dir: Path, tmp_path: Path
) -> None:
    folder = copy_models(
        checkpoint_dir, tmp_path / "repo", ("wine-gaussian", "wine-gaussian"), ("wine-bnn", "b-2")
    )
    (folder / "notes.txt").write_text("not a model")
    assert list(find_models(folder)) == ["b-2", "wine-gaussian"]
    registry = opened(folder)
    assert sorted(registry.models) == ["b-2", "wine-gaussian"]
    entry = registry.models["b-2"].describe()
    assert entry["name"] == "b-2" and entry["task"] == "tabular-regression"
    assert entry["kind"] == "tabular-bnn" and entry["members"] == 1
    assert entry["input"]["features"][0] == "fixed_acidity"
    assert entry["input"]["target"] == "quality"
    manifest = json.loads((folder / "b-2.json").read_text())
    assert entry["version"] == manifest["sha256"][:12]
    assert entry["test_metrics"] == manifest["test_metrics"]


def test_a_deterministic_model_says_it_draws_one_network(checkpoint_dir: Path) -> None:
    served = opened(checkpoint_dir, models=("wine-gaussian",)).models["wine-gaussian"]
    entry = served.describe()
    assert entry["default_samples"] == entry["max_samples"] == 1
    assert served.resolve_samples(None) == served.resolve_samples(500) == 1
    assert entry["test_metrics"]["mean_epistemic_std"] is None


def test_models_narrows_what_is_served_and_names_must_exist(checkpoint_dir: Path) -> None:
    assert list(opened(checkpoint_dir, models=("wine_bnn",)).models) == ["wine-bnn"]
    with pytest.raises(
        StartupError, match=r"\['resnet'\].*holds: cifar-bcnn, cifar-bcnn-ensemble, wine-bnn,"
    ):
        opened(checkpoint_dir, models=("resnet",))


def test_settings_for_a_model_the_repository_lacks_are_warned_of(
    checkpoint_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A typo in WINE_BN__MAX_WAIT_MS would otherwise be ignored without a word.
    with caplog.at_level(logging.WARNING, logger="service.registry"):
        registry = opened(
            checkpoint_dir, models=("wine-gaussian",), per_model={"wine-bn": {"max_wait_ms": 5}}
        )
    assert list(registry.models) == ["wine-gaussian"]
    (record,) = caplog.records
    assert "['wine_bn']" in record.getMessage() and "ignored" in record.getMessage()


def test_a_bad_file_stops_start_up_naming_it_unless_optional(
    checkpoint_dir: Path, tmp_path: Path
) -> None:
    folder = copy_models(checkpoint_dir, tmp_path / "repo", ("wine-gaussian", "good"))
    (folder / "torn.safetensors").write_bytes(b"\x00" * 10)
    (folder / "torn.json").write_text(json.dumps({"sha256": "0" * 64}))
    (folder / "lonely.safetensors").write_bytes(b"\x00" * 10)  # no manifest beside it
    with pytest.raises(StartupError, match=r"cannot serve lonely: no manifest .*lonely\.json"):
        opened(folder)
    with pytest.raises(StartupError, match=r"cannot serve torn: .*torn\.safetensors has sha256"):
        opened(folder, per_model={"lonely": {"optional": True}})
    registry = opened(folder, per_model={"lonely": {"optional": "true"}, "torn": {"optional": 1}})
    assert list(registry.models) == ["good"]
    assert set(registry.failures) == {"lonely", "torn"}


def test_an_old_format_checkpoint_says_how_to_convert_it(tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    folder.mkdir()
    path = folder / "old.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={"kind": "wine-bnn", "config": "{}"})
    (folder / "old.json").write_text(json.dumps({"sha256": file_sha256(path)}))
    with pytest.raises(StartupError, match=r"python -m training\.upgrade_checkpoint"):
        opened(folder)


def test_a_missing_or_empty_repository_is_explained(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="MODEL_REPOSITORY"):
        find_models(tmp_path / "absent")
    with pytest.raises(StartupError, match="MODEL_REPOSITORY"):
        opened(tmp_path / "absent")
    with pytest.raises(StartupError, match=r"holds no NAME\.safetensors"):
        opened(tmp_path)
