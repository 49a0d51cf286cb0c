"""Errors the HTTP layer raises, and how each reaches the client as ``{"detail": ...}``.

Every client mistake becomes a 4xx with a message that says what was expected and what was
got; a 503 also says when to come back. FastAPI's own ``RequestValidationError`` handler is
left as it is, so query-parameter errors keep FastAPI's shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "BodySizeLimitMiddleware",
    "DeadlineExceeded",
    "ErrorEntry",
    "InputError",
    "ServiceUnavailable",
    "error_entry",
    "install_error_handlers",
]

DEFAULT_MAX_BODY_BYTES: Final = 8 * 1024 * 1024

# One FastAPI-shaped validation error: {"type", "loc", "msg", "input"?}.
ErrorEntry = dict[str, Any]

_NO_INPUT: Final = object()


def error_entry(
    *, loc: Sequence[str | int], msg: str, type: str = "value_error", input: Any = _NO_INPUT
) -> ErrorEntry:
    """Build one entry shaped like FastAPI's 422 ``detail`` items; ``input`` is optional."""
    entry: ErrorEntry = {"type": type, "loc": list(loc), "msg": msg}
    if input is not _NO_INPUT:
        entry["input"] = _json_safe(input)
    return entry


# Echoed input deeper than this is elided: deep nesting would hit Python's recursion limit.
_MAX_ECHO_DEPTH: Final = 16


def _json_safe(value: Any, depth: int = 0) -> Any:
    """Echoed input must serialise: Starlette refuses NaN and ±Infinity (a 500), so spell them."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if value is None or isinstance(value, str | int | float):
        return value
    if depth >= _MAX_ECHO_DEPTH:
        return "..."
    if isinstance(value, dict):
        return {str(key): _json_safe(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item, depth + 1) for item in value]
    return repr(value)


class InputError(Exception):
    """A request the service will not run: bad body (422), too large (413), wrong type (415).

    ``detail`` is a message, or for 422 a list of FastAPI-shaped entries whose ``loc`` names
    the offending field and index, so clients parse both kinds of 422 the same way.
    """

    def __init__(self, status_code: int, detail: str | list[ErrorEntry]) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code!r}, detail={self.detail!r})"

    @classmethod
    def unprocessable(
        cls,
        *,
        loc: Sequence[str | int],
        msg: str,
        type: str = "value_error",
        input: Any = _NO_INPUT,
    ) -> InputError:
        """422 with one entry, e.g. ``loc=("body", "instances", 3, "pH")``."""
        return cls(422, [error_entry(loc=loc, msg=msg, type=type, input=input)])

    @classmethod
    def from_entries(cls, errors: Sequence[ErrorEntry]) -> InputError:
        """422 carrying several entries at once, so a client can fix them all in one go."""
        return cls(422, list(errors))

    @classmethod
    def too_large(cls, detail: str) -> InputError:
        """413: the body or one uploaded file is over its configured limit."""
        return cls(413, detail)

    @classmethod
    def unsupported_media_type(cls, detail: str) -> InputError:
        """415: a Content-Type the route does not take, or bytes that are not an image."""
        return cls(415, detail)


class ServiceUnavailable(Exception):
    """503: the model is not loaded yet or its queue is full; the request was not processed."""

    def __init__(self, reason: str, *, retry_after: float = 1.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class DeadlineExceeded(Exception):
    """504: the request waited past the configured deadline and was not processed."""

    def __init__(
        self, detail: str = "the request waited longer than the deadline and was not processed"
    ) -> None:
        super().__init__(detail)
        self.detail = detail


def _retry_after_header(seconds: float) -> str:
    """``Retry-After`` takes whole seconds: round up, never below 1 (nor for NaN/inf)."""
    if not math.isfinite(seconds) or seconds < 1:
        return "1"
    return str(math.ceil(seconds))


async def _input_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InputError)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)


async def _service_unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceUnavailable)
    return JSONResponse(
        {"detail": exc.reason},
        status_code=503,
        headers={"Retry-After": _retry_after_header(exc.retry_after)},
    )


async def _deadline_exceeded(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DeadlineExceeded)
    return JSONResponse({"detail": exc.detail}, status_code=504)


def install_error_handlers(app: FastAPI) -> None:
    """Render this module's errors as ``{"detail": ...}``; FastAPI's own handlers stay."""
    app.add_exception_handler(InputError, _input_error)
    app.add_exception_handler(ServiceUnavailable, _service_unavailable)
    app.add_exception_handler(DeadlineExceeded, _deadline_exceeded)


class _BodyTooLarge(Exception):
    """Raised from ``receive`` to stop the app reading a body that has passed the limit."""


class BodySizeLimitMiddleware:
    """Answer 413 to a body over ``max_body_bytes`` before the app buffers all of it.

    A declared ``Content-Length`` over the limit is refused without reading a byte; a chunked
    body is counted as it is read and cut off once it passes the limit. Pure ASGI rather than
    ``BaseHTTPMiddleware`` so that the body streams through untouched.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        if max_body_bytes < 0:
            raise ValueError(f"max_body_bytes must be >= 0, got {max_body_bytes}")
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            detail = f"request body is {declared} bytes; the limit is {self.max_body_bytes} bytes"
            await _reject(detail)(scope, receive, send)
            return

        received = 0
        exceeded = False  # the body passed the limit while the app read it
        started = False  # the app's own response reached the client first
        replaced = False  # our 413 went out in place of the app's response

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started, replaced
            if exceeded and not started:
                # The app caught the cut-off and answered anyway (FastAPI turns body-read
                # failures into a 400, say); the client gets the 413 in its place.
                if not replaced:
                    replaced = True
                    await self._too_large(received)(scope, receive, send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded or started:
                raise
        if exceeded and not started and not replaced:
            await self._too_large(received)(scope, receive, send)

    def _too_large(self, received: int) -> JSONResponse:
        return _reject(
            f"request body is at least {received} bytes; the limit is {self.max_body_bytes} bytes"
        )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server rejects a malformed length; nothing to enforce here
    return None


def _reject(detail: str) -> JSONResponse:
    # Close the connection: the unread rest of the body would otherwise be read as a request.
    return JSONResponse({"detail": detail}, status_code=413, headers={"Connection": "close"})
