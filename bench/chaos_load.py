"""The hostile-load suite's client side: send, time and classify what came back.

Every request ends as one :class:`Answer`: an HTTP status, or no HTTP answer at all, which is
either a refused connection (nothing was accepted), a client timeout (the server held on to
the request past the scenario's bound), or a *dropped* connection: it was accepted and then
closed or reset without an answer. :class:`Client` sends the ordinary requests over
keep-alive connections; lying and slow clients, and requests whose bytes must be on the wire
at a known moment, use raw sockets of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bench.memory import read as read_memory
from service.live_server import HOST, LiveServer
from service.settings import Settings

__all__ = [
    "Answer",
    "Client",
    "RawAnswer",
    "Tally",
    "drive",
    "multipart",
    "peak_rss",
    "raw_exchange",
    "serve",
    "server_settings",
]

ROOT: Final = Path(__file__).resolve().parents[1]
CHECKPOINTS: Final = ROOT / "checkpoints"
BOUNDARY: Final = "chaos-boundary-5be0d7"
DROPPED: Final = "dropped"
TIMEOUT: Final = "timeout"
REFUSED: Final = "refused"
DETAIL_CHARS: Final = 240


@dataclass(frozen=True)
class Answer:
    """One request's outcome; ``at`` and ``seconds`` are from the phase's start and its send."""

    status: int | None  # None: no HTTP answer (``failure`` says which kind)
    seconds: float
    at: float
    failure: str = ""
    retry_after: str | None = None
    tag: str = ""  # which kind of request this was, e.g. "normal" or "poisoned"
    detail: str = ""  # the start of an error answer's body: what the server said was wrong


@dataclass
class Tally:
    """The answers of one phase, counted the way the CHAOS.md table shows them."""

    answers: list[Answer] = field(default_factory=list)

    def add(self, answers: Sequence[Answer]) -> None:
        self.answers.extend(answers)

    def of(self, tag: str) -> Tally:
        return Tally([a for a in self.answers if a.tag == tag])

    @property
    def sent(self) -> int:
        return len(self.answers)

    @property
    def statuses(self) -> Counter[int]:
        return Counter(a.status for a in self.answers if a.status is not None)

    def failures(self, kind: str) -> int:
        return sum(1 for a in self.answers if a.failure == kind)

    @property
    def dropped(self) -> int:
        return self.failures(DROPPED)

    @property
    def unanswered(self) -> int:
        """Dropped, timed out or refused: every request without an HTTP answer."""
        return sum(1 for a in self.answers if a.status is None)

    @property
    def missing_retry_after(self) -> int:
        """503s without a ``Retry-After`` header (a client cannot know when to come back)."""
        return sum(1 for a in self.answers if a.status == 503 and not a.retry_after)

    def first(self, status: int) -> float | None:
        """Seconds from the phase's start to the first answer with ``status``."""
        times = [a.at for a in self.answers if a.status == status]
        return min(times) if times else None

    def latencies(self, status: int | None = None) -> list[float]:
        return sorted(a.seconds for a in self.answers if status is None or a.status == status)

    def describe_statuses(self) -> str:
        """``200×950, 503×50``, then what got no answer, if anything."""
        parts = [f"{code}×{n}" for code, n in sorted(self.statuses.items())]
        for kind in (DROPPED, TIMEOUT, REFUSED):
            if n := self.failures(kind):
                parts.append(f"{kind}×{n}")
        return ", ".join(parts) or "none"


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0-100) of sorted ``values``; NaN for none."""
    if not values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(values)))
    return values[rank - 1]


def ms(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "-"
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


class _NoAnswer(Exception):
    """The connection ended before a whole HTTP answer came."""


class _Connection:
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.open = True

    async def exchange(self, head: bytes, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """Send one request; read its whole answer: the status, headers and body."""
        self.writer.write(head)
        if body:
            self.writer.write(body)
        await self.writer.drain()
        try:
            raw = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raise _NoAnswer("closed before an answer") from exc
        status = status_of(raw)
        if status is None:
            raise _NoAnswer(f"not an HTTP answer: {raw[:80]!r}")
        headers = _headers(raw)
        if "content-length" in headers:
            content = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                chunks.append((await self.reader.readexactly(size + 2))[:-2])
            await self.reader.readuntil(b"\r\n")
            content = b"".join(chunks)
        else:
            content = await self.reader.read()  # until the server closes
            self.open = False
        if headers.get("connection", "").lower() == "close":
            self.open = False
        return status, headers, content

    def close(self) -> None:
        self.open = False
        self.writer.transport.abort()


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    pairs = (line.partition(":") for line in lines if line)
    return {key.strip().lower(): value.strip() for key, _, value in pairs}


class Client:
    """A pool of keep-alive connections to one port: a connection per concurrent request.

    httpx spends milliseconds of CPU per request once it holds hundreds of connections (its
    pool is scanned on every request), which on two cores would measure the client, not the
    server; this one spends tens of microseconds.
    """

    def __init__(self, port: int, *, timeout_s: float) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for connection in self._all:
            connection.close()

    async def post(
        self,
        path: str,
        body: bytes,
        *,
        start: float,
        content_type: str = "application/json",
        tag: str = "",
    ) -> Answer:
        """POST ``body`` to ``path`` and read the whole answer, within the client's bound."""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        sent = time.perf_counter()
        connection: _Connection | None = None
        failure = ""
        try:
            async with asyncio.timeout(self.timeout_s):
                connection = await self._connection()
                status, headers, content = await connection.exchange(head, body)
        except TimeoutError:
            failure = TIMEOUT
        except ConnectionRefusedError:
            failure = REFUSED
        except (_NoAnswer, OSError, asyncio.IncompleteReadError):
            failure = DROPPED
        now = time.perf_counter()
        if failure:
            if connection is not None:
                self._forget(connection)
            return Answer(None, now - sent, now - start, failure, tag=tag)
        assert connection is not None
        if connection.open:
            self._idle.append(connection)
        else:
            self._forget(connection)
        return Answer(
            status,
            now - sent,
            now - start,
            retry_after=headers.get("retry-after"),
            tag=tag,
            detail=content[:DETAIL_CHARS].decode(errors="replace") if status >= 400 else "",
        )

    async def _connection(self) -> _Connection:
        if self._idle:
            return self._idle.pop()
        reader, writer = await asyncio.open_connection(HOST, self.port, limit=2**20)
        connection = _Connection(reader, writer)
        self._all.add(connection)
        return connection

    def _forget(self, connection: _Connection) -> None:
        connection.close()
        self._all.discard(connection)


