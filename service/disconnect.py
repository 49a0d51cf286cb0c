"""Stop working for a client that has gone: cancel its request's decoding and queueing.

Starlette does not notice a client that leaves while its request is being worked on: the
handler runs on, decodes images and spends a model pass on an answer nobody reads (the issue
that asked for this saw requests run for minutes after their clients left). Once a request's
body has been read, its connection's next ASGI message can only be ``http.disconnect``, so a
watcher waiting for it can cancel the work as soon as the client goes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.requests import Request

__all__ = ["ClientDisconnected", "cancelled_on_disconnect"]


class ClientDisconnected(Exception):
    """The client closed its connection before its answer was ready; the work was dropped."""


@contextlib.asynccontextmanager
async def cancelled_on_disconnect(request: Request) -> AsyncIterator[None]:
    """Run the block; if the client disconnects meanwhile, cancel it and raise
    :class:`ClientDisconnected`. Enter only after the whole body has been read."""
    task = asyncio.current_task()
    assert task is not None
    gone = asyncio.Event()

    async def watch() -> None:
        try:
            message = await request.receive()
        except Exception:  # a receive that gave up (say, a read deadline): nothing to learn
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
        raise ClientDisconnected("the client disconnected before its answer was ready") from None
    finally:
        watcher.cancel()
