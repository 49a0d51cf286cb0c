"""Python client for the service: typed results, and retries that honour ``Retry-After``.

    from service.client import Client

    wine = [7.0, 0.27, 0.36, 20.7, 0.045, 45, 170, 1.001, 3.0, 0.45, 8.8]  # UCI column order
    with Client("http://localhost:8000") as client:
        result = client.predict("wine-bnn", [wine], samples=200)  # or client.predict_wine
    print(result.predictions[0].interval.lower, result.predictions[0].epistemic_std)

Any served model is called by name; its entry in ``GET /models`` (fetched once per client)
says what it takes and answers, and how many rows or images one request may carry, so long
inputs are split to fit and the answers joined in order. :class:`AsyncClient` is the asyncio
twin. Results are the service's own response models (:mod:`service.schemas`), so the client
cannot drift from what the server sends. It needs only httpx and those models, no torch: it
runs on machines that have neither the networks nor a GPU.
"""

from __future__ import annotations

import asyncio
import math
import mimetypes
import numbers
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeAlias, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

# Both torch-free: the client needs neither the networks nor the server.
from models.task import IMAGE_CLASSIFICATION, TABULAR_REGRESSION
from service.schemas import (
    CIFAR_DEFAULT,
    CIFAR_FAMILY,
    WINE_DEFAULT,
    WINE_FAMILY,
    ClassificationResponse,
    ModelInfo,
    ModelsResponse,
    RegressionResponse,
    family_model,
)

__all__ = [
    "CIFAR_DEFAULT",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_URL",
    "IMAGE_CLASSIFICATION",
    "TABULAR_REGRESSION",
    "WINE_DEFAULT",
    "AsyncClient",
    "Client",
    "ImageInput",
    "PredictResponse",
    "ServiceError",
    "ServiceUnavailableError",
    "TabularRow",
    "describe_detail",
    "retry_after",
]

DEFAULT_URL: Final = "http://localhost:8000"
DEFAULT_TIMEOUT_S: Final = 60.0
DEFAULT_RETRIES: Final = 3
DEFAULT_MAX_RETRY_WAIT_S: Final = 30.0

TabularRow: TypeAlias = Mapping[str, float] | Sequence[float]
"""A row: its features by name, or numbers in the model's feature order (NumPy rows too)."""
ImageInput: TypeAlias = str | os.PathLike[str] | bytes
"""An image file: its path, or its bytes (PNG, JPEG, BMP, GIF or WebP)."""
PredictResponse: TypeAlias = RegressionResponse | ClassificationResponse

Answer = TypeVar("Answer", bound=BaseModel)

# What each task kind answers with.
_RESPONSES: Final[dict[str, type[PredictResponse]]] = {
    TABULAR_REGRESSION: RegressionResponse,
    IMAGE_CLASSIFICATION: ClassificationResponse,
}


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


def _answer(response: httpx.Response, model: type[Answer]) -> Answer:
    _raise_for_status(response)
    return model.model_validate(response.json())


def _raise_for_status(response: httpx.Response) -> None:
    if response.is_success:
        return
    cls = ServiceUnavailableError if response.status_code == 503 else ServiceError
    raise cls(response.status_code, _detail(response), url=_url(response.request))


def _detail(response: httpx.Response) -> Any:
    try:
        return response.json()["detail"]
    except (ValueError, KeyError, TypeError):
        return response.text or response.reason_phrase


# ---------------------------------------------------------------------------------------------
# Requests, the same for both clients: what to send for a model, given its GET /models entry.


def _predict_path(name: str) -> str:
    return f"/predict/{quote(name, safe='')}"


# Sent only to learn why a name is missing from GET /models: the server looks the model up
# before it reads the body, so its 404 (or 503 for a model that failed to load) says why.
_PROBE: Final[dict[str, Any]] = {"json": {"instances": []}}


def _raise_unless_served(probe: httpx.Response) -> None:
    """The probe's 404 or 5xx as an error; anything else means the model is served after all."""
    if probe.status_code == 404 or probe.status_code >= 500:
        _raise_for_status(probe)


def _find(models: ModelsResponse, name: str) -> ModelInfo | None:
    return next((info for info in models.models if info.name == name), None)


@dataclass(frozen=True)
class _Plan:
    """The requests of one prediction: where, the answer's type, and each chunk's body."""

    path: str
    response: type[PredictResponse]
    requests: Iterator[dict[str, Any]]


def _plan(
    info: ModelInfo,
    inputs: Iterable[Any],
    samples: int | None,
    level: float,
    chunk_size: int | None,
    expected_task: str | None = None,
) -> _Plan:
    """Check ``inputs`` against model ``info`` and cut them into requests of its size.

    Everything but sending is here, so that the blocking and asyncio clients cannot differ.
    """
    if expected_task is not None and info.task != expected_task:
        raise ValueError(f"model {info.name} is for {info.task}, not {expected_task}")
    response = _RESPONSES.get(info.task)
    if response is None:
        raise ValueError(
            f"model {info.name} has task {info.task!r}, which this client does not know "
            f"(it knows {', '.join(_RESPONSES)})"
        )
    if isinstance(inputs, str | bytes | os.PathLike | Mapping):
        raise TypeError(
            f"inputs are a list of rows or images, not one {type(inputs).__name__}; "
            "wrap a single one in a list"
        )
    size = info.max_instances if chunk_size is None else chunk_size
    if size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {size}")
    params = _params(samples, level)
    if info.task == TABULAR_REGRESSION:
        requests = _tabular_requests(inputs, params, size)
    else:
        requests = _image_requests(inputs, params, size)
    return _Plan(_predict_path(info.name), response, requests)


