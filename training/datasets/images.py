"""Image folders as ``N × size × size × 3`` uint8 arrays with integer labels.

The layout is torchvision's ImageFolder: ``<folder>/<class>/<image file>``, one sub-folder per
class, any file Pillow reads (PNG, JPEG, BMP, GIF, WebP), any size (resized to the network's
input as the service resizes what it is sent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.images import ImageDecodeError, decode_image
from training.datasets.location import DataNotFoundError, fingerprint

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})


@dataclass(frozen=True)
class ImageSet:
    images: np.ndarray  # uint8, N × size × size × 3
    labels: np.ndarray  # int64, N, indices into ``classes``
    classes: tuple[str, ...]
    source: Path

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.images, self.labels)


def class_folders(folder: Path) -> tuple[str, ...]:
    """The class names of an image folder: its sub-folders, sorted (ImageFolder's order)."""
    if not folder.is_dir():
        raise DataNotFoundError(f"no image folder {folder}: expected {folder}/<class>/<images>")
    classes = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir()))
    if not classes:
        raise DataNotFoundError(f"{folder} has no class sub-folders: expected {folder}/<class>/")
    return classes


def load_image_folder(
    folder: Path,
    *,
    size: int,
    classes: Sequence[str] | None = None,
    per_class: int | None = None,
    progress: bool = False,
) -> ImageSet:
    """Every image of ``folder/<class>/``, for ``classes`` (default: the sub-folders, sorted).

    ``per_class`` keeps the first k files of each class, in name order. A file that is not a
    readable image stops loading with its path; a class without images is an error too.
    """
    classes = tuple(classes) if classes is not None else class_folders(folder)
    unknown = sorted(set(class_folders(folder)) - set(classes))
    if unknown:
        raise DataNotFoundError(
            f"{folder} has class folders {unknown} that are not among the classes {list(classes)}"
        )
    files: list[tuple[Path, int]] = []
    for index, name in enumerate(classes):
        found = sorted(p for p in (folder / name).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[
            :per_class
        ]
        if not found:
            raise DataNotFoundError(
                f"no images in {folder / name} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        files.extend((path, index) for path in found)
    images = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for row, (path, _) in enumerate(tqdm(files, desc=f"reading {folder}", disable=not progress)):
        try:
            images[row] = decode_image(path.read_bytes(), size)
        except ImageDecodeError as exc:
            raise ImageDecodeError(f"{path}: {exc}") from exc
    labels = np.fromiter((label for _, label in files), dtype=np.int64, count=len(files))
    return ImageSet(images, labels, classes, folder)
