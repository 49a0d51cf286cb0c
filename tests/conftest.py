"""Shared fixtures: the read-only data folder beside the project."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.datasets.location import resolve_data_dir


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """../shared/data (or $BAYES_DATA_DIR); tests that need real data skip without it."""
    path = resolve_data_dir()
    if not (path / "wine").is_dir() or not (path / "cifar10").is_dir():
        pytest.skip(f"training data not found at {path}; set BAYES_DATA_DIR")
    return path
