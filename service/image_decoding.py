"""Image uploads decoded on a bounded pool, within budgets of pixels: what clients send cannot
set the service's memory or its CPU time.

Every image of a request is opened first, its header read (microseconds, nothing decoded):
one over ``max_image_pixels`` is refused at once with a 415 naming it, and a request whose
images add up to more than ``max_request_pixels`` with a 413. Decoding then runs on the
opened images, their headers not read again, on a pool of
``workers`` threads (Pillow releases the GIL while it decodes, converts and resizes, so the
threads use every core), each image holding its pixels from a service-wide budget of
``max_inflight_pixels`` while it is decoded. An image not yet started when its request is
cancelled (the client left, the deadline passed) is never decoded.

The event loop is woken once per request, not once per image: each image is a job on the
pool that writes its pixels into the request's array and gives its budget back from the
thread, and the last job to end (or the first to fail) wakes the request. The loop's own share
of the work is then a few microseconds an image, so a host with many cores decodes on all of
them before the one loop becomes the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from PIL import Image, UnidentifiedImageError

from models.images import ImageDecodeError, decode_opened, open_image
from service.errors import InputError, ServiceUnavailable

__all__ = ["ImageDecoder", "PixelBudget", "default_workers"]


def default_workers() -> int:
    """One decoding thread per core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class PixelBudget:
    """At most ``capacity`` pixels held at once, granted in arrival order (one holder of more
    than all of it waits for all of it).

    Acquired on the event loop; given back on it (:meth:`release`) or from a decoding thread
    (:meth:`release_threadsafe`), which wakes the loop only when someone is waiting.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.held = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._lock = threading.Lock()  # ``held`` and ``_waiting``: threads give pixels back

    async def acquire(self, pixels: int) -> int:
        """Wait until ``pixels`` (capped at the capacity) fit; return what was taken."""
        pixels = min(pixels, self.capacity)
        with self._lock:
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
                # _grant() may have dropped it already, as a cancelled waiter at the head.
                with self._lock, contextlib.suppress(ValueError):
                    self._waiting.remove(entry)
            raise
        return pixels

    def release(self, pixels: int) -> None:
        """Give ``pixels`` back, on the event loop: the waiters they let in are granted now."""
        with self._lock:
            self.held -= pixels
        self._grant()

    def release_threadsafe(self, pixels: int, loop: asyncio.AbstractEventLoop) -> None:
        """Give ``pixels`` back from another thread; ``loop`` grants the waiters, if any."""
        with self._lock:
            self.held -= pixels
            if not self._waiting:
                return
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody left to grant
            loop.call_soon_threadsafe(self._grant)

    def _grant(self) -> None:
        with self._lock:
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
    images so far hold more than the per-request limit. Nothing is decoded: each image is
    handed back opened, for :meth:`ImageDecoder.decode` to decode without reading its header
    again (a third of the work for a CIFAR-sized JPEG, and Python's, under the GIL)."""

    def __init__(self, max_image_pixels: int, max_request_pixels: int) -> None:
        self.max_image_pixels = max_image_pixels
        self.max_request_pixels = max_request_pixels
        self.images = 0
        self.total = 0

    def add(self, label: str, data: bytes) -> Image.Image:
        """Measure one more image (named ``label`` in a refusal); the image, opened."""
        try:
            image = open_image(data, max_pixels=self.max_image_pixels)
        except ImageDecodeError as exc:
            raise _refusal(label, exc) from exc
        self.images += 1
        self.total += _pixels(image)
        if self.total > self.max_request_pixels:
            raise InputError.too_large(
                f"the {self.images} images hold {self.total} pixels together; the limit per "
                f"request is {self.max_request_pixels} (MAX_REQUEST_PIXELS)"
            )
        return image


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
        self._active: set[_Decoding] = set()  # requests being decoded, for close()
        self._closed = False

    def close(self) -> None:
        """Stop decoding: images not yet started never are, and their requests get a 503."""
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        for decoding in list(self._active):
            decoding.abandon(_closed())

    async def decode(
        self,
        files: Sequence[tuple[str, bytes]],
        size: int,
        opened: Sequence[Image.Image] | None = None,
    ) -> np.ndarray:
        """Every file as RGB ``size × size``, in order; the first bad one is a 415 naming it.

        ``files`` pairs each file's bytes with how the client would name it in a message
        (``files[3] 'cat.png'``, ``instances[3]``): refusals begin with that label.
        ``opened``: the files as :class:`PixelCount` opened them as they arrived, if it did.
        """
        if not files:
            return np.empty((0, size, size, 3), dtype=np.uint8)
        if opened is None:
            count = self.pixel_count()
            opened = [count.add(label, data) for label, data in files]
        elif len(opened) != len(files):
            raise ValueError(f"{len(opened)} opened images for {len(files)} files")
        budget = self._pixel_budget()
        decoding = _Decoding(asyncio.get_running_loop(), budget, len(files), size)
        self._active.add(decoding)
        try:
            for index, image in enumerate(opened):
                held = await budget.acquire(_pixels(image))
                if self._closed:
                    budget.release(held)
                    raise _closed()
                decoding.submit(self._pool, index, image, held)
                if decoding.finished.done():  # one has failed: decode no more
                    break
            await decoding.finished
        finally:
            self._active.discard(decoding)
            decoding.cancel_waiting()  # one failed, or the request was cancelled
        if decoding.failure is not None:
            index, exc = decoding.failure
            if index is not None and isinstance(exc, ImageDecodeError):
                raise _refusal(files[index][0], exc) from exc
            raise exc
        return decoding.images

    def pixel_count(self) -> PixelCount:
        """A request's running count of pixels, which refuses it at the first file too many."""
        return PixelCount(self.max_image_pixels, self.max_request_pixels)

    def _pixel_budget(self) -> PixelBudget:
        # Made on first use, inside the event loop that serves.
        if self._budget is None:
            self._budget = PixelBudget(self._max_inflight_pixels)
        return self._budget


