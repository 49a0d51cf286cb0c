"""The JSON manifest beside each checkpoint: what it is, how it was made, how it scores."""

from __future__ import annotations

import json
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from models.checkpoint import ServableModel, file_sha256, manifest_path


def training_command(module: str, argv: list[str] | None) -> str:
    """The command that ran ``module``'s ``main(argv)``, as one could paste it into a shell."""
    args = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", "-m", module, *args])


def write_manifest(
    checkpoint: str | Path,
    *,
    model: ServableModel,
    command: str,
    data: dict[str, Any],
    metrics: dict[str, float | None],
    training: dict[str, Any],
    **extra: Any,
) -> Path:
    """Write the manifest for ``checkpoint``, hashing the file as it is now.

    The model's name in the repository is the file's stem; ``kind`` and ``task`` say what the
    service does with it.
    """
    checkpoint = Path(checkpoint)
    manifest = {
        "name": checkpoint.stem,
        "kind": model.kind,
        "task": model.task,
        "file": checkpoint.name,
        "sha256": file_sha256(checkpoint),
        "size_bytes": checkpoint.stat().st_size,
        "command": command,
        "data": data,
        "test_metrics": metrics,
        "training": training,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }
    path = manifest_path(checkpoint)
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def written(checkpoint: str | Path, sha256: str, metrics: dict[str, float | None]) -> str:
    """The line a training script ends with: where the checkpoint went and how it scores."""
    scores = ", ".join(
        f"{name} {value:.4f}" for name, value in metrics.items() if value is not None
    )
    return f"wrote {checkpoint} (sha256 {sha256[:12]}): {scores}"
