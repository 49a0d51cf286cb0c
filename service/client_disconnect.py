"""A client gone before its request was read in full is the client's doing: 499, not 500.

Starlette's ``request.body()`` raises :class:`~starlette.requests.ClientDisconnect` when the
server says the client is gone: it closed the connection mid-body, or the connection guard
(:mod:`service.connection_guard`) gave up on a body that did not arrive in time and answered
the client 400 itself. Unhandled, that would be logged as a crash and counted as a 500. 499 is
nginx's "client closed request": the access log and the metrics count it as the client's; the
answer itself goes nowhere, as there is no one left to read it.
"""

from __future__ import annotations

from typing import Final

from fastapi import Request, Response

__all__ = ["CLIENT_CLOSED_REQUEST", "client_disconnected"]

CLIENT_CLOSED_REQUEST: Final = 499


async def client_disconnected(request: Request, exc: Exception) -> Response:
    """The exception handler for ``ClientDisconnect``."""
    return Response(status_code=CLIENT_CLOSED_REQUEST)
