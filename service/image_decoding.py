"""Image uploads decoded on a bounded pool, within budgets of pixels: what clients send cannot
set the service's memory or its CPU time.

Every image of a request is measured from its header first (microseconds, nothing decoded):
one over ``max_image_pixels`` is refused at once with a 415 naming it, and a request whose
images add up to more than ``max_request_pixels`` with a 413. Decoding then runs on a pool of
``workers`` threads (Pillow releases the GIL while it decodes, converts and resizes, so the
threads use every core), each image holding its pixels from a service-wide budget of
``max_inflight_pixels`` while it is decoded. An image not yet started when its request is
cancelled (the client left, the deadline passed) is never decoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import UnidentifiedImageError

from models.images import ImageDecodeError, decode_image, image_pixels
from service.errors import InputError

__all__ = ["ImageDecoder", "PixelBudget", "default_workers"]


def default_workers() -> int:
    """One decoding thread per core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class PixelBudget:
    """At most ``capacity`` pixels held at once, granted in arrival order (one holder of more
    than all of it waits for all of it). Used on the event loop only."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.held = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def acquire(self, pixels: int) -> int:
        """Wait until ``pixels`` (capped at the capacity) fit; return what was taken."""
        pixels = min(pixels, self.capacity)
        if not self._waiting and self.held + pixels <= self.capacity:
            self.held += pixels
            return pixels
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (pixels, granted)
        self._waiting.append(entry)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release(pixels)  # granted just as it was cancelled: give it back
            else:
                # release() may have dropped it already, as a cancelled waiter at the head.
                with contextlib.suppress(ValueError):
                    self._waiting.remove(entry)
            raise
        return pixels

    def release(self, pixels: int) -> None:
        self.held -= pixels
        while self._waiting:
            wanted, granted = self._waiting[0]
            if granted.done():  # cancelled: it waits for nothing, whatever its size
                self._waiting.popleft()
            elif self.held + wanted <= self.capacity:
                self._waiting.popleft()
                self.held += wanted
                granted.set_result(None)
            else:
                break


class PixelCount:
    """The pixels of one request's images, measured from their headers one by one as they
    arrive: a 415 for an image over the per-image limit (or not an image), a 413 once the
    images so far hold more than the per-request limit. Nothing is decoded."""

    def __init__(self, max_image_pixels: int, max_request_pixels: int) -> None:
        self.max_image_pixels = max_image_pixels
        self.max_request_pixels = max_request_pixels
        self.images = 0
        self.total = 0

    def add(self, label: str, data: bytes) -> int:
        """Measure one more image (named ``label`` in a refusal); its pixels."""
        try:
            pixels = image_pixels(data, max_pixels=self.max_image_pixels)
        except ImageDecodeError as exc:
            raise _refusal(label, exc) from exc
        self.images += 1
        self.total += pixels
        if self.total > self.max_request_pixels:
            raise InputError.too_large(
                f"the {self.images} images hold {self.total} pixels together; the limit per "
                f"request is {self.max_request_pixels} (MAX_REQUEST_PIXELS)"
            )
        return pixels


class ImageDecoder:
    """Decodes a request's image files to ``N × size × size × 3`` uint8 on a bounded pool."""

    def __init__(
        self,
        *,
        workers: int,
        max_image_pixels: int,
        max_request_pixels: int,
        max_inflight_pixels: int,
    ) -> None:
        self.workers = workers
        self.max_image_pixels = max_image_pixels
        self.max_request_pixels = max_request_pixels
        self._budget: PixelBudget | None = None
        self._max_inflight_pixels = max_inflight_pixels
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def decode(
        self, files: Sequence[tuple[str, bytes]], size: int, pixels: Sequence[int] | None = None
    ) -> np.ndarray:
        """Every file as RGB ``size × size``, in order; the first bad one is a 415 naming it.

        ``files`` pairs each file's bytes with how the client would name it in a message
        (``files[3] 'cat.png'``, ``instances[3]``): refusals begin with that label.
        ``pixels``: each file's size, if :class:`PixelCount` measured them as they arrived.
        """
        if not files:
            return np.empty((0, size, size, 3), dtype=np.uint8)
        if pixels is None:
            count = self.pixel_count()
            pixels = [count.add(label, data) for label, data in files]
        images = np.empty((len(files), size, size, 3), dtype=np.uint8)
        decodes = [
            asyncio.ensure_future(self._decode_one(index, label, data, count, size, images))
            for index, ((label, data), count) in enumerate(zip(files, pixels, strict=True))
        ]
        try:
            await asyncio.gather(*decodes)
        finally:
            for pending in decodes:  # one failed, or the request was cancelled
                pending.cancel()
        return images

    def pixel_count(self) -> PixelCount:
        """A request's running count of pixels, which refuses it at the first file too many."""
        return PixelCount(self.max_image_pixels, self.max_request_pixels)

    async def _decode_one(
        self, index: int, label: str, data: bytes, pixels: int, size: int, out: np.ndarray
    ) -> None:
        budget = self._pixel_budget()
        held = await budget.acquire(pixels)
        loop = asyncio.get_running_loop()
        # The pixels go back when the thread is done with them, not when the caller stops
        # waiting: a decode that has started runs to its end.
        work = self._pool.submit(_decode, data, size, self.max_image_pixels)
        work.add_done_callback(lambda _: _call_soon(loop, budget.release, held))
        try:
            out[index] = await asyncio.wrap_future(work)
        except ImageDecodeError as exc:
            raise _refusal(label, exc) from exc
        except asyncio.CancelledError:
            work.cancel()  # never started: never decoded
            raise

    def _pixel_budget(self) -> PixelBudget:
        # Made on first use, inside the event loop that serves (asyncio.Condition binds to it).
        if self._budget is None:
            self._budget = PixelBudget(self._max_inflight_pixels)
        return self._budget


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[int], None], arg: int) -> None:
    with contextlib.suppress(RuntimeError):  # the loop has closed: nothing left to account for
        loop.call_soon_threadsafe(callback, arg)


def _decode(data: bytes, size: int, max_pixels: int) -> np.ndarray:
    try:
        return decode_image(data, size, max_pixels=max_pixels)
    except ImageDecodeError:
        raise
    except Exception as exc:  # Pillow's decoders raise EOFError, struct.error, ... on hostile bytes
        raise ImageDecodeError(f"not a decodable image: {exc}") from exc


def _refusal(label: str, exc: ImageDecodeError) -> InputError:
    if exc.__cause__ is None:  # decodable, but over the pixel limit
        return InputError.unsupported_media_type(
            f"{label} is too large to decode: {exc} (MAX_IMAGE_PIXELS)"
        )
    cause = exc.__cause__
    reason = "unrecognised file format" if isinstance(cause, UnidentifiedImageError) else cause
    return InputError.unsupported_media_type(
        f"{label} is not a decodable image (PNG, JPEG, BMP, GIF or WebP): {reason}"
    )
