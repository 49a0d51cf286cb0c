"""A client that has gone: its work is dropped, and its request is counted as its doing (499).

Starlette does not notice a client that leaves while its request is being worked on: the
handler runs on, decodes images and spends a model pass on an answer nobody reads (the issue
that asked for this saw requests run for minutes after their clients left). So the work is
cancelled as soon as the client goes (:func:`cancelled_on_disconnect`). The service's own HTTP
protocol (:mod:`service.connection_guard`) says so through a :class:`DisconnectNotice` in the
request's scope. Under any other server, a task per request waits for the connection's next
ASGI message, which, once the body has been read, can only be ``http.disconnect``; that task
cost 6 % of the wine route's throughput at c=32 on this project's CPU.

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
from collections.abc import AsyncIterator, Callable
from typing import Final, Protocol

from fastapi import Request, Response
from starlette.requests import ClientDisconnect

__all__ = [
    "CLIENT_CLOSED_REQUEST",
    "DISCONNECT_EXTENSION",
    "WATCHER_NAME",
    "DisconnectNotice",
    "cancelled_on_disconnect",
    "client_disconnected",
]

CLIENT_CLOSED_REQUEST: Final = 499
# The key of a DisconnectNotice in a request's ``scope["extensions"]``.
DISCONNECT_EXTENSION: Final = "service.disconnect"
_GONE: Final = "the client disconnected before its answer was ready"
# The name of the task that waits on ``receive`` under a server that tells nothing.
WATCHER_NAME: Final = "disconnect-watcher"


class DisconnectNotice(Protocol):
    """What a server puts in a request's scope to call the app back when the client goes."""

    def watch(self, callback: Callable[[], None] | None) -> bool:
        """Call ``callback`` when the client goes (None: no more calls); whether it has gone
        already, in which case no call comes."""


async def client_disconnected(request: Request, exc: Exception) -> Response:
    """The app's exception handler for ``ClientDisconnect``."""
    return Response(status_code=CLIENT_CLOSED_REQUEST)


@contextlib.asynccontextmanager
async def cancelled_on_disconnect(request: Request) -> AsyncIterator[None]:
    """Run the block; if the client disconnects meanwhile, cancel it and raise
    ``ClientDisconnect``. Enter only after the whole body has been read."""
    task = asyncio.current_task()
    assert task is not None
    cancel = _Cancel(task)
    notice: DisconnectNotice | None = request.scope.get("extensions", {}).get(DISCONNECT_EXTENSION)
    if notice is not None:
        if notice.watch(cancel):
            raise ClientDisconnect(_GONE)
    else:
        watcher = asyncio.create_task(_watch(request, cancel), name=WATCHER_NAME)
    try:
        yield
    except asyncio.CancelledError:
        if not cancel.fired:
            raise
        task.uncancel()  # our cancel, answered: the task itself goes on
        raise ClientDisconnect(_GONE) from None
    finally:
        if notice is not None:
            notice.watch(None)
        else:
            watcher.cancel()


class _Cancel:
    """Cancels a request's task when its client goes, and remembers that it did."""

    __slots__ = ("fired", "task")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        self.fired = False

    def __call__(self) -> None:
        self.fired = True
        self.task.cancel()


async def _watch(request: Request, client_gone: Callable[[], None]) -> None:
    try:
        message = await request.receive()
    except Exception:  # a receive that gave up: nothing more to learn
        return
    if message["type"] == "http.disconnect":
        client_gone()
