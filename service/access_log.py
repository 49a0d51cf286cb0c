"""One log line and one metrics sample per request, with a request id.

Where a model runs elsewhere (:mod:`service.ray_app`), the replica that answered is named in
the ``X-Replica`` header and at the end of the line (:func:`service.backend.record_replica`).

A plain ASGI middleware (not ``BaseHTTPMiddleware``): it adds no task or
stream copy to the hot path.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from collections.abc import Callable, Iterable

from starlette.requests import Request
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.backend import recording_replicas
from service.metrics import ServiceMetrics

REQUEST_ID_HEADER = "x-request-id"
REPLICA_HEADER = "x-replica"
logger = logging.getLogger("service.access")
# Request ids: a random prefix per process and a counter, unique without a uuid per request.
_ID_PREFIX = os.urandom(4).hex()
_ids = itertools.count(1)
# A client's own X-Request-Id is kept only if it is this tame: it goes into headers and logs,
# where bytes like ``\xff\xfe<script>`` or a newline have no business.
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,64}")
_STATE_KEY = "request_id"


def request_id_of(request: Request) -> str:
    """The id the access log gives this request (the client's X-Request-Id, if tame)."""
    return request.scope.get("state", {}).get(_STATE_KEY, "")


class AccessLogMiddleware:
    def __init__(
        self, app: ASGIApp, metrics: ServiceMetrics, route_templates: Callable[[], Iterable[str]]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.route_templates = route_templates
        self._patterns: list[tuple[str, re.Pattern[str]]] | None = None

    def _route_label(self, scope: Scope) -> str:
        """The route template, not the raw path, so label values stay few.

        A request answered before routing (a 413 from the body limit) has no route in its
        scope; the app's route templates, in routing order, say which it would have reached.
        """
        route = scope.get("route")
        if route is not None:
            return getattr(route, "path", "unmatched")
        if self._patterns is None:
            self._patterns = [(t, compile_path(t)[0]) for t in self.route_templates()]
        for template, pattern in self._patterns:
            if pattern.match(scope["path"]):
                return template
        return "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, REQUEST_ID_HEADER)
        request_id = given if given and _CLIENT_ID.fullmatch(given) else None
        request_id = request_id or f"{_ID_PREFIX}-{next(_ids):x}"
        scope.setdefault("state", {})[_STATE_KEY] = request_id
        status = 500  # what the client gets if the app dies before answering
        start = time.perf_counter()
        replicas: list[str] = []

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                if replicas:
                    headers.append((REPLICA_HEADER.encode(), ",".join(replicas).encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            with recording_replicas() as replicas:
                await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            self.metrics.observe_request(scope["method"], self._route_label(scope), status, seconds)
            logger.info(
                "%s %s %s %d %.1fms%s",
                request_id,
                scope["method"],
                scope["path"],
                status,
                seconds * 1000,
                f" replica={','.join(replicas)}" if replicas else "",
            )


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.encode()
    for key, value in scope.get("headers", []):
        if key.lower() == wanted:
            return value.decode("latin-1")
    return None
