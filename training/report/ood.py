"""Far out-of-distribution images for the report: scikit-learn's handwritten digits.

Corruptions (``training/corruptions.py``) are a near shift: the same scenes, degraded. A far
shift is an input of another kind altogether, which a classifier of CIFAR-10's ten classes
should be unsure about whatever it answers. The 1,797 8×8 digits of ``load_digits`` ship
inside scikit-learn (no download, so the report runs where the data folder alone is
present), and are brought to what a CIFAR model takes the way the service would bring an
8×8 grey upload: grey to three equal channels, then Pillow's bilinear resize to 32×32, as
:func:`models.images.decode_image` does.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from training.datasets.cifar import IMAGE_SIZE

__all__ = ["DIGITS_MAX", "DIGITS_SOURCE", "digit_images"]

# load_digits' pixels count ink in 4×4 blocks of a 32×32 bitmap: integers 0 (none) to 16 (all).
DIGITS_MAX = 16
DIGITS_SOURCE = "scikit-learn's handwritten digits (load_digits, 8×8 grey, bundled)"


def digit_images(
    count: int | None = None, *, size: int = IMAGE_SIZE, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(images, digits)``: ``count`` digits (all 1,797 if None, else a seeded random subset
    in file order) as ``N × size × size × 3`` uint8 RGB, ink bright on black, 0-255; and the
    digit each shows.

    Intensity is scaled from 0-16 to the full 0-255 first, so the digits use the range CIFAR
    photographs do and are not told apart by a dim image alone.
    """
    digits = load_digits()
    grey = np.rint(digits.images * (255 / DIGITS_MAX)).astype(np.uint8)
    labels = np.asarray(digits.target)
    if count is not None:
        if count < 1:
            raise ValueError(f"need at least one digit image, got count={count}")
        keep = np.sort(np.random.default_rng(seed).permutation(len(grey))[:count])
        grey, labels = grey[keep], labels[keep]
    images = np.empty((len(grey), size, size, 3), dtype=np.uint8)
    for i, pixels in enumerate(grey):
        rgb = Image.fromarray(pixels, mode="L").convert("RGB")
        images[i] = np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR))
    return images, labels
