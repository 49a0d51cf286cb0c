"""Command-line options every training script shares, and how a script reports bad data."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from training.datasets.location import DATA_DIR_ENV

# The model repository the service serves by default (its MODEL_REPOSITORY).
DEFAULT_REPOSITORY = Path("checkpoints")
# A model's name is its checkpoint's file stem and a segment of /predict/{name}: keep it to
# characters that need no escaping in either.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def training_parser(
    description: str, *, epochs: int, batch_size: int, lr: float, prior_sigma: float
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=epochs, help="passes over the training data")
    parser.add_argument("--batch-size", type=int, default=batch_size, help="examples per step")
    parser.add_argument("--lr", type=float, default=lr, help="Adam learning rate")
    parser.add_argument(
        "--prior-sigma", type=float, default=prior_sigma, help="std of the N(0, σ²) weight prior"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"data folder; without it, ${DATA_DIR_ENV}, else ../shared/data",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="of the initial weights and the data order"
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cuda or cpu")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def add_repository_options(parser: argparse.ArgumentParser) -> None:
    """``--name`` and ``--output-dir``: where a model for the service's repository goes."""
    parser.add_argument(
        "--name",
        required=True,
        type=model_name,
        help="the model's name: it is served at /predict/NAME from NAME.safetensors",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_REPOSITORY,
        help="the model repository to write NAME.safetensors and NAME.json into",
    )


def model_name(value: str) -> str:
    """argparse type of ``--name``."""
    if not MODEL_NAME.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r}: a model name is letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return value


def repository_checkpoint(output_dir: Path, name: str) -> Path:
    """The checkpoint file of model ``name`` in the repository ``output_dir``."""
    return output_dir / f"{name}.safetensors"


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG (weight init, LRT noise); return a generator for data order."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def run_script(main: Callable[[], Any], errors: tuple[type[Exception], ...]) -> None:
    """Run a script's ``main``; an error in what the user gave it (``errors``) ends it with
    its message and exit status 2, as argparse does, rather than with a traceback."""
    try:
        main()
    except errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
