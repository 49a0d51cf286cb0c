"""CIFAR-10 as ``N × 32 × 32 × 3`` uint8 arrays with integer labels.

Reads ``<data_dir>/cifar10/{train,test}/<class>/*.jpg`` (the layout in
../shared/data), else the original python release unpacked at
``<data_dir>/cifar-10-batches-py/``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Literal

import numpy as np

from training.datasets.images import ImageSet, load_image_folder
from training.datasets.location import DataNotFoundError, resolve_data_dir

# Index order of the labels; also the sorted names of the class folders.
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IMAGE_SIZE = 32
Split = Literal["train", "test"]
PYTHON_RELEASE = "cifar-10-batches-py"
_BATCHES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}


def load_cifar10(
    split: Split, data_dir: str | Path | None = None, *, per_class: int | None = None
) -> ImageSet:
    """One split of CIFAR-10; ``per_class`` keeps the first k images of each class."""
    root = resolve_data_dir(data_dir)
    jpeg_dir, release_dir = root / "cifar10" / split, root / PYTHON_RELEASE
    if jpeg_dir.is_dir():
        return load_image_folder(
            jpeg_dir, size=IMAGE_SIZE, classes=CIFAR10_CLASSES, per_class=per_class
        )
    if release_dir.is_dir():
        return _load_python_release(release_dir, split, per_class)
    raise DataNotFoundError(
        f"no CIFAR-10 {split} data under {root}: expected JPEG folders "
        f"{jpeg_dir}/<class>/*.jpg, or the original python release (cifar-10-python.tar.gz) "
        f"unpacked as {release_dir}/; pass --data-dir or set $BAYES_DATA_DIR"
    )


def _load_python_release(folder: Path, split: Split, per_class: int | None) -> ImageSet:
    images, labels = [], []
    for name in _BATCHES[split]:
        path = folder / name
        if not path.is_file():
            raise DataNotFoundError(f"missing {path} of the CIFAR-10 python release")
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
    x = np.concatenate(images).transpose(0, 2, 3, 1)
    y = np.concatenate(labels)
    if per_class is not None:
        classes = range(len(CIFAR10_CLASSES))
        keep = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in classes])
        keep.sort()
        x, y = x[keep], y[keep]
    return ImageSet(np.ascontiguousarray(x), y, CIFAR10_CLASSES, folder)


class _ArrayUnpickler(pickle.Unpickler):
    """The release is pickled dicts of numpy arrays: allow those and nothing else."""

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            # Array bytes in a protocol-2 pickle written by Python 3.
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> type:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        return super().find_class(module, name)