class _Decoding:
    """One request's images on the pool, each a job that writes its pixels into ``images``.

    The jobs count themselves down on their threads; the last to end, or the first to fail,
    settles ``finished`` with one wake-up of the loop. Each job's pixels go back to the budget
    when its thread is done with them, not when the request stops waiting: a decode that has
    started runs to its end.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        budget: PixelBudget,
        count: int,
        size: int,
    ) -> None:
        self.images = np.empty((count, size, size, 3), dtype=np.uint8)
        # The first failure, by when it happened, and the image it was (None: not an image's).
        self.failure: tuple[int | None, BaseException] | None = None
        self.finished: asyncio.Future[None] = loop.create_future()
        self._loop = loop
        self._budget = budget
        self._size = size
        self._left = count
        self._lock = threading.Lock()
        self._jobs: list[tuple[Future[None], int]] = []

    def submit(self, pool: ThreadPoolExecutor, index: int, image: Image.Image, held: int) -> None:
        """Queue image ``index``, which holds ``held`` pixels of the budget until it ends."""
        self._jobs.append((pool.submit(self._decode, index, image, held), held))

    def cancel_waiting(self) -> None:
        """Drop the jobs no thread has started: never decoded, their pixels given back now."""
        for job, held in self._jobs:
            if job.cancel():
                self._budget.release(held)

    def _decode(self, index: int, image: Image.Image, held: int) -> None:  # on a pool thread
        failure: BaseException | None = None
        try:
            self.images[index] = _decode(image, self._size)
        except BaseException as exc:  # reported to the request, raised there
            failure = exc
        finally:
            self._budget.release_threadsafe(held, self._loop)
        with self._lock:
            self._left -= 1
            first_failure = failure is not None and self.failure is None
            if first_failure:
                self.failure = (index, failure)
            wake = first_failure or (self._left == 0 and self.failure is None)
        if wake:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                self._loop.call_soon_threadsafe(self._finish)

    def abandon(self, reason: BaseException) -> None:
        """Fail the request with ``reason`` (the pool was shut down under it), from any thread."""
        with self._lock:
            if self.failure is None:
                self.failure = (None, reason)
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        if not self.finished.done():  # the request may have been cancelled meanwhile
            self.finished.set_result(None)


def _closed() -> ServiceUnavailable:
    return ServiceUnavailable("the image decoder has stopped: the service is shutting down")


def _pixels(image: Image.Image) -> int:
    width, height = image.size
    return width * height


def _decode(image: Image.Image, size: int) -> np.ndarray:
    try:
        return decode_opened(image, size)
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
