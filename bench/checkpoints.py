"""The checkpoints a benchmark serves, with a stand-in while the CIFAR one is not committed.

Speed does not depend on the weights' values, only on the network's shape, so a random-init
``BayesianCNN`` times the same as the trained one. It is used only when the committed file
is missing, in a temporary folder beside copies of the wine checkpoints, and the report says
so.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from models.checkpoint import manifest_path, save_checkpoint
from models.cifar import BayesianCNN
from models.wine import WineBNN, WineGaussian
from training.manifest import write_manifest

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "checkpoints"
# The service's default file names (its settings), spelt out so that the model-level
# benchmark needs no web stack: the GPU image has torch but not FastAPI or pydantic.
WINE_FILES = tuple(f"{cls.kind}.safetensors" for cls in (WineBNN, WineGaussian))
CIFAR_FILE = f"{BayesianCNN.kind}.safetensors"
STAND_IN_NOTE = (
    "CIFAR weights: random-init stand-in (checkpoints/cifar-bcnn.safetensors is missing); "
    "same network, so the same speed, but its predictions mean nothing"
)


@dataclass(frozen=True)
class CheckpointDir:
    path: Path
    note: str | None  # set when the CIFAR checkpoint is a stand-in


@contextlib.contextmanager
def checkpoint_dir(folder: Path = DEFAULT_DIR) -> Iterator[CheckpointDir]:
    """``folder`` as it is, or a temporary copy completed with a random-init CIFAR network."""
    if (folder / CIFAR_FILE).is_file():
        yield CheckpointDir(folder, None)
        return
    with tempfile.TemporaryDirectory(prefix="bench-checkpoints-") as tmp:
        target = Path(tmp)
        for name in WINE_FILES:
            for file in (folder / name, manifest_path(folder / name)):
                shutil.copy2(file, target / file.name)
        write_stand_in(target / CIFAR_FILE)
        yield CheckpointDir(target, STAND_IN_NOTE)


def write_stand_in(path: Path) -> None:
    torch.manual_seed(0)
    model = BayesianCNN()
    save_checkpoint(model, path)
    write_manifest(
        path,
        kind=model.kind,
        command="bench.checkpoints.write_stand_in (random init, for timing only)",
        data={},
        metrics={},
        training={"note": "untrained"},
    )
