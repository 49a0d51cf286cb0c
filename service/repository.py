"""The model repository: a folder in which every ``NAME.safetensors`` is served as model NAME.

As in Triton's or TorchServe's model stores, what is served is what is in the folder: a new
model needs no code and no setting, only its checkpoint and the manifest written beside it
(``NAME.json``: sha256, command, data, test metrics).
"""

from __future__ import annotations

from pathlib import Path

CHECKPOINT_SUFFIX = ".safetensors"

__all__ = ["CHECKPOINT_SUFFIX", "RepositoryError", "find_models"]


class RepositoryError(RuntimeError):
    """The repository folder is missing or names a model twice; the message says where."""


def find_models(folder: Path) -> dict[str, Path]:
    """Model name → checkpoint file, sorted by name. A file without its manifest is kept:
    loading it fails with a message naming the missing manifest (or 503 if optional)."""
    if not folder.is_dir():
        raise RepositoryError(
            f"model repository {folder} is not a folder (set MODEL_REPOSITORY to the folder "
            f"that holds the NAME{CHECKPOINT_SUFFIX} and NAME.json files)"
        )
    paths = sorted(folder.glob(f"*{CHECKPOINT_SUFFIX}"), key=lambda path: path.stem)
    return {path.stem: path for path in paths}
