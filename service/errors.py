"""The one family of errors the HTTP layer raises: each carries its status, detail and headers.

Every class is an ``HTTPException``, so FastAPI's own handler renders each as
``{"detail": ...}`` with its headers, and nothing else needs registering. Every client mistake
becomes a 4xx with a message that says what was expected and what was got; a 503 also says when
to come back. Query-parameter errors keep FastAPI's own 422 shape, which ours follows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

from fastapi import HTTPException

__all__ = [
    "DeadlineExceeded",
    "ErrorEntry",
    "InputError",
    "ModelNotFound",
    "ServiceError",
    "ServiceUnavailable",
    "error_entry",
]

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


class ServiceError(HTTPException):
    """A request the service answers with an error instead of a result.

    ``status_code``, ``detail`` and ``headers`` are what the client gets; the request was not
    run (a 503 or 504 says so explicitly, so that a client may safely retry).
    """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code!r}, detail={self.detail!r})"


class InputError(ServiceError):
    """A request the service will not run: bad body (422), too large (413), wrong type (415).

    ``detail`` is a message, or for 422 a list of FastAPI-shaped entries whose ``loc`` names
    the offending field and index, so clients parse both kinds of 422 the same way.
    """

    def __init__(
        self,
        status_code: int,
        detail: str | list[ErrorEntry],
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code, detail, headers)

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
        """413: the body or one uploaded file is over its configured limit.

        The connection is closed: the unread rest of the body would otherwise be read as the
        next request.
        """
        return cls(413, detail, {"Connection": "close"})

    @classmethod
    def unsupported_media_type(cls, detail: str) -> InputError:
        """415: a Content-Type the route does not take, or bytes that are not an image."""
        return cls(415, detail)


class ModelNotFound(ServiceError):
    """404: no model of that name is served; the message lists those that are."""

    def __init__(self, name: str, served: Sequence[str]) -> None:
        listing = ", ".join(served) if served else "none"
        super().__init__(404, f"no model named {name!r} is served; the models are: {listing}")


class ServiceUnavailable(ServiceError):
    """503: the model is not loaded yet or its queue is full; the request was not processed."""

    def __init__(self, reason: str, *, retry_after: float = 1.0) -> None:
        super().__init__(503, reason, {"Retry-After": _retry_after_header(retry_after)})
        self.retry_after = retry_after


class DeadlineExceeded(ServiceError):
    """504: the request waited past the configured deadline and was not processed."""

    def __init__(
        self, detail: str = "the request waited longer than the deadline and was not processed"
    ) -> None:
        super().__init__(504, detail)


def _retry_after_header(seconds: float) -> str:
    """``Retry-After`` takes whole seconds: round up, never below 1 (nor for NaN/inf)."""
    if not math.isfinite(seconds) or seconds < 1:
        return "1"
    return str(math.ceil(seconds))
