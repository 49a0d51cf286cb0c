"""Train a Wine Quality regressor: ``python -m training.train_wine --model bnn|gaussian``.

The wine settings of the shared tabular training (:mod:`training.tabular`): the notebook's
train/test split of the white-wine table, its eleven features by their API names, and the
widths chosen for wine; written as the repository's ``wine-bnn`` or ``wine-gaussian``.
"""

from __future__ import annotations

from pathlib import Path

from models.device import resolve_device
from models.ensemble import ENSEMBLE_SUFFIX
from training.cli import (
    DEFAULT_REPOSITORY,
    repository_checkpoint,
    run_script,
    training_parser,
)
from training.datasets.location import DataNotFoundError, portable_source
from training.datasets.table import SPLIT_DESCRIPTION
from training.datasets.wine import WINE_FEATURES, WINE_TARGET, load_wine
from training.manifest import training_command
from training.tabular import (
    TabularData,
    add_tabular_options,
    settings_from_args,
    train_tabular_model,
)


def default_output(model: str, members: int) -> Path:
    """``checkpoints/wine-bnn.safetensors``, or ``wine-bnn-ensemble`` for several members."""
    suffix = ENSEMBLE_SUFFIX if members > 1 else ""
    return repository_checkpoint(DEFAULT_REPOSITORY, f"wine-{model}{suffix}")


# Chosen on the validation NLL (see README): depth helps the BNN, not the Gaussian head.
DEFAULT_HIDDEN = {"bnn": [64, 64, 64], "gaussian": [50]}
# With --members, chosen for the ensemble on a selection split of the training rows
# (python -m training.sweep_wine; reports/NOTES.md): a deep ensemble of wide Gaussian heads
# beats one of narrow ones, whose members agree too much; the BNN's width changed nothing.
ENSEMBLE_HIDDEN = {"bnn": [64, 64, 64], "gaussian": [256, 256, 256]}


def main(argv: list[str] | None = None) -> dict[str, float | None]:
    parser = training_parser(
        __doc__.splitlines()[0], epochs=1000, batch_size=64, lr=1e-3, prior_sigma=1.0
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="checkpoint file to write (default: checkpoints/wine-MODEL.safetensors, or "
        "wine-MODEL-ensemble.safetensors with --members)",
    )
    add_tabular_options(
        parser, hidden=DEFAULT_HIDDEN, patience=100, ensemble_hidden=ENSEMBLE_HIDDEN
    )
    args = parser.parse_args(argv)
    settings = settings_from_args(args, ENSEMBLE_HIDDEN if args.members > 1 else DEFAULT_HIDDEN)

    device = resolve_device(args.device)
    split = load_wine(args.data_dir)
    data = TabularData(
        x_train=split.x_train,
        y_train=split.y_train,
        x_test=split.x_test,
        y_test=split.y_test,
        features=WINE_FEATURES,
        target=WINE_TARGET,
        description={
            "source": portable_source(split.source, args.data_dir),
            "split": SPLIT_DESCRIPTION,
            "sha256": split.fingerprint,
        },
    )
    return train_tabular_model(
        data,
        settings,
        output=args.output or default_output(args.model, args.members),
        command=training_command("training.train_wine", argv),
        device=device,
        progress=not args.no_progress,
        desc=f"wine {args.model}",
    )


if __name__ == "__main__":
    run_script(main, (DataNotFoundError,))
