"""uvicorn's h11 connection, guarded against slow and lying clients: ``--http`` names it.

uvicorn waits as long as a client likes for a request's headers and body, and answers a
request line or header block over h11's limit by closing on data it has not read, which the
kernel turns into a TCP reset that often destroys the answer before the client reads it. So a
few hundred connections trickling headers a byte a second, or bodies shorter than their
``Content-Length``, hold the server open forever, and an oversized URL gets a reset. Here:

- the request line and headers must arrive complete within ``HEADER_TIMEOUT_S`` of the
  connection opening (or of the first byte of a later request on it): else 408, or a plain
  close if not one byte came;
- the body must arrive complete within ``BODY_TIMEOUT_S`` of the headers: else 400 saying how
  many of the declared bytes came, and the app sees the client as gone;
- a request line over the limit is answered 414, a header block over it 431 (the limit is
  h11's, ``--h11-max-incomplete-event-size``, 16 KiB by default), whatever the segmenting;
- every connection closed on an answer is closed gracefully: the answer, then end-of-stream,
  then what the client still sends is read and dropped for a moment (a lingering close), so
  that the client reads the answer instead of a reset;
- each request's scope carries a :class:`~service.disconnect.DisconnectNotice` that tells the
  app when its client goes, so that no task per request has to wait for it.

Between requests, uvicorn's own keep-alive timeout applies. The limits come from
:class:`~service.settings.Settings`, read once per process, as the app reads its own.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import h11
from h11._connection import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol
from uvicorn.server import ServerState

from service.disconnect import DISCONNECT_EXTENSION
from service.settings import Settings

__all__ = ["HTTP_PROTOCOL", "ClientDeadlines", "ClientGone", "GuardedH11Protocol"]

# What uvicorn's ``--http`` takes to serve with this protocol.
HTTP_PROTOCOL: Final = "service.connection_guard:GuardedH11Protocol"
# A lingering close reads and drops what the client still sends for at most LINGER_S, and
# closes sooner once nothing has come for LINGER_QUIET_S: then nothing unread remains that
# could make the kernel reset the connection.
LINGER_S: Final = 5.0
LINGER_QUIET_S: Final = 0.5
# The end of a header block as h11 finds it (it accepts bare LF line ends).
_HEADERS_END: Final = re.compile(rb"\n\r?\n")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientDeadlines:
    """How long a client may take to send a request's headers, then its body (seconds)."""

    header_s: float
    body_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientDeadlines:
        return cls(header_s=settings.header_timeout_s, body_s=settings.body_timeout_s)


@functools.cache
def current_deadlines() -> ClientDeadlines:
    """The deadlines the service's settings say, read once: each connection makes a protocol."""
    return ClientDeadlines.from_settings(Settings())