async def drive(
    count: int,
    concurrency: int,
    request: Callable[[int], Awaitable[Answer]],
    *,
    budget_s: float,
) -> list[Answer]:
    """``request(i)`` for i < ``count``, ``concurrency`` at a time, each sent as soon as a
    slot frees (closed loop); none is started once ``budget_s`` has passed."""
    stop_at = time.perf_counter() + budget_s
    counter = iter(range(count))
    answers: list[Answer] = []

    async def worker() -> None:
        for i in counter:
            if time.perf_counter() > stop_at:
                return
            answers.append(await request(i))

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return answers


@dataclass(frozen=True)
class RawAnswer:
    """What a raw-socket client read: the status (None: nothing parseable) and when."""

    status: int | None
    closed_after: float | None  # seconds from connecting to the server's end of stream
    data: bytes
    failure: str = ""


def status_of(data: bytes) -> int | None:
    """The status code of an HTTP/1.x answer's first line, if ``data`` starts with one."""
    line = data.split(b"\r\n", 1)[0].split()
    if len(line) >= 2 and line[0].startswith(b"HTTP/") and line[1].isdigit():
        return int(line[1])
    return None


def header_of(data: bytes, name: str) -> str | None:
    """Header ``name`` of the HTTP answer that ``data`` starts with."""
    return _headers(data.split(b"\r\n\r\n", 1)[0]).get(name.lower())


