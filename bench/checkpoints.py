"""The checkpoints a benchmark serves: the committed ones, checked before any timing starts."""

from __future__ import annotations

from pathlib import Path

from models.checkpoint import manifest_path
from models.cifar import BayesianCNN
from models.wine import WineBNN, WineGaussian

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "checkpoints"
# The service's default file names (its settings), spelt out so that the model-level
# benchmark needs no web stack: the GPU image has torch but not FastAPI or pydantic.
FILES = tuple(f"{cls.kind}.safetensors" for cls in (WineBNN, WineGaussian, BayesianCNN))


def checkpoint_dir(folder: Path = DEFAULT_DIR) -> Path:
    """``folder``, once every checkpoint and manifest is known to be there."""
    missing = [
        str(path)
        for name in FILES
        for path in (folder / name, manifest_path(folder / name))
        if not path.is_file()
    ]
    if missing:
        raise FileNotFoundError(
            f"checkpoints missing: {', '.join(missing)}; `make checkpoints` trains them"
        )
    return folder
