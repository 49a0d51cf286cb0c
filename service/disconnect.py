"""A client that has gone: its work is dropped, and its request is counted as its doing (499).

Starlette does not notice a client that leaves while its request is being worked on: the
handler runs on, decodes images and spends a model pass on an answer nobody reads (the issue
that asked for this saw requests run for minutes after their clients left). Once a request's
body has been read, its connection's next ASGI message can only be ``http.disconnect``, so a
watcher waiting for it can cancel the work as soon as the client goes
(:func:`cancelled_on_disconnect`).

Either way the request ends in Starlette's :class:`~starlette.requests.ClientDisconnect`: from
``request.body()`` when the client closed the connection mid-body, or the connection guard
(:mod:`service.connection_guard`) gave up on a body that did not arrive in time and answered
the client 400 itself; or from the watcher. Unhandled, that would be logged as a crash and
counted as a 500. 499 is nginx's "client closed request": the access log and the metrics count
it as the client's; the answer itself goes nowhere, as there is no one left to read it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

from fastapi import Request, Response
from starlette.requests import ClientDisconnect

__all__ = ["CLIENT_CLOSED_REQUEST", "cancelled_on_disconnect", "client_disconnected"]

CLIENT_CLOSED_REQUEST: Final = 499


async def client_disconnected(request: Request, exc: Exception) -> Response:
    """The app's exception handler for ``ClientDisconnect``."""
    return Response(status_code=CLIENT_CLOSED_REQUEST)


@contextlib.asynccontextmanager
async def cancelled_on_disconnect(request: Request) -> AsyncIterator[None]:
    """Run the block; if the client disconnects meanwhile, cancel it and raise
    ``ClientDisconnect``. Enter only after the whole body has been read."""
    task = asyncio.current_task()
    assert task is not None
    gone = asyncio.Event()

    async def watch() -> None:
        try:
            message = await request.receive()
        except Exception:  # a receive that gave up: nothing more to learn
            return
        if message["type"] == "http.disconnect":
            gone.set()
            task.cancel()

    watcher = asyncio.create_task(watch(), name="disconnect-watcher")
    try:
        yield
    except asyncio.CancelledError:
        if not gone.is_set():
            raise
        task.uncancel()  # our cancel, answered: the task itself goes on
        raise ClientDisconnect("the client disconnected before its answer was ready") from None
    finally:
        watcher.cancel()