def _tabular_requests(
    rows: Iterable[TabularRow], params: dict[str, Any], size: int
) -> Iterator[dict[str, Any]]:
    """Keyword arguments of each request: rows as JSON instances."""
    instances = [_tabular_instance(row) for row in rows]
    if not instances:
        raise ValueError("no rows to predict")
    return ({"params": params, "json": {"instances": chunk}} for chunk in _chunks(instances, size))


def _image_requests(
    images: Iterable[ImageInput], params: dict[str, Any], size: int
) -> Iterator[dict[str, Any]]:
    """Keyword arguments of each multipart request; files are read one chunk at a time."""
    numbered = list(enumerate(images))  # bytes are named by their place in the whole input
    if not numbered:
        raise ValueError("no images to classify")
    return (
        {"params": params, "files": [_image_part(i, image) for i, image in chunk]}
        for chunk in _chunks(numbered, size)
    )


def _tabular_instance(row: TabularRow) -> dict[str, Any] | list[Any]:
    if isinstance(row, Mapping):
        return {str(name): _plain(value) for name, value in row.items()}
    if isinstance(row, str | bytes) or not isinstance(row, Iterable):
        raise TypeError(f"a row is a mapping or a sequence of numbers, not {row!r}")
    return [_plain(value) for value in row]


def _plain(value: Any) -> Any:
    """NumPy scalars as JSON numbers; anything else as it is, for the service to judge."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return int(value) if isinstance(value, numbers.Integral) else float(value)
    return value


def _image_part(index: int, image: ImageInput) -> tuple[str, tuple[str, bytes, str]]:
    if isinstance(image, bytes):
        name, content = f"image-{index}", image
    elif isinstance(image, str | os.PathLike):
        path = Path(image)
        name, content = path.name, path.read_bytes()
    else:
        raise TypeError(f"an image is a path or bytes, not {type(image).__name__}")
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return ("files", (name, content, media_type))


def _params(samples: int | None, level: float) -> dict[str, Any]:
    params: dict[str, Any] = {"level": level}
    if samples is not None:
        params["samples"] = samples
    return params


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _join(parts: list[PredictResponse]) -> PredictResponse:
    """One answer from the answers to consecutive chunks, predictions in input order."""
    predictions = [prediction for part in parts for prediction in part.predictions]
    return parts[0].model_copy(update={"predictions": predictions})


def _typed(response: PredictResponse, expected: type[Answer]) -> Answer:
    """Narrow a prediction's type for the wine and CIFAR shortcuts (the plan checked it)."""
    assert isinstance(response, expected)
    return response


# ---------------------------------------------------------------------------------------------
# The clients.


