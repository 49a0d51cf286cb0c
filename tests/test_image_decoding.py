"""Image uploads: decoded right, refused early and by name, within pixel budgets, cancellable.

Each file goes to the decoder with the label a refusal names it by (the image task makes it
from how the client sent the file).
"""

from __future__ import annotations

import asyncio
import io
import struct
import threading
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from PIL import Image

import service.image_decoding
from service.errors import InputError, ServiceUnavailable
from service.image_decoding import ImageDecoder, PixelBudget

HANG_GUARD_S = 10.0


def image_bytes(fmt: str, size: tuple[int, int], mode: str, color: Any) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG claiming ``width × height`` with no pixel data: all a bomb needs to be measured."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def decoder(**limits: int) -> ImageDecoder:
    settings = {
        "workers": 2,
        "max_image_pixels": 10_000,
        "max_request_pixels": 1_000_000,
        "max_inflight_pixels": 1_000_000,
    }
    return ImageDecoder(**(settings | limits))


def decode_images(files: Sequence[tuple[str, bytes]], size: int = 32, **limits: int) -> np.ndarray:
    images = decoder(**limits)
    try:
        return asyncio.run(asyncio.wait_for(images.decode(files, size), HANG_GUARD_S))
    finally:
        images.close()


@pytest.mark.parametrize(
    ("fmt", "size", "mode", "color", "expected"),
    [
        ("PNG", (100, 60), "RGB", (200, 10, 30), (200, 10, 30)),
        ("PNG", (7, 300), "RGBA", (20, 40, 60, 128), (20, 40, 60)),
        ("JPEG", (64, 48), "L", 128, (128, 128, 128)),
        ("BMP", (32, 32), "RGB", (0, 255, 0), (0, 255, 0)),
        ("GIF", (50, 50), "P", 0, None),
        ("WEBP", (33, 17), "RGB", (90, 90, 200), (90, 90, 200)),
    ],
)
def test_formats_and_sizes(
    fmt: str, size: tuple[int, int], mode: str, color: Any, expected: tuple[int, ...] | None
) -> None:
    data = image_bytes(fmt, size, mode, color)
    images = decode_images([("a", data), ("b", data)])
    assert images.shape == (2, 32, 32, 3)
    assert images.dtype == np.uint8
    if expected is not None:  # solid colours survive resizing (JPEG and WebP within a few levels)
        assert np.abs(images.astype(int) - expected).max() <= 3


def test_images_keep_their_order_and_reach_the_models_input_size() -> None:
    colours = [(10 * i, 200 - 10 * i, 30) for i in range(12)]
    files = [(f"{i}.png", image_bytes("PNG", (64, 48), "RGB", c)) for i, c in enumerate(colours)]
    images = decode_images(files, size=24)
    assert images.shape == (12, 24, 24, 3)
    np.testing.assert_array_equal(images[:, 12, 12], colours)


def test_the_bad_file_is_named() -> None:
    png = image_bytes("PNG", (10, 10), "RGB", (0, 0, 0))
    with pytest.raises(InputError) as info:
        decode_images([("files[0] 'a.png'", png), ("files[1] 'notes.txt'", b"hello, world")])
    assert info.value.status_code == 415
    assert str(info.value.detail).startswith("files[1] 'notes.txt' is not a decodable image")
    with pytest.raises(InputError) as info:
        decode_images([("instances[0]", png[:40])])
    assert str(info.value.detail).startswith("instances[0] is not a decodable image")


