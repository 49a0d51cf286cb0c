"""Python client for the service: typed results, and retries that honour ``Retry-After``.

    from service.client import Client

    wine = [7.0, 0.27, 0.36, 20.7, 0.045, 45, 170, 1.001, 3.0, 0.45, 8.8]  # UCI column order
    with Client("http://localhost:8000") as client:
        result = client.predict_wine([wine], samples=200)
    print(result.predictions[0].interval.lower, result.predictions[0].epistemic_std)

:class:`AsyncClient` is its asyncio twin. Results are the service's own response models
(:mod:`service.schemas`), so the client cannot drift from what the server sends. Long inputs
are split into requests within the service's per-request limits and the answers joined.
"""

from __future__ import annotations

import asyncio
import math
import mimetypes
import numbers
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeAlias, TypeVar

import httpx

from service.schemas import CifarResponse, WineResponse
from service.settings import CifarSettings, WineBNNSettings, WineGaussianSettings

__all__ = [
    "AsyncClient",
    "Client",
    "ImageInput",
    "ServiceError",
    "ServiceUnavailableError",
    "WineRow",
    "describe_detail",
    "retry_after",
]

DEFAULT_URL: Final = "http://localhost:8000"
DEFAULT_TIMEOUT_S: Final = 60.0
# Rows or images per request: the service's default limits (a 422 beyond them).
WINE_CHUNK: Final = min(WineBNNSettings().max_instances, WineGaussianSettings().max_instances)
CIFAR_CHUNK: Final = CifarSettings().max_instances

WineRow: TypeAlias = Mapping[str, float] | Sequence[float]
"""A wine: its eleven features by name, or as numbers in UCI column order."""
ImageInput: TypeAlias = str | os.PathLike[str] | bytes
"""An image file: its path, or its bytes (PNG, JPEG, BMP, GIF or WebP)."""

Response = TypeVar("Response", WineResponse, CifarResponse)


class ServiceError(Exception):
    """The service refused the request; ``detail`` is its ``{"detail": ...}`` as sent."""

    def __init__(
        self, status_code: int | None, detail: Any, *, url: str, message: str | None = None
    ) -> None:
        self.status_code = status_code
        self.detail = detail
        self.url = url
        super().__init__(message or f"{url} answered {status_code}: {describe_detail(detail)}")


class ServiceUnavailableError(ServiceError):
    """The service did not take the request: unreachable, silent, or 503 after every retry."""

    @classmethod
    def from_transport(cls, url: str, exc: httpx.TransportError) -> ServiceUnavailableError:
        """No HTTP answer at all: ``status_code`` is None, and the message names the URL."""
        reason = str(exc) or type(exc).__name__
        what = "cannot reach" if isinstance(exc, _NOT_SENT) else "no answer from"
        return cls(None, reason, url=url, message=f"{what} the service at {url}: {reason}")


def describe_detail(detail: Any) -> str:
    """One line from FastAPI's ``detail``: a message, or 422 entries as ``loc: msg``."""
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(part) for part in entry.get('loc', []))}: {entry.get('msg')}"
            if isinstance(entry, dict)
            else str(entry)
            for entry in detail
        )
    return str(detail)


# Failures before the request left: retrying cannot run it twice.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout)


class _RetryPolicy:
    """When to try again: after a 503 or a failed connection, never after a 4xx.

    Both mean the request was not processed. A 503's ``Retry-After`` says how long to wait;
    otherwise waits back off exponentially. All waits of one call stay within ``max_wait``
    seconds: a longer ``Retry-After`` (a model that failed to load) gives up at once.
    """

    def __init__(self, retries: int, max_wait: float, backoff: float = 0.5) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.retries, self.max_wait, self.backoff = retries, max_wait, backoff

    def start(self) -> _Tries:
        return _Tries(self)


class _Tries:
    """The tries of one request: told each outcome, it says wait, done, or fail."""

    def __init__(self, policy: _RetryPolicy) -> None:
        self.policy = policy
        self.attempt = 0
        self.waited = 0.0

    def after(
        self, request: httpx.Request, outcome: httpx.Response | httpx.TransportError
    ) -> httpx.Response | float:
        """The response to read, or seconds to wait before sending again; raises if neither."""
        if isinstance(outcome, httpx.Response):
            if outcome.status_code != 503:
                return outcome
            delay = self._next_delay(retry_after(outcome))
            return outcome if delay is None else delay
        delay = self._next_delay(None) if isinstance(outcome, _NOT_SENT) else None
        if delay is None:
            raise ServiceUnavailableError.from_transport(_url(request), outcome) from outcome
        return delay

    def _next_delay(self, suggested: float | None) -> float | None:
        if self.attempt >= self.policy.retries:
            return None
        delay = suggested if suggested is not None else self.policy.backoff * 2**self.attempt
        if self.waited + delay > self.policy.max_wait:
            return None
        self.attempt += 1
        self.waited += delay
        return delay


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds: a number, or an HTTP date; None when absent or unreadable."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def _url(request: httpx.Request) -> str:
    """The URL to name in messages: without the query, which says nothing about the failure."""
    return str(request.url.copy_with(query=None))


def _answer(response: httpx.Response, model: type[Response]) -> Response:
    if response.is_success:
        return model.model_validate(response.json())
    cls = ServiceUnavailableError if response.status_code == 503 else ServiceError
    raise cls(response.status_code, _detail(response), url=_url(response.request))


def _detail(response: httpx.Response) -> Any:
    try:
        return response.json()["detail"]
    except (ValueError, KeyError, TypeError):
        return response.text or response.reason_phrase


