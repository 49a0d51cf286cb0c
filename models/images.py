"""Turn image file bytes into a network's input: RGB, resized to its input size, uint8."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

# Decompression-bomb guard: a file may be any size, but not any pixel count.
MAX_PIXELS = 50_000_000


class ImageDecodeError(ValueError):
    """The bytes are not an image Pillow can decode."""


def decode_image(data: bytes, size: int, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode any Pillow-readable image to a ``size × size × 3`` uint8 array.

    Training and serving both go through here, so a served image is prepared
    exactly as the training images were.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageDecodeError(
                    f"image is {width}×{height} pixels, more than the limit of {max_pixels}"
                )
            rgb = image.convert("RGB")
    except (OSError, Image.DecompressionBombError, ValueError) as exc:
        if isinstance(exc, ImageDecodeError):
            raise
        raise ImageDecodeError(f"not a decodable image: {exc}") from exc
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def to_model_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``N × H × W × 3`` uint8 → ``N × 3 × H × W`` float in [0, 1], the models' input."""
    batch = torch.as_tensor(images)
    if batch.dtype != torch.uint8 or batch.dim() != 4 or batch.shape[-1] != 3:
        raise ValueError(f"expected N×H×W×3 uint8 images, got {batch.dtype} {tuple(batch.shape)}")
    return batch.permute(0, 3, 1, 2).float().div_(255.0)
