from itertools import pairwise

import numpy as np
import pytest

from training.corruptions import (
    CORRUPTIONS,
    SEVERITIES,
    contrast,
    corrupt,
    gaussian_blur,
    gaussian_noise,
)


def _images(n: int = 6, seed: int = 0) -> np.ndarray:
    # Mid-range pixels, so noise and contrast are not clipped and their sizes can be measured.
    return np.random.default_rng(seed).integers(60, 196, size=(n, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_each_corruption_keeps_shape_and_input_and_grows_with_severity(name: str) -> None:
    images = _images()
    before = images.copy()
    distances = []
    for severity in (0, *SEVERITIES):
        out = corrupt(images, name, severity, seed=3)
        assert out.dtype == np.uint8 and out.shape == images.shape
        distances.append(np.mean((out.astype(float) - images) ** 2))
    np.testing.assert_array_equal(images, before)  # the input is never written
    assert distances[0] == 0.0
    assert all(b > a for a, b in pairwise(distances))


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_each_corruption_is_reproducible(name: str) -> None:
    images = _images()
    np.testing.assert_array_equal(
        corrupt(images, name, 3, seed=7), corrupt(images, name, 3, seed=7)
    )


def test_gaussian_noise_has_the_cifar_c_std() -> None:
    images = np.full((20, 32, 32, 3), 128, dtype=np.uint8)
    for severity, std in zip(SEVERITIES, (0.04, 0.06, 0.08, 0.09, 0.10), strict=True):
        noise = (gaussian_noise(images, severity).astype(float) - 128) / 255
        assert noise.mean() == pytest.approx(0.0, abs=0.002)
        # Rounding to 1/255 adds variance 1/(12·255²): negligible against std ≥ 0.04.
        assert noise.std() == pytest.approx(std, rel=0.02)
    assert not np.array_equal(gaussian_noise(images, 1, seed=0), gaussian_noise(images, 1, seed=1))


def test_gaussian_blur_spreads_a_point_by_its_sigma() -> None:
    flat = np.full((1, 32, 32, 3), 90, dtype=np.uint8)
    np.testing.assert_array_equal(gaussian_blur(flat, 5), flat)  # nothing to blur
    point = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    point[0, 16, 16] = 255
    offsets = np.arange(32) - 16
    variances = []
    for severity in SEVERITIES:
        profile = gaussian_blur(point, severity)[0, :, :, 0].astype(float).sum(axis=0)
        variances.append(np.sum(profile * offsets**2) / profile.sum())
    # A Gaussian of std 0.4 … 1.0 px sampled at whole pixels (as skimage's, cut at 4 sigma):
    # its variance, up to rounding to whole grey levels, which trims the faint tails.
    expected = []
    for sigma in (0.4, 0.6, 0.7, 0.8, 1.0):
        k = np.arange(-int(4 * sigma + 0.5), int(4 * sigma + 0.5) + 1)
        weights = np.exp(-(k**2) / (2 * sigma**2))
        expected.append(float(np.sum(weights * k**2) / weights.sum()))
    assert variances == pytest.approx(expected, abs=0.1)
    assert all(b > a for a, b in pairwise(variances))


def test_contrast_scales_the_distance_from_each_channel_mean() -> None:
    images = _images(n=3)
    for severity, factor in zip(SEVERITIES, (0.75, 0.5, 0.4, 0.3, 0.15), strict=True):
        out = contrast(images, severity).astype(float)
        means = images.mean(axis=(1, 2))
        np.testing.assert_allclose(out.mean(axis=(1, 2)), means, atol=0.5)
        np.testing.assert_allclose(
            out.std(axis=(1, 2)), factor * images.std(axis=(1, 2)), rtol=0.02, atol=0.3
        )


def test_bad_arguments_are_refused() -> None:
    images = _images(n=1)
    with pytest.raises(ValueError, match="severity"):
        gaussian_noise(images, 6)
    with pytest.raises(ValueError, match="uint8"):
        contrast(images.astype(np.float32), 1)
    with pytest.raises(ValueError, match="N×H×W×3"):
        gaussian_blur(images[0], 1)
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(images, "fog", 1)
