"""Save and load models as safetensors files: tensors plus a JSON header, no pickle.

The header names the model kind and its constructor arguments, so a file is
enough to rebuild the network; feature and class names, the standardisation and
the prior live inside it too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from models.cnn import BayesianCNN
from models.ensemble import ENSEMBLE_SUFFIX, MEMBER_CLASSES, Ensemble
from models.tabular import TabularBNN, TabularGaussian

ServableModel = TabularBNN | TabularGaussian | BayesianCNN | Ensemble
"""Every network a checkpoint can hold; each declares its ``kind``, ``task`` and ``config``."""

# Kind → what builds the model from its config: each network, and an ensemble of each.
MODEL_CLASSES: dict[str, Callable[..., ServableModel]] = {
    **MEMBER_CLASSES,
    **{kind + ENSEMBLE_SUFFIX: partial(Ensemble, member_kind=kind) for kind in MEMBER_CLASSES},
}
# Kinds written before the model repository, when each network was wired to one data set.
LEGACY_KINDS = ("wine-bnn", "wine-gaussian", "cifar-bcnn")


class CheckpointError(Exception):
    """A checkpoint file is missing, unreadable, or does not describe a known model."""


def save_checkpoint(model: ServableModel, path: str | Path) -> str:
    """Write ``model`` to ``path``; return the file's sha256 (hex)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"kind": model.kind, "config": json.dumps(model.config)}
    save_file(state, str(path), metadata=metadata)
    return file_sha256(path)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> ServableModel:
    """Rebuild the model stored at ``path``, in eval mode, on ``device``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = load_file(str(path), device="cpu")
        metadata = read_metadata(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    kind = metadata.get("kind")
    if kind in LEGACY_KINDS:
        raise CheckpointError(
            f"checkpoint {path} is in the format of before the model repository (kind "
            f"{kind!r}); convert it with: python -m training.upgrade_checkpoint {path}"
        )
    if kind not in MODEL_CLASSES:
        raise CheckpointError(
            f"checkpoint {path} has model kind {kind!r}; expected one of {sorted(MODEL_CLASSES)}"
        )
    try:
        config: dict[str, Any] = json.loads(metadata.get("config", "{}"))
        model = MODEL_CLASSES[kind](**config)
        model.load_state_dict(state, strict=True)
        if isinstance(model, Ensemble):
            model.check_shared()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path} does not match model {kind!r}: {exc}") from exc
    return model.to(device).eval()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_path(checkpoint: str | Path) -> Path:
    """The manifest beside a checkpoint: ``wine-bnn.safetensors`` → ``wine-bnn.json``."""
    return Path(checkpoint).with_suffix(".json")


def read_manifest(checkpoint: str | Path) -> dict[str, Any]:
    """The checkpoint's manifest (sha256, command, data, test metrics)."""
    path = manifest_path(checkpoint)
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"no manifest {path} beside checkpoint {checkpoint}") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read manifest {path}: {exc}") from exc
    if not isinstance(manifest, dict):
        raise CheckpointError(f"manifest {path} is not a JSON object")
    return manifest


def verify_checkpoint(checkpoint: str | Path) -> str:
    """The checkpoint's sha256, checked against its manifest: catches a swapped or torn file."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CheckpointError(f"checkpoint not found: {checkpoint}")
    expected = read_manifest(checkpoint).get("sha256")
    actual = file_sha256(checkpoint)
    if actual != expected:
        raise CheckpointError(
            f"checkpoint {checkpoint} has sha256 {actual[:12]}…, but its manifest "
            f"{manifest_path(checkpoint)} records {str(expected)[:12]}…"
        )
    return actual


def read_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors header's metadata (kind, config), without reading the tensors."""
    # safetensors layout: 8-byte little-endian header length, then a JSON header.
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    return header.get("__metadata__", {})
