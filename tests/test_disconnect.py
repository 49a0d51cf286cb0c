"""``cancelled_on_disconnect``: told by the connection (``ClientGone`` in the scope, as the
service's own protocol puts it there), or watching ``receive`` under any other server.

The live server's side is in ``test_slow_clients.py``: a client that leaves while its request
waits costs no model pass.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import ClientDisconnect, Request

from service.connection_guard import ClientGone
from service.disconnect import DISCONNECT_EXTENSION, WATCHER_NAME, cancelled_on_disconnect

# Only there so that a broken watch fails the test instead of hanging it.
HANG_GUARD_S = 10.0


class Flow:
    """The connection's flow control, as far as a notice uses it."""

    def __init__(self) -> None:
        self.resumed = 0

    def resume_reading(self) -> None:
        self.resumed += 1


def request(notice: ClientGone | None = None, gone: asyncio.Event | None = None) -> Request:
    """A request whose body has been read: its next message is a disconnect, once ``gone``."""
    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/", "headers": []}
    if notice is not None:
        scope["extensions"] = {DISCONNECT_EXTENSION: notice}

    async def receive() -> dict[str, Any]:
        assert gone is not None, "the app waited on receive() though the connection tells it"
        await gone.wait()
        return {"type": "http.disconnect"}

    return Request(scope, receive)


def run(coroutine: Any) -> Any:
    async def guarded() -> Any:
        return await asyncio.wait_for(coroutine, HANG_GUARD_S)

    return asyncio.run(guarded())


def test_the_connection_telling_cancels_the_block_and_the_task_goes_on() -> None:
    flow = Flow()
    notice = ClientGone(flow)  # type: ignore[arg-type]

    async def scenario() -> str:
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, notice.fire)  # the connection is lost meanwhile
        with pytest.raises(ClientDisconnect):
            async with cancelled_on_disconnect(request(notice)):
                await asyncio.sleep(HANG_GUARD_S)
        await asyncio.sleep(0)  # not cancelled: the answer (a 499) can still be sent
        return "went on"

    assert run(scenario()) == "went on"
    assert flow.resumed == 1  # reading resumed, so that the connection's end is seen


def test_a_client_gone_before_the_block_is_refused_at_once() -> None:
    notice = ClientGone(Flow())  # type: ignore[arg-type]
    notice.fire()
    entered = False

    async def scenario() -> None:
        nonlocal entered
        with pytest.raises(ClientDisconnect):
            async with cancelled_on_disconnect(request(notice)):
                entered = True
        await asyncio.sleep(0)  # no cancellation left pending on the task

    run(scenario())
    assert not entered


def test_after_the_block_the_connection_calls_nothing() -> None:
    notice = ClientGone(Flow())  # type: ignore[arg-type]

    async def scenario() -> str:
        async with cancelled_on_disconnect(request(notice)):
            await asyncio.sleep(0)
        notice.fire()  # the client leaves after its answer was made
        await asyncio.sleep(0.01)
        return "answered"

    assert run(scenario()) == "answered"


def watchers() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == WATCHER_NAME and not t.done()]


def test_under_another_server_a_watcher_reads_the_disconnect() -> None:
    async def scenario() -> list[asyncio.Task[Any]]:
        gone = asyncio.Event()
        asyncio.get_running_loop().call_later(0.01, gone.set)
        with pytest.raises(ClientDisconnect):
            async with cancelled_on_disconnect(request(gone=gone)):
                assert len(watchers()) == 1
                await asyncio.sleep(HANG_GUARD_S)
        await asyncio.sleep(0)
        return watchers()

    assert run(scenario()) == []  # the watcher is gone with the block


def test_under_another_server_a_block_that_ends_stops_its_watcher() -> None:
    async def scenario() -> list[asyncio.Task[Any]]:
        async with cancelled_on_disconnect(request(gone=asyncio.Event())):
            assert len(watchers()) == 1
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        return watchers()

    assert run(scenario()) == []
