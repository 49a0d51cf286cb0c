"""Train an image classifier on a folder: ``python -m training.train_images --data DIR
--name NAME``.

``DIR/train/<class>/*`` and ``DIR/test/<class>/*`` hold the images (PNG, JPEG, BMP, GIF,
WebP; any size, resized to ``--image-size``), one sub-folder per class; the class names are
the sub-folders of ``DIR/train``, sorted. The network, its training and its test metrics are
those of the CIFAR-10 model (:mod:`training.images`). The service serves the result at
``/predict/NAME`` once ``NAME.safetensors`` and ``NAME.json`` are in its repository
(``--output-dir``, default ``checkpoints/``).
"""

from __future__ import annotations

from pathlib import Path

from models.checkpoint import CheckpointError
from models.device import resolve_device
from models.images import ImageDecodeError
from training.cli import (
    add_repository_options,
    repository_checkpoint,
    run_script,
    training_parser,
)
from training.datasets.cifar import IMAGE_SIZE
from training.datasets.images import load_image_folder
from training.datasets.location import DataNotFoundError
from training.images import (
    add_image_options,
    check_image_size,
    settings_from_args,
    train_image_model,
)
from training.manifest import training_command


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = training_parser(
        __doc__.split("\n\n")[0].replace("\n", " "),
        epochs=30,
        batch_size=256,
        lr=1e-3,
        prior_sigma=0.1,
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="folder with train/<class>/ and test/<class>/"
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=IMAGE_SIZE,
        help="side of the square network input; images are resized to it",
    )
    add_repository_options(parser)
    add_image_options(parser)
    args = parser.parse_args(argv)
    try:
        check_image_size(args.image_size)
    except ValueError as exc:
        parser.error(f"--image-size {args.image_size}: {exc}")
    show = not args.no_progress

    device = resolve_device(args.device)
    train = load_image_folder(
        args.data / "train", size=args.image_size, per_class=args.train_per_class, progress=show
    )
    test = load_image_folder(
        args.data / "test",
        size=args.image_size,
        classes=train.classes,
        per_class=args.test_per_class,
        progress=show,
    )
    print(f"{len(train.labels)} training, {len(test.labels)} test images; classes {train.classes}")
    return train_image_model(
        train,
        test,
        settings_from_args(args),
        image_size=args.image_size,
        output=repository_checkpoint(args.output_dir, args.name),
        command=training_command("training.train_images", argv),
        device=device,
        data_dir=args.data_dir,
        progress=show,
    )


if __name__ == "__main__":
    run_script(main, (DataNotFoundError, ImageDecodeError, CheckpointError))
