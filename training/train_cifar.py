"""Train the Bayesian CNN on CIFAR-10: ``python -m training.train_cifar``.

The CIFAR-10 settings of the shared CNN training (:mod:`training.images`): the data from
``<data_dir>/cifar10`` (or the python release), 30 epochs, the checkpoint written as the
repository's ``cifar-bcnn``.
"""

from __future__ import annotations

from pathlib import Path

from models.device import resolve_device
from models.ensemble import ENSEMBLE_SUFFIX
from models.images import ImageDecodeError
from training.cli import DEFAULT_REPOSITORY, repository_checkpoint, run_script, training_parser
from training.datasets.cifar import IMAGE_SIZE, load_cifar10
from training.datasets.location import DataNotFoundError
from training.images import (
    CIFAR_KL_WEIGHT,
    add_image_options,
    settings_from_args,
    train_image_model,
)
from training.manifest import training_command


def default_output(members: int) -> Path:
    """``checkpoints/cifar-bcnn.safetensors``, or ``cifar-bcnn-ensemble`` for several members."""
    suffix = ENSEMBLE_SUFFIX if members > 1 else ""
    return repository_checkpoint(DEFAULT_REPOSITORY, f"cifar-bcnn{suffix}")


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = training_parser(
        __doc__.splitlines()[0], epochs=30, batch_size=256, lr=1e-3, prior_sigma=0.1
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="checkpoint to write (default: checkpoints/cifar-bcnn.safetensors, or "
        "cifar-bcnn-ensemble.safetensors with --members)",
    )
    add_image_options(parser)
    parser.set_defaults(kl_weight=CIFAR_KL_WEIGHT)  # the committed checkpoint's
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    train = load_cifar10("train", args.data_dir, per_class=args.train_per_class)
    test = load_cifar10("test", args.data_dir, per_class=args.test_per_class)
    return train_image_model(
        train,
        test,
        settings_from_args(args),
        image_size=IMAGE_SIZE,
        output=args.output or default_output(args.members),
        command=training_command("training.train_cifar", argv),
        device=device,
        data_dir=args.data_dir,
        progress=not args.no_progress,
    )


if __name__ == "__main__":
    run_script(main, (DataNotFoundError, ImageDecodeError))
