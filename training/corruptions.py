"""CIFAR-10-C-style corruptions: Gaussian noise, Gaussian blur and contrast loss, severity 1-5.

A shift test needs inputs that are the same scenes, just further from the training images, at a
dial one can turn. Hendrycks & Dietterich (2019), "Benchmarking Neural Network Robustness to
Common Corruptions and Perturbations" (ICLR), made CIFAR-10-C that way; the parameters below are
theirs (``make_cifar_c.py`` of their robustness repository), reimplemented with numpy and SciPy
instead of skimage, so they are CIFAR-10-C-like rather than bit-identical. Every function takes
and returns ``N × H × W × 3`` uint8 arrays and leaves its input untouched.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = ["CORRUPTIONS", "SEVERITIES", "contrast", "corrupt", "gaussian_blur", "gaussian_noise"]

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

# Hendrycks & Dietterich (2019), CIFAR-10-C parameters for severities 1..5, pixels in [0, 1]:
# gaussian_noise: std of the additive noise.
_NOISE_STD = (0.04, 0.06, 0.08, 0.09, 0.10)
# gaussian_blur: std of the Gaussian kernel, in pixels. skimage's ``gaussian(sigma=c)`` there is
# SciPy's ``gaussian_filter`` (edges repeated, kernel cut at 4 sigma), which is used here.
# Pillow's GaussianBlur approximates it with box blurs, too strongly below one pixel: at
# sigma 0.4 it changed test images by 2.1 grey levels on average, the exact kernel by 1.3.
_BLUR_SIGMA = (0.4, 0.6, 0.7, 0.8, 1.0)
# contrast: factor on each pixel's distance from its image's per-channel mean.
_CONTRAST_FACTOR = (0.75, 0.5, 0.4, 0.3, 0.15)


def _check(images: np.ndarray, severity: int) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected N×H×W×3 uint8 images, got {images.dtype} {images.shape}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity}")


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    """[0, 1] floats back to uint8; rounding rather than truncating keeps the mean unbiased."""
    return np.rint(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)


def gaussian_noise(images: np.ndarray, severity: int, *, seed: int = 0) -> np.ndarray:
    """Add N(0, c²) noise to every pixel and channel, then clip.

    One seed gives one standard-normal field, scaled by each severity's c: a sweep over
    severities then differs only in the noise's size, not its draw, so its curve is smooth.
    """
    _check(images, severity)
    z = np.random.default_rng(seed).standard_normal(images.shape)
    return _to_uint8(images / 255.0 + _NOISE_STD[severity - 1] * z)


def gaussian_blur(images: np.ndarray, severity: int, *, seed: int = 0) -> np.ndarray:
    """Blur each channel of each image with a Gaussian kernel. ``seed`` is unused."""
    _check(images, severity)
    sigma = _BLUR_SIGMA[severity - 1]
    blurred = gaussian_filter(images / 255.0, sigma=(0, sigma, sigma, 0), mode="nearest")
    return _to_uint8(blurred)


def contrast(images: np.ndarray, severity: int, *, seed: int = 0) -> np.ndarray:
    """Shrink each pixel toward its image's per-channel mean. ``seed`` is unused."""
    _check(images, severity)
    pixels = images / 255.0
    means = pixels.mean(axis=(1, 2), keepdims=True)
    return _to_uint8((pixels - means) * _CONTRAST_FACTOR[severity - 1] + means)


Corruption = Callable[..., np.ndarray]
CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise,
    "gaussian_blur": gaussian_blur,
    "contrast": contrast,
}


def corrupt(images: np.ndarray, name: str, severity: int, *, seed: int = 0) -> np.ndarray:
    """``images`` corrupted by ``name`` at ``severity``; severity 0 is a copy of the clean images.

    Severity 0 lets a sweep start from its clean baseline through the same call.
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; expected one of {sorted(CORRUPTIONS)}")
    if severity == 0:
        _check(images, SEVERITIES[0])
        return images.copy()
    return CORRUPTIONS[name](images, severity, seed=seed)
