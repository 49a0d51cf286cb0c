"""A service-wide budget of request-body bytes: what clients send cannot fill the memory.

Each request's body is bounded (``MAX_BODY_BYTES``) and each model's queue holds a bounded
number of requests, but their product is not a bound anyone wants: 256 uploads of 8 MiB at
once are 2 GiB of bodies in memory before any is decoded. A request's body counts against
``MAX_INFLIGHT_BODY_BYTES`` from admission until it is decoded (by its declared length, or the
per-body limit when it declares none); a request beyond it is refused at once with a 503,
before a byte of its body is read.
"""

from __future__ import annotations

from starlette.requests import Request

from service.errors import ServiceUnavailable

__all__ = ["BodyBudget"]

# Retry-After when the budget is spent: bodies in flight are read and decoded in moments.
BODIES_RETRY_S = 1.0


class BodyBudget:
    def __init__(self, capacity: int, max_body_bytes: int) -> None:
        self.capacity = capacity
        self.max_body_bytes = max_body_bytes
        self.held = 0

    def take(self, request: Request) -> int:
        """Hold the request's body bytes, or refuse it (503); the bytes held, to give back."""
        size = _declared_length(request)
        size = self.max_body_bytes if size is None else min(size, self.max_body_bytes)
        if self.held and self.held + size > self.capacity:
            raise ServiceUnavailable(
                f"the service is reading {self.held} bytes of request bodies already; with "
                f"this one's {size} it would pass its limit of {self.capacity} "
                "(MAX_INFLIGHT_BODY_BYTES)",
                retry_after=BODIES_RETRY_S,
            )
        self.held += size
        return size

    def give_back(self, size: int) -> None:
        self.held -= size


def _declared_length(request: Request) -> int | None:
    try:
        return int(request.headers["content-length"])
    except (KeyError, ValueError):
        return None