async def read_all(reader: asyncio.StreamReader, opened: float, bound_s: float) -> RawAnswer:
    """Read until the server ends the stream, or ``bound_s`` from ``opened`` has passed."""
    data = b""
    try:
        async with asyncio.timeout_at(asyncio.get_running_loop().time() + bound_s):
            while chunk := await reader.read(65536):
                data += chunk
    except TimeoutError:
        return RawAnswer(status_of(data), None, data, "" if data else TIMEOUT)
    except OSError:  # reset
        return RawAnswer(status_of(data), time.perf_counter() - opened, data, DROPPED)
    failure = "" if status_of(data) is not None else DROPPED
    return RawAnswer(status_of(data), time.perf_counter() - opened, data, failure)


async def raw_exchange(
    port: int,
    request: bytes,
    *,
    bound_s: float,
    written: Callable[[], None] | None = None,
) -> RawAnswer:
    """Write ``request`` at once and read what comes back until the server closes; call
    ``written`` once the request has been handed to the kernel (or could not be)."""
    opened = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError:
        if written is not None:
            written()
        return RawAnswer(None, None, b"", REFUSED)
    try:
        try:
            writer.write(request)
            await writer.drain()
        finally:
            if written is not None:
                written()
        return await read_all(reader, opened, bound_s)
    except OSError:
        return RawAnswer(None, time.perf_counter() - opened, b"", DROPPED)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def unread_by_server(port: int) -> int | None:
    """Connections to ``port`` on this machine whose request the server has not read yet:
    those waiting in its listening socket's accept queue, and accepted ones with bytes in
    their receive queue (Linux's ``/proc/net/tcp``; None where there is none)."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    unread = 0
    for line in lines:
        fields = line.split()
        local, state, queues = fields[1], fields[3], fields[4]
        if int(local.rsplit(":", 1)[1], 16) != port:
            continue
        received = int(queues.split(":")[1], 16)
        if state == _TCP_LISTEN:
            unread += received  # a listening socket's rx_queue: its accept queue's length
        elif received:
            unread += 1
    return unread


_TCP_LISTEN: Final = "0A"


def http_request(
    path: str, body: bytes, *, content_type: str = "application/json", close: bool = True
) -> bytes:
    """An HTTP/1.1 POST as bytes, for raw-socket clients."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    )
    return head.encode() + body


def multipart(files: Sequence[tuple[str, bytes]], media_type: str) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with one ``files`` part per ``(filename, bytes)``."""
    parts = [
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{name}"\r\nContent-Type: {media_type}\r\n\r\n'
        ).encode()
        + data
        + b"\r\n"
        for name, data in files
    ]
    body = b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
    return body, f"multipart/form-data; boundary={BOUNDARY}"


def service_env(models: Sequence[str], **extra: str) -> dict[str, str]:
    """The committed checkpoints, ``models`` of them, on the CPU, plus ``extra`` settings."""
    return {
        "MODEL_REPOSITORY": str(CHECKPOINTS),
        "MODELS": json.dumps(list(models)),
        "DEVICE": "cpu",
        "LOG_LEVEL": "warning",
        **extra,
    }


@contextlib.contextmanager
def serve(env: Mapping[str, str]) -> Iterator[LiveServer]:
    """The service as ``make serve`` starts it (:class:`LiveServer`), on 127.0.0.1."""
    with LiveServer(env, cwd=ROOT) as live:
        yield live


def pid_of(live: LiveServer) -> int:
    assert live.process is not None
    return live.process.pid


def peak_rss(live: LiveServer) -> int:
    """The server's resident-set high-water mark so far (VmHWM), bytes."""
    return read_memory(pid_of(live)).peak_bytes


def server_settings(env: Mapping[str, str]) -> Settings:
    """The settings a server started with ``env`` reads (the same class, the same sources)."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)
