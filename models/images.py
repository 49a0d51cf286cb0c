"""Turn image file bytes into a network's input: RGB, resized to its input size, uint8."""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image

# Decompression-bomb guard: a file may be any size, but not any pixel count. Far more than a
# 32×32 classifier needs, far less than what fills a server's memory (3 bytes a pixel in RGB).
MAX_PIXELS = 4_000_000


class ImageDecodeError(ValueError):
    """The bytes are not an image Pillow can decode (``__cause__`` says why), or one over the
    pixel limit (no ``__cause__``)."""


def open_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The image with its header read and its size within ``max_pixels``; nothing decoded.

    Costs microseconds, so the service measures a request's images (and refuses a bomb) as
    they arrive, before any of them is decoded, and then decodes the same opened images
    (:func:`decode_opened`) rather than reading their headers again.
    """
    try:
        with warnings.catch_warnings():
            # Pillow warns past its own limit; ours is lower and says so.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ImageDecodeError(f"image is over the limit of {max_pixels} pixels") from None
    except Exception as exc:  # Pillow raises many kinds of error on hostile bytes
        raise ImageDecodeError(f"not a decodable image: {exc}") from exc
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageDecodeError(
            f"image is {width}×{height} = {width * height} pixels, more than the limit of "
            f"{max_pixels}"
        )
    return image


def decode_opened(image: Image.Image, size: int) -> np.ndarray:
    """Decode an image from :func:`open_image` to a ``size × size × 3`` uint8 array; closes it.

    Training and serving both go through here, so a served image is prepared exactly as the
    training images were.
    """
    try:
        rgb = image.convert("RGB")
    except Exception as exc:  # Pillow raises many kinds of error on hostile bytes
        raise ImageDecodeError(f"not a decodable image: {exc}") from exc
    finally:
        # close(), not ``with``: leaving the block only lets go of the file, and the decoded
        # image at full size (3 MB for 1000×1000) stayed as long as the request held its
        # opened images: 256 concurrent uploads of 7 such JPEGs peaked 1.5 GB higher.
        image.close()
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def decode_image(data: bytes, size: int, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode any Pillow-readable image to a ``size × size × 3`` uint8 array, its pixel
    limit checked on its header before anything is decoded."""
    return decode_opened(open_image(data, max_pixels=max_pixels), size)


def to_model_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``N × H × W × 3`` uint8 → ``N × 3 × H × W`` float in [0, 1], the models' input."""
    batch = torch.as_tensor(images)
    if batch.dtype != torch.uint8 or batch.dim() != 4 or batch.shape[-1] != 3:
        raise ValueError(f"expected N×H×W×3 uint8 images, got {batch.dtype} {tuple(batch.shape)}")
    return batch.permute(0, 3, 1, 2).float().div_(255.0)
