"""Shared fixtures: the read-only data folder beside the project, and the served checkpoints."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.live_server import LiveServer
from training.datasets.location import resolve_data_dir

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_DIR_ENV = "TEST_CHECKPOINT_DIR"
# The checkpoints the service serves by default, each beside its manifest.
SERVED_CHECKPOINTS = ("wine-bnn", "wine-gaussian", "cifar-bcnn")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """../shared/data (or $BAYES_DATA_DIR); tests that need real data skip without it."""
    path = resolve_data_dir()
    if not (path / "wine").is_dir() or not (path / "cifar10").is_dir():
        pytest.skip(f"training data not found at {path}; set BAYES_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def checkpoint_dir() -> Path:
    """The project's checkpoints/ folder, or $TEST_CHECKPOINT_DIR; read only.

    The checkpoints are committed with the project, so a missing one fails the test that
    needs it rather than skipping it.
    """
    path = Path(os.environ.get(CHECKPOINT_DIR_ENV) or PROJECT_ROOT / "checkpoints")
    missing = [
        str(path / f"{name}{suffix}")
        for name in SERVED_CHECKPOINTS
        for suffix in (".safetensors", ".json")
        if not (path / f"{name}{suffix}").is_file()
    ]
    if missing:
        pytest.fail(
            f"checkpoint files missing: {', '.join(missing)} "
            f"(set {CHECKPOINT_DIR_ENV} to test another folder)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def live_server(checkpoint_dir: Path) -> Iterator[LiveServer]:
    """A real uvicorn process serving the three single networks, CIFAR at few samples: for
    plumbing tests (the ensembles have tests of their own)."""
    env = {
        "MODEL_REPOSITORY": str(checkpoint_dir),
        "MODELS": json.dumps(SERVED_CHECKPOINTS),
        "CIFAR_BCNN__DEFAULT_SAMPLES": "4",
        "CIFAR_BCNN__MAX_SAMPLES": "8",
    }
    with LiveServer(env, cwd=PROJECT_ROOT) as live:
        yield live