class GuardedH11Protocol(H11Protocol):
    """:class:`H11Protocol` with deadlines for headers and body and answers for oversize.

    It watches h11's state after each batch of events rather than re-implementing the event
    loop of :meth:`H11Protocol.handle_events`, so uvicorn's own handling stays as it is.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.deadlines = current_deadlines()
        self.max_head_bytes = (
            config.h11_max_incomplete_event_size
            if config.h11_max_incomplete_event_size is not None
            else DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
        )
        self._header_deadline: asyncio.TimerHandle | None = None
        self._body_deadline: asyncio.TimerHandle | None = None
        self._body_received = 0  # body bytes of the current request that have arrived
        self._done = False  # answered, given up on or handed over: no more HTTP here
        self._linger_until = 0.0
        self._linger: asyncio.TimerHandle | None = None
        self._client_gone: ClientGone | None = None  # the current request's notice

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn arms no timer until a first response: a connection that sends nothing, or
        # a byte now and then, would otherwise stay open for good.
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadlines()
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        super().connection_lost(exc)
        self._tell_app_if_gone()

    def data_received(self, data: bytes) -> None:
        if self._done:
            self._linger_on()
            return
        if self.conn.their_state is h11.IDLE and self._head_too_large(data):
            return
        super().data_received(data)

    # H11Protocol

    def handle_events(self) -> None:
        cycle = self.cycle
        buffered = len(cycle.body) if cycle is not None else 0
        super().handle_events()
        # The app's task cannot run within this call, so what its cycle's body grew by is
        # what arrived; a new cycle means a new request, whose body so far is all of it.
        if self.cycle is not cycle:
            self._body_received = len(self.cycle.body)
            self._client_gone = ClientGone(self.flow)
            self.cycle.scope.setdefault("extensions", {})[DISCONNECT_EXTENSION] = self._client_gone
        elif cycle is not None:
            self._body_received += len(cycle.body) - buffered
        self._update_deadlines()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        # The connection is the WebSocket protocol's from here on (should a WebSocket
        # library be installed): nothing of this one may fire on it.
        self._cancel_deadlines()
        self._done = True
        super().handle_websocket_upgrade(event)

    def send_400_response(self, msg: str) -> None:
        # h11 refused what it read (uvicorn logged it): a head over the limit that arrived
        # in pieces h11 buffered, or anything malformed.
        head, _ = self.conn.trailing_data
        if len(head) > self.max_head_bytes:
            self._refuse(*self._oversized_head(head))
        else:
            self._refuse(400, "invalid HTTP/1.1 request: its request line, headers or framing")

    # Deadlines

    def _update_deadlines(self) -> None:
        """Arm or cancel the deadlines for where the client now is in its request."""
        if self._done:
            return
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            self._cancel_header_deadline()
            if self._body_deadline is None:
                self._body_deadline = self.loop.call_later(
                    self.deadlines.body_s, self._body_too_slow
                )
        elif state is h11.IDLE:
            self._cancel_body_deadline()
            # A new request has begun (its first bytes are buffered) while none was due.
            if self._header_deadline is None and self.conn.trailing_data[0]:
                self._arm_header_deadline()
        else:  # the request is in, or the connection is over
            self._cancel_deadlines()

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        self._header_deadline = self.loop.call_later(
            self.deadlines.header_s, self._headers_too_slow
        )

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _cancel_body_deadline(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None

    def _cancel_deadlines(self) -> None:
        self._cancel_header_deadline()
        self._cancel_body_deadline()

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.conn.trailing_data[0]:
            # Not one byte of a request: an idle connection, closed without a word (as
            # browsers expect of a connection they opened ahead of need).
            self._log("closed an idle connection after %g s", self.deadlines.header_s)
            self._close_quietly()
            return
        self._refuse(
            408,
            f"the request line and headers did not arrive in full within "
            f"{self.deadlines.header_s:g} s",
        )

    def _body_too_slow(self) -> None:
        self._body_deadline = None
        cycle = self.cycle
        if self.flow.read_paused and cycle is not None and not cycle.response_started:
            # uvicorn stopped reading (64 KiB are buffered and the app has not asked for
            # more): the wait is the app's, not the client's. The clock starts again.
            self._body_deadline = self.loop.call_later(self.deadlines.body_s, self._body_too_slow)
            return
        if cycle is None or cycle.response_started:
            # The app answered before reading all of the body; uvicorn would drain the rest
            # for as long as it trickles in.
            self._close_gracefully(None)
            return
        declared = _content_length(self.headers)
        seconds = f"{self.deadlines.body_s:g} s"
        if declared is not None:
            detail = (
                f"request body incomplete: {self._body_received} of the {declared} bytes "
                f"its Content-Length declares arrived within {seconds}"
            )
        else:
            detail = (
                f"request body incomplete: {self._body_received} bytes of a chunked body "
                f"arrived within {seconds}, without its last chunk"
            )
        self._refuse(400, detail)

    # Oversized request heads

    def _head_too_large(self, data: bytes) -> bool:
        """Refuse a request line or header block over the limit, however it is segmented.

        h11 checks its limit only while a head is incomplete, so a head over it that came in
        one read would pass, and one that came in pieces would not.
        """
        buffered, _ = self.conn.trailing_data
        if len(buffered) + len(data) <= self.max_head_bytes:
            return False
        pending = buffered + data
        end = _HEADERS_END.search(pending)
        if (end.end() if end else len(pending)) <= self.max_head_bytes:
            return False
        self._refuse(*self._oversized_head(pending))
        return True

    def _oversized_head(self, head: bytes) -> tuple[int, str]:
        line_end = head.find(b"\n")
        limit = self.max_head_bytes
        if line_end < 0 or line_end > limit:
            return 414, f"the request line (method, URL and version) is over {limit} bytes"
        return 431, f"the request line and headers are over {limit} bytes"

    # Closing

    def _refuse(self, status: int, detail: str) -> None:
        """Answer ``status`` with ``{"detail": detail}``, then close gracefully."""
        self._log("answered %d and closed: %s", status, detail)
        body = json.dumps({"detail": detail}).encode()
        headers = [
            *self.server_state.default_headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        head = b"".join(
            [
                b"HTTP/1.1 %d %s\r\n" % (status, STATUS_PHRASES[status]),
                *(b"%s: %s\r\n" % (name, value) for name, value in headers),
                b"\r\n",
            ]
        )
        self._close_gracefully(head + body)

    def _close_gracefully(self, answer: bytes | None) -> None:
        """Send ``answer``, end the stream, and drop what still comes until the client stops.

        The answer is written past h11 (which cannot answer a request it has not parsed), so
        the connection is over for h11 too: nothing more is fed to it.
        """
        self._stop_request()
        if self.transport.is_closing():
            return
        if answer:
            self.transport.write(answer)
        if not self.transport.can_write_eof():  # TLS: no half-close; close() flushes
            self.transport.close()
            return
        self.transport.write_eof()  # after what is buffered has gone
        self.flow.resume_reading()
        self._linger_until = self.loop.time() + LINGER_S
        self._linger_on()

    def _close_quietly(self) -> None:
        self._stop_request()
        if not self.transport.is_closing():
            self.transport.close()

    def _stop_request(self) -> None:
        """No more deadlines, keep-alive or data for this connection; the app's request ends."""
        self._done = True
        self._cancel_deadlines()
        self._unset_keepalive_if_required()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The app's next receive() says the client is gone, and its answer goes nowhere.
            cycle.disconnected = True
            cycle.message_event.set()
            self._tell_app_if_gone()

    def _tell_app_if_gone(self) -> None:
        """The current request's notice, if its client is gone before its answer was sent."""
        if self._client_gone is not None and self.cycle is not None and self.cycle.disconnected:
            self._client_gone.fire()

    def _linger_on(self) -> None:
        """(Re)schedule the end of a lingering close: quiet for a while, or time is up."""
        if self._linger is not None:
            self._linger.cancel()
        at = min(self.loop.time() + LINGER_QUIET_S, self._linger_until)
        self._linger = self.loop.call_at(at, self.transport.close)

    def _log(self, message: str, *args: object) -> None:
        client = "%s:%d" % self.client if self.client else "a client"  # noqa: UP031
        logger.info("%s: " + message, client, *args)


class ClientGone:
    """One request's :class:`~service.disconnect.DisconnectNotice`: calls the app's callback
    once the connection is lost or given up on before the request was answered."""

    __slots__ = ("_callback", "_flow", "gone")

    def __init__(self, flow: FlowControl) -> None:
        self._flow = flow
        self._callback: Callable[[], None] | None = None
        self.gone = False

    def watch(self, callback: Callable[[], None] | None) -> bool:
        self._callback = callback
        if callback is not None:
            # As uvicorn's receive() does before it waits: a connection whose reading was
            # paused (a pipelined request behind this one) would not show its end.
            self._flow.resume_reading()
        return self.gone

    def fire(self) -> None:
        self.gone = True
        callback, self._callback = self._callback, None
        if callback is not None:
            callback()


def _content_length(headers: list[tuple[bytes, bytes]] | None) -> int | None:
    for name, value in headers or []:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
