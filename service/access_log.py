"""One log line and one metrics sample per request, with a request id.

A plain ASGI middleware (not ``BaseHTTPMiddleware``): it adds no task or
stream copy to the hot path.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import ServiceMetrics

REQUEST_ID_HEADER = "x-request-id"
logger = logging.getLogger("service.access")
# Request ids: a random prefix per process and a counter, unique without a uuid per request.
_ID_PREFIX = os.urandom(4).hex()
_ids = itertools.count(1)


class AccessLogMiddleware:
    def __init__(
        self, app: ASGIApp, metrics: ServiceMetrics, route_paths: Callable[[], set[str]]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.route_paths = route_paths

    def _route_label(self, scope: Scope) -> str:
        """The route template, not the raw path, so label values stay few.

        A request answered before routing (a 413 from the body limit) has no route in its
        scope; its path still names a route when it is one of the app's.
        """
        route = scope.get("route")
        if route is not None:
            return getattr(route, "path", "unmatched")
        return scope["path"] if scope["path"] in self.route_paths() else "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _header(scope, REQUEST_ID_HEADER) or f"{_ID_PREFIX}-{next(_ids):x}"
        status = 500  # what the client gets if the app dies before answering
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            self.metrics.observe_request(scope["method"], self._route_label(scope), status, seconds)
            logger.info(
                "%s %s %s %d %.1fms",
                request_id,
                scope["method"],
                scope["path"],
                status,
                seconds * 1000,
            )


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.encode()
    for key, value in scope.get("headers", []):
        if key.lower() == wanted:
            return value.decode("latin-1")[:64]
    return None