def _wine_requests(
    rows: Iterable[WineRow], model: str, samples: int | None, level: float, chunk_size: int
) -> Iterator[dict[str, Any]]:
    """Keyword arguments of each /predict/wine request."""
    instances = [_wine_instance(row) for row in rows]
    if not instances:
        raise ValueError("no rows to predict")
    params = _params(samples, level, model=model)
    for chunk in _chunks(instances, chunk_size):
        yield {"params": params, "json": {"instances": chunk}}


def _cifar_requests(
    images: Iterable[ImageInput], samples: int | None, level: float, chunk_size: int
) -> Iterator[dict[str, Any]]:
    """Keyword arguments of each /predict/cifar request; files are read one chunk at a time."""
    numbered = list(enumerate(images))  # bytes are named by their place in the whole input
    if not numbered:
        raise ValueError("no images to classify")
    params = _params(samples, level)
    for chunk in _chunks(numbered, chunk_size):
        yield {"params": params, "files": [_image_part(i, image) for i, image in chunk]}


def _wine_instance(row: WineRow) -> dict[str, Any] | list[Any]:
    if isinstance(row, Mapping):
        return {str(name): _plain(value) for name, value in row.items()}
    if isinstance(row, str | bytes):
        raise TypeError(f"a wine row is a mapping or a sequence of numbers, not {row!r}")
    return [_plain(value) for value in row]


def _plain(value: Any) -> Any:
    """NumPy scalars as JSON numbers; anything else as it is, for the service to judge."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return int(value) if isinstance(value, numbers.Integral) else float(value)
    return value


def _image_part(index: int, image: ImageInput) -> tuple[str, tuple[str, bytes, str]]:
    if isinstance(image, bytes):
        name, content = f"image-{index}", image
    else:
        path = Path(image)
        name, content = path.name, path.read_bytes()
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return ("files", (name, content, media_type))


def _params(samples: int | None, level: float, **extra: str) -> dict[str, Any]:
    params: dict[str, Any] = {**extra, "level": level}
    if samples is not None:
        params["samples"] = samples
    return params


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    if size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _join(parts: list[Response]) -> Response:
    """One answer from the answers to consecutive chunks, predictions in input order."""
    predictions = [prediction for part in parts for prediction in part.predictions]
    return parts[0].model_copy(update={"predictions": predictions})


class Client:
    """Blocking client: ``with Client(url) as client: client.predict_wine(rows)``.

    ``retries`` bounds the extra tries after a 503 or a failed connection, ``max_retry_wait``
    the seconds spent waiting between them. ``transport`` and ``sleep`` are for tests.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = 3,
        max_retry_wait: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)
        self._retries = _RetryPolicy(retries, max_retry_wait)
        self._sleep = sleep

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def predict_wine(
        self,
        rows: Iterable[WineRow],
        *,
        model: str = "bnn",
        samples: int | None = None,
        level: float = 0.95,
        chunk_size: int = WINE_CHUNK,
    ) -> WineResponse:
        """Quality score of each wine with its interval and epistemic/aleatoric split."""
        requests = _wine_requests(rows, model, samples, level, chunk_size)
        return _join([self._post("/predict/wine", WineResponse, r) for r in requests])

    def predict_cifar(
        self,
        images: Iterable[ImageInput],
        *,
        samples: int | None = None,
        level: float = 0.95,
        chunk_size: int = CIFAR_CHUNK,
    ) -> CifarResponse:
        """CIFAR-10 class of each image with credible intervals and the entropy split."""
        requests = _cifar_requests(images, samples, level, chunk_size)
        return _join([self._post("/predict/cifar", CifarResponse, r) for r in requests])

    def _post(self, path: str, model: type[Response], request_kwargs: dict[str, Any]) -> Response:
        tries = self._retries.start()
        while True:
            request = self._http.build_request("POST", path, **request_kwargs)
            try:
                outcome: httpx.Response | httpx.TransportError = self._http.send(request)
            except httpx.TransportError as exc:
                outcome = exc
            step = tries.after(request, outcome)
            if isinstance(step, httpx.Response):
                return _answer(step, model)
            self._sleep(step)


class AsyncClient:
    """The asyncio twin of :class:`Client`: the same arguments and methods, awaited."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = 3,
        max_retry_wait: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport)
        self._retries = _RetryPolicy(retries, max_retry_wait)
        self._sleep = sleep

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def predict_wine(
        self,
        rows: Iterable[WineRow],
        *,
        model: str = "bnn",
        samples: int | None = None,
        level: float = 0.95,
        chunk_size: int = WINE_CHUNK,
    ) -> WineResponse:
        """Quality score of each wine with its interval and epistemic/aleatoric split."""
        requests = _wine_requests(rows, model, samples, level, chunk_size)
        return _join([await self._post("/predict/wine", WineResponse, r) for r in requests])

    async def predict_cifar(
        self,
        images: Iterable[ImageInput],
        *,
        samples: int | None = None,
        level: float = 0.95,
        chunk_size: int = CIFAR_CHUNK,
    ) -> CifarResponse:
        """CIFAR-10 class of each image with credible intervals and the entropy split."""
        requests = _cifar_requests(images, samples, level, chunk_size)
        return _join([await self._post("/predict/cifar", CifarResponse, r) for r in requests])

    async def _post(
        self, path: str, model: type[Response], request_kwargs: dict[str, Any]
    ) -> Response:
        tries = self._retries.start()
        while True:
            request = self._http.build_request("POST", path, **request_kwargs)
            try:
                outcome: httpx.Response | httpx.TransportError = await self._http.send(request)
            except httpx.TransportError as exc:
                outcome = exc
            step = tries.after(request, outcome)
            if isinstance(step, httpx.Response):
                return _answer(step, model)
            await self._sleep(step)