def test_each_image_header_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Measured, then decoded from the same opened image: its header is not parsed twice."""
    opened: list[object] = []
    real_open = Image.open

    def counting_open(fp: Any, *args: Any, **kwargs: Any) -> Image.Image:
        opened.append(fp)
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    files = [(f"{i}.png", image_bytes("PNG", (40, 40), "RGB", (i, 0, 0))) for i in range(5)]
    images = decode_images(files, size=8)
    np.testing.assert_array_equal(images[:, 4, 4, 0], range(5))
    assert len(opened) == len(files)


def test_a_decoded_image_gives_back_its_full_size_pixels_at_once() -> None:
    """A request holds its opened images until the last is decoded; each must let go of its
    pixels at full size as soon as it is resized. Kept, 256 concurrent uploads of seven
    1000×1000 JPEGs (``make chaos``'s body flood) peaked at 2.6 GB of RSS against 1.0."""
    files = [(f"{i}.jpg", image_bytes("JPEG", (300, 200), "RGB", (i, 0, 0))) for i in range(3)]
    images = decoder(max_image_pixels=100_000)
    count = images.pixel_count()
    opened = [count.add(label, data) for label, data in files]
    try:
        asyncio.run(asyncio.wait_for(images.decode(files, 8, opened), HANG_GUARD_S))
    finally:
        images.close()
    for image in opened:
        with pytest.raises(ValueError, match="closed image"):
            image.getpixel((0, 0))  # the decoded core is gone, not merely the file


def test_an_image_over_the_pixel_limit_is_refused_from_its_header_with_our_limit() -> None:
    big = image_bytes("PNG", (200, 100), "L", 0)
    with pytest.raises(InputError) as info:
        decode_images([("ok", image_bytes("PNG", (8, 8), "L", 0)), ("files[1] 'big.png'", big)])
    assert info.value.status_code == 415
    assert "files[1] 'big.png' is too large" in str(info.value.detail)
    assert "200×100 = 20000 pixels, more than the limit of 10000" in str(info.value.detail)
    # Pillow refuses a 400-megapixel header itself, quoting its own limit; ours is what is said.
    with pytest.raises(InputError) as info:
        decode_images([("bomb.png", png_header(20_000, 20_000))])
    assert "over the limit of 10000 pixels (MAX_IMAGE_PIXELS)" in str(info.value.detail)
    assert "178956970" not in str(info.value.detail)  # Pillow's limit, not ours


def test_a_request_over_its_pixel_budget_is_413_before_anything_is_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoded: list[Image.Image] = []
    monkeypatch.setattr(
        service.image_decoding, "decode_opened", lambda image, size: decoded.append(image)
    )
    files = [(f"{i}.png", image_bytes("PNG", (90, 90), "L", i)) for i in range(4)]
    with pytest.raises(InputError) as info:
        decode_images(files, max_request_pixels=30_000)  # 4 × 8100 = 32400
    assert info.value.status_code == 413
    assert "hold 32400 pixels together; the limit per request is 30000" in str(info.value.detail)
    assert decoded == []


def test_nothing_to_decode() -> None:
    assert decode_images([]).shape == (0, 32, 32, 3)


def test_the_budget_bounds_pixels_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    lock = threading.Lock()
    in_flight, peak = [0], [0]
    real = service.image_decoding.decode_opened

    def counting(image: Image.Image, size: int) -> np.ndarray:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        try:
            threading.Event().wait(0.02)
            return real(image, size)
        finally:
            with lock:
                in_flight[0] -= 1

    monkeypatch.setattr(service.image_decoding, "decode_opened", counting)
    files = [(f"{i}.png", image_bytes("PNG", (100, 100), "L", i)) for i in range(8)]
    # 4 workers, but the budget holds two 10,000-pixel images at a time.
    decode_images(files, workers=4, max_inflight_pixels=20_000)
    assert peak[0] == 2
    in_flight[0] = peak[0] = 0
    decode_images(files, workers=4, max_inflight_pixels=1_000_000)
    assert peak[0] > 2  # the workers, not the budget, bound it now


class Stalled:
    """Decoding replaced by a stand-in that notes each image it starts, then waits to be let
    go: what is in flight when a request is cancelled, or the decoder closed, stays there."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started: list[int] = []
        self._first = threading.Event()
        self.carry_on = threading.Event()
        monkeypatch.setattr(service.image_decoding, "decode_opened", self._decode)

    def _decode(self, image: Image.Image, size: int) -> np.ndarray:
        self.started.append(len(self.started))
        self._first.set()
        self.carry_on.wait(HANG_GUARD_S)
        return np.zeros((size, size, 3), np.uint8)

    async def first_started(self) -> None:
        await asyncio.to_thread(self._first.wait, HANG_GUARD_S)


@pytest.fixture
def stalled(monkeypatch: pytest.MonkeyPatch) -> Stalled:
    return Stalled(monkeypatch)


def test_a_cancelled_request_decodes_no_more_of_its_images(stalled: Stalled) -> None:
    files = [(f"{i}.png", image_bytes("PNG", (10, 10), "L", i)) for i in range(10)]

    async def main() -> None:
        images = decoder(workers=1)
        work = asyncio.create_task(images.decode(files, 32))
        await stalled.first_started()
        work.cancel()  # the client left while its first image was being decoded
        with pytest.raises(asyncio.CancelledError):
            await work
        stalled.carry_on.set()
        await asyncio.sleep(0.1)
        images.close()

    asyncio.run(asyncio.wait_for(main(), HANG_GUARD_S))
    assert stalled.started == [0]  # the nine images still waiting were never decoded


def test_a_request_being_decoded_when_the_decoder_closes_gets_a_503(stalled: Stalled) -> None:
    """Shutting down under a request answers it; its images not yet started are not decoded."""
    files = [(f"{i}.png", image_bytes("PNG", (10, 10), "L", i)) for i in range(5)]

    async def main() -> None:
        images = decoder(workers=1)
        work = asyncio.create_task(images.decode(files, 32))
        await stalled.first_started()
        images.close()
        with pytest.raises(ServiceUnavailable) as info:
            await work
        assert info.value.status_code == 503
        assert "shutting down" in str(info.value.detail)
        with pytest.raises(ServiceUnavailable):  # and so does one that comes after
            await images.decode(files[:1], 32)
        stalled.carry_on.set()

    asyncio.run(asyncio.wait_for(main(), HANG_GUARD_S))
    assert stalled.started == [0]


def test_images_decoded_by_many_requests_at_once_each_reach_their_own_request() -> None:
    """The pool's threads write each image into its own request's array, whatever interleaves."""
    colours = [[(i, 10 * j, 255 - i) for j in range(9)] for i in range(16)]
    files = [
        [(f"{i}-{j}.png", image_bytes("PNG", (40, 40), "RGB", c)) for j, c in enumerate(row)]
        for i, row in enumerate(colours)
    ]

    async def main() -> list[np.ndarray]:
        images = decoder(workers=3)
        try:
            return await asyncio.gather(*(images.decode(request, 8) for request in files))
        finally:
            images.close()

    decoded = asyncio.run(asyncio.wait_for(main(), HANG_GUARD_S))
    for request, expected in zip(decoded, colours, strict=True):
        np.testing.assert_array_equal(request[:, 4, 4], expected)


def test_pixel_budget_grants_in_arrival_order_and_forgets_the_cancelled() -> None:
    async def main() -> None:
        budget = PixelBudget(10)
        assert await budget.acquire(6) == 6
        big = asyncio.create_task(budget.acquire(8))
        small = asyncio.create_task(budget.acquire(1))  # would fit now, but waits its turn
        gone = asyncio.create_task(budget.acquire(3))
        await asyncio.sleep(0)
        assert not big.done() and not small.done()
        gone.cancel()
        await asyncio.sleep(0)
        budget.release(6)
        assert await big == 8 and await small == 1
        assert budget.held == 9  # the cancelled request holds nothing
        budget.release(9)
        assert await budget.acquire(50) == 10  # one image larger than the whole budget
        assert budget.held == 10

    asyncio.run(asyncio.wait_for(main(), HANG_GUARD_S))


def test_pixel_budget_waiter_cancelled_after_release_dropped_it_is_only_cancelled() -> None:
    """A client leaves; release() drops its entry before the waiter's own clean-up runs."""

    async def main() -> None:
        budget = PixelBudget(10)
        assert await budget.acquire(10) == 10
        waiter = asyncio.create_task(budget.acquire(5))
        await asyncio.sleep(0)  # now waiting in the queue
        waiter.cancel()  # its future is cancelled at once; its except block runs later
        budget.release(10)  # pops the cancelled entry from the head
        with pytest.raises(asyncio.CancelledError):
            await waiter  # cancelled, not a ValueError from a second removal
        assert budget.held == 0
        assert await budget.acquire(10) == 10

    asyncio.run(asyncio.wait_for(main(), HANG_GUARD_S))
