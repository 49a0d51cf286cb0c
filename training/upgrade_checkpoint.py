"""Convert checkpoints from before the model repository.

``python -m training.upgrade_checkpoint FILE...`` rewrites each file in place.

Those files named one of three networks wired to one data set (``wine-bnn``, ``wine-gaussian``,
``cifar-bcnn``), with the wine features and CIFAR-10 classes in the code. The generic networks
carry them in the checkpoint instead. The weights are copied unchanged (same tensors, same
names): only the header changes, so the converted model gives the same answers. The manifest
is rewritten to match (new sha256, name, kind and task; data sources without the build
machine's paths; no epistemic metric for a network that does not model it) and records the
file it was converted from.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from models.checkpoint import (
    CheckpointError,
    ServableModel,
    file_sha256,
    manifest_path,
    read_manifest,
    read_metadata,
    save_checkpoint,
    verify_checkpoint,
)
from models.cnn import BayesianCNN
from models.tabular import TabularBNN, TabularGaussian
from training.datasets.cifar import CIFAR10_CLASSES, IMAGE_SIZE
from training.datasets.location import portable_source
from training.datasets.wine import WINE_FEATURES, WINE_TARGET
from training.manifest import training_command

# Old kind → the generic network, given the old constructor arguments.
_UPGRADES: dict[str, Callable[[dict[str, Any]], ServableModel]] = {
    "wine-bnn": lambda config: TabularBNN(features=WINE_FEATURES, target=WINE_TARGET, **config),
    "wine-gaussian": lambda config: TabularGaussian(
        features=WINE_FEATURES, target=WINE_TARGET, **config
    ),
    "cifar-bcnn": lambda config: BayesianCNN(
        **{"classes": CIFAR10_CLASSES, "image_size": IMAGE_SIZE, **config}
    ),
}


def upgrade(path: Path, command: str) -> ServableModel:
    """Rewrite ``path`` and its manifest in the current format; return the model."""
    verify_checkpoint(path)
    kind = read_metadata(path).get("kind")
    if kind not in _UPGRADES:
        raise CheckpointError(f"{path} has kind {kind!r}, not one of {sorted(_UPGRADES)}")
    old_sha256 = file_sha256(path)
    config = json.loads(read_metadata(path).get("config", "{}"))
    model = _UPGRADES[kind](config)
    model.load_state_dict(load_file(str(path)), strict=True)
    old = read_manifest(path)
    save_checkpoint(model, path)
    manifest = {
        "name": path.stem,
        "kind": model.kind,
        "task": model.task,
        **{key: value for key, value in old.items() if key != "model"},
        "file": path.name,
        "sha256": file_sha256(path),
        "size_bytes": path.stat().st_size,
        "data": _portable(old.get("data", {})),
        "test_metrics": _metrics(old.get("test_metrics", {}), model),
        "upgraded": {"from_kind": kind, "from_sha256": old_sha256, "command": command},
    }
    manifest["training"] = {**old.get("training", {}), "config": model.config}
    manifest_path(path).write_text(json.dumps(manifest, indent=2) + "\n")
    return model


def _portable(data: Any) -> Any:
    """Every ``source`` path, relative to the data folder (or its name alone)."""
    if isinstance(data, dict):
        return {
            key: portable_source(value)
            if key == "source" and isinstance(value, str)
            else _portable(value)
            for key, value in data.items()
        }
    return data


def _metrics(metrics: dict[str, Any], model: ServableModel) -> dict[str, Any]:
    # A deterministic network has no epistemic term: null, as its answers say, not 0.0.
    if isinstance(model, TabularGaussian) and "mean_epistemic_std" in metrics:
        return {**metrics, "mean_epistemic_std": None}
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", type=Path, nargs="+", help="old-format .safetensors files")
    args = parser.parse_args(argv)
    command = training_command("training.upgrade_checkpoint", argv)
    for path in args.checkpoints:
        model = upgrade(path, command)
        print(f"upgraded {path} to {model.kind} ({model.task})")


if __name__ == "__main__":
    main()
