"""Command-line options every training script shares."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from training.datasets.location import DATA_DIR_ENV


def training_parser(
    description: str, *, epochs: int, batch_size: int, lr: float, prior_sigma: float, output: Path
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--lr", type=float, default=lr, help="Adam learning rate")
    parser.add_argument(
        "--prior-sigma", type=float, default=prior_sigma, help="std of the N(0, σ²) weight prior"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"data folder (default: ${DATA_DIR_ENV}, else ../shared/data)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cuda or cpu")
    parser.add_argument("--output", type=Path, default=output, help="checkpoint file to write")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG (weight init, LRT noise); return a generator for data order."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
