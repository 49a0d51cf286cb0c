"""Where the training data lives: a flag, else $BAYES_DATA_DIR, else ../shared/data."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

DATA_DIR_ENV = "BAYES_DATA_DIR"
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_SHARED_DATA = _PROJECT_ROOT.parent / "shared" / "data"


class DataNotFoundError(FileNotFoundError):
    """The data set is not where we looked; the message says where to put it."""


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: the argument, else $BAYES_DATA_DIR, else ../shared/data."""
    if data_dir is not None:
        return Path(data_dir)
    if env := os.environ.get(DATA_DIR_ENV):
        return Path(env)
    return _SHARED_DATA


def portable_source(path: str | Path, data_dir: str | Path | None = None) -> str:
    """How a manifest names the data: relative to the data folder, else by its name alone.

    A manifest travels with its checkpoint; the build machine's absolute paths mean nothing
    elsewhere (and say more about it than they should). The fingerprint names the data exactly.
    """
    path = Path(path).resolve()
    try:
        return path.relative_to(resolve_data_dir(data_dir).resolve()).as_posix()
    except ValueError:
        return path.name


def fingerprint(*arrays: np.ndarray) -> str:
    """sha256 of the arrays' shapes, dtypes and bytes: names the exact data a model saw."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
