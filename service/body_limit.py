"""Answer 413 to a body over the configured limit before the app buffers all of it."""

from __future__ import annotations

from typing import Final

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import InputError
from service.protocol import error_body

__all__ = ["DEFAULT_MAX_BODY_BYTES", "BodySizeLimitMiddleware"]

DEFAULT_MAX_BODY_BYTES: Final = 8 * 1024 * 1024


class _BodyTooLarge(Exception):
    """Raised from ``receive`` to stop the app reading a body that has passed the limit."""


class BodySizeLimitMiddleware:
    """Answer 413 to a body over ``max_body_bytes`` before the app buffers all of it.

    A declared ``Content-Length`` over the limit is refused without reading a byte, one within
    it passes untouched; a chunked body is counted as it is read and cut off once it passes
    the limit. Pure ASGI rather than ``BaseHTTPMiddleware`` so that the body streams through
    untouched.
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
        if declared is not None:
            if declared > self.max_body_bytes:
                detail = (
                    f"request body is {declared} bytes; the limit is {self.max_body_bytes} bytes"
                )
                await _reject(scope, detail)(scope, receive, send)
            else:
                # The server frames the body by its declared length (HTTP/1.1 and 2 both
                # require it): no more can arrive, and nothing need be counted.
                await self.app(scope, receive, send)
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
                    await self._too_large(scope, received)(scope, receive, send)
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
            await self._too_large(scope, received)(scope, receive, send)

    def _too_large(self, scope: Scope, received: int) -> JSONResponse:
        return _reject(
            scope,
            f"request body is at least {received} bytes; the limit is {self.max_body_bytes} bytes",
        )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server rejects a malformed length; nothing to enforce here
    return None


def _reject(scope: Scope, detail: str) -> JSONResponse:
    """The 413, in the error shape of the route family the request was for."""
    error = InputError.too_large(detail)
    body = error_body(scope["path"], detail)
    return JSONResponse(body, error.status_code, headers=error.headers)