class Client:
    """Blocking client: ``with Client(url) as client: client.predict("wine-bnn", rows)``.

    ``retries`` bounds the extra tries after a 503 or a failed connection, ``max_retry_wait``
    the seconds spent waiting between them. ``transport`` and ``sleep`` are for tests.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT_S,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)
        self._retries = _RetryPolicy(retries, max_retry_wait)
        self._sleep = sleep
        self._models: ModelsResponse | None = None

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

    def models(self, *, refresh: bool = False) -> ModelsResponse:
        """GET /models: fetched on first use and kept; ``refresh`` asks again (``ready``)."""
        if self._models is None or refresh:
            self._models = _answer(self._send("GET", "/models", {}), ModelsResponse)
        return self._models

    def model_info(self, name: str) -> ModelInfo:
        """Model ``name``'s entry; a name not served raises the server's 404 as ServiceError."""
        info = _find(self.models(), name)
        if info is None:
            _raise_unless_served(self._send("POST", _predict_path(name), _PROBE))
            # The server has it now (it was restarted with another repository): ask again.
            info = _find(self.models(refresh=True), name)
        if info is None:
            raise ServiceError(
                None, f"model {name} is not listed by GET /models", url=self.base_url
            )
        return info

    def predict(
        self,
        name: str,
        inputs: Iterable[Any],
        *,
        samples: int | None = None,
        level: float = 0.95,
        chunk_size: int | None = None,
    ) -> PredictResponse:
        """Model ``name``'s answer for ``inputs``: rows for a tabular model, images otherwise.

        At most ``chunk_size`` inputs per request (default: the model's ``max_instances``).
        """
        plan = _plan(self.model_info(name), inputs, samples, level, chunk_size)
        return self._run(plan)

    def predict_wine(
        self,
        rows: Iterable[TabularRow],
        *,
        model: str = WINE_DEFAULT,
        samples: int | None = None,
        level: float = 0.95,
        chunk_size: int | None = None,
    ) -> RegressionResponse:
        """``predict(f"wine-{model}", rows)``: quality scores with the uncertainty split."""
        info = self.model_info(family_model(WINE_FAMILY, model))
        plan = _plan(info, rows, samples, level, chunk_size, TABULAR_REGRESSION)
        return _typed(self._run(plan), RegressionResponse)

    def predict_cifar(
        self,
        images: Iterable[ImageInput],
        *,
        model: str = CIFAR_DEFAULT,
        samples: int | None = None,
        level: float = 0.95,
        chunk_size: int | None = None,
    ) -> ClassificationResponse:
        """``predict(f"cifar-{model}", images)``: classes with intervals and entropy split."""
        info = self.model_info(family_model(CIFAR_FAMILY, model))
        plan = _plan(info, images, samples, level, chunk_size, IMAGE_CLASSIFICATION)
        return _typed(self._run(plan), ClassificationResponse)

    def _run(self, plan: _Plan) -> PredictResponse:
        return _join(
            [_answer(self._send("POST", plan.path, r), plan.response) for r in plan.requests]
        )

    def _send(self, method: str, path: str, request_kwargs: dict[str, Any]) -> httpx.Response:
        tries = self._retries.start()
        while True:
            request = self._http.build_request(method, path, **request_kwargs)
            try:
                outcome: httpx.Response | httpx.TransportError = self._http.send(request)
            except httpx.TransportError as exc:
                outcome = exc
            step = tries.after(request, outcome)
            if isinstance(step, httpx.Response):
                return step
            self._sleep(step)


class AsyncClient:
    """The asyncio twin of :class:`Client`: the same arguments and methods, awaited."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT_S,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport)
        self._retries = _RetryPolicy(retries, max_retry_wait)
        self._sleep = sleep
        self._models: ModelsResponse | None = None
        # Concurrent first calls wait for one GET /models instead of each sending their own.
        self._models_lock = asyncio.Lock()

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

    async def models(self, *, refresh: bool = False) -> ModelsResponse:
        """GET /models: fetched on first use and kept; ``refresh`` asks again (``ready``)."""
        async with self._models_lock:
            if self._models is None or refresh:
                response = await self._send("GET", "/models", {})
                self._models = _answer(response, ModelsResponse)
            return self._models

    async def model_info(self, name: str) -> ModelInfo:
        """Model ``name``'s entry; a name not served raises the server's 404 as ServiceError."""
        info = _find(await self.models(), name)
        if info is None:
            _raise_unless_served(await self._send("POST", _predict_path(name), _PROBE))
            # The server has it now (it was restarted with another repository): ask again.
            info = _find(await self.models(refresh=True), name)
        if info is None:
            raise ServiceError(
                None, f"model {name} is not listed by GET /models", url=self.base_url
            )
        return info

    async def predict(
        self,
        name: str,
        inputs: Iterable[Any],
        *,
        samples: int | None = None,
        level: float = 0.95,
        chunk_size: int | None = None,
    ) -> PredictResponse:
        """Model ``name``'s answer for ``inputs``: rows for a tabular model, images otherwise.

        At most ``chunk_size`` inputs per request (default: the model's ``max_instances``).
        """
        plan = _plan(await self.model_info(name), inputs, samples, level, chunk_size)
        return await self._run(plan)

    async def predict_wine(
        self,
        rows: Iterable[TabularRow],
        *,
        model: str = WINE_DEFAULT,
        samples: int | None = None,
        level: float = 0.95,
        chunk_size: int | None = None,
    ) -> RegressionResponse:
        """``predict(f"wine-{model}", rows)``: quality scores with the uncertainty split."""
        info = await self.model_info(family_model(WINE_FAMILY, model))
        plan = _plan(info, rows, samples, level, chunk_size, TABULAR_REGRESSION)
        return _typed(await self._run(plan), RegressionResponse)

    async def predict_cifar(
        self,
        images: Iterable[ImageInput],
        *,
        model: str = CIFAR_DEFAULT,
        samples: int | None = None,
        level: float = 0.95,
        chunk_size: int | None = None,
    ) -> ClassificationResponse:
        """``predict(f"cifar-{model}", images)``: classes with intervals and entropy split."""
        info = await self.model_info(family_model(CIFAR_FAMILY, model))
        plan = _plan(info, images, samples, level, chunk_size, IMAGE_CLASSIFICATION)
        return _typed(await self._run(plan), ClassificationResponse)

    async def _run(self, plan: _Plan) -> PredictResponse:
        # One chunk after another, as the blocking client: the service's queue is shared.
        parts = [
            _answer(await self._send("POST", plan.path, r), plan.response) for r in plan.requests
        ]
        return _join(parts)

    async def _send(self, method: str, path: str, request_kwargs: dict[str, Any]) -> httpx.Response:
        tries = self._retries.start()
        while True:
            request = self._http.build_request(method, path, **request_kwargs)
            try:
                outcome: httpx.Response | httpx.TransportError = await self._http.send(request)
            except httpx.TransportError as exc:
                outcome = exc
            step = tries.after(request, outcome)
            if isinstance(step, httpx.Response):
                return step
            await self._sleep(step)
