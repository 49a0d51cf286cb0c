"""Slow and lying clients against the real server (``service.connection_guard``), raw sockets.

Each test plays a client that HTTP libraries will not: headers a byte at a time, a body
shorter or longer than its ``Content-Length``, a megabyte of URL. The server must answer each
with a 4xx it can read (never a 500, never a reset) and close it after the configured time,
while ordinary requests, keep-alive and pipelining included, go on being answered.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.connection_guard import HTTP_PROTOCOL
from service.live_server import HOST, LiveServer, default_command
from training.datasets.wine import WINE_FEATURES

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Short deadlines, so that waiting them out keeps the file quick.
HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 2.0
# A bound on any one socket operation, so that a server that never answers fails the test
# instead of hanging it; not a speed check.
IO_BOUND_S = 30.0
# h11's default limit on a request line with its headers (uvicorn's
# --h11-max-incomplete-event-size), which the command line leaves as it is.
MAX_HEAD_BYTES = 16 * 1024
# uvloop keeps its clock in whole milliseconds (libuv's), so a deadline can fire up to a
# millisecond before the client's own high-resolution clock says it is due.
TIMER_GRANULARITY_S = 0.002
SLOW_CLIENTS = 300
TRICKLE_EVERY_S = 0.25

ROW = [7.0, 0.27, 0.36, 20.7, 0.045, 45.0, 170.0, 1.001, 3.0, 0.45, 8.8]
WINE_BODY = json.dumps({"instances": [ROW]}).encode()


@pytest.fixture(scope="module")
def server(checkpoint_dir: Path) -> Iterator[LiveServer]:
    env = {
        "MODEL_REPOSITORY": str(checkpoint_dir),
        "MODELS": '["wine-bnn"]',
        "HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "LOG_LEVEL": "warning",
    }
    with LiveServer(env, cwd=PROJECT_ROOT) as live:
        yield live


def test_every_start_command_serves_with_the_guard() -> None:
    # The image's start command is checked in test_docker.py.
    command = default_command(8000)
    assert command[command.index("--http") + 1] == HTTP_PROTOCOL
    serve = (PROJECT_ROOT / "Makefile").read_text().partition("\nserve:")[2].partition("\n\n")[0]
    assert f"--http {HTTP_PROTOCOL}" in serve


# ---------------------------------------------------------------------------------------------
# A client that speaks HTTP/1.1 by hand.


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def detail(self) -> str:
        assert self.headers.get("content-type") == "application/json", self.headers
        return json.loads(self.body)["detail"]


@dataclass
class Client:
    """One connection; responses are read from a buffer kept across them (pipelining)."""

    sock: socket.socket
    buffer: bytes = b""
    opened: float = field(default_factory=time.monotonic)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def fill(self) -> bool:
        data = self.sock.recv(65536)  # a reset raises ConnectionResetError: a failure
        self.buffer += data
        return bool(data)

    def response(self) -> Response:
        while b"\r\n\r\n" not in self.buffer:
            assert self.fill(), f"connection closed before a response; got {self.buffer!r}"
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            assert self.fill(), "connection closed mid-body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Response(int(status_line.split(" ")[1]), headers, body)

    def closed_by_server(self) -> bool:
        """True once the server has ended the stream (an orderly close, not a reset)."""
        while self.fill():
            pass
        return True


@contextlib.contextmanager
def client(server: LiveServer) -> Iterator[Client]:
    opened = time.monotonic()  # before the server can have seen the connection
    sock = socket.create_connection((HOST, server.port), timeout=IO_BOUND_S)
    try:
        yield Client(sock, opened=opened)
    finally:
        sock.close()


def request(method: str, target: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: test"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def wine_request(body: bytes = WINE_BODY, length: int | None = None) -> bytes:
    declared = str(len(body) if length is None else length)
    return request(
        "POST", "/predict/wine", body, Content_Type="application/json", Content_Length=declared
    )


# ---------------------------------------------------------------------------------------------
# Slow clients.


def test_headers_trickled_a_byte_at_a_time_get_408_then_a_close(server: LiveServer) -> None:
    head = request("GET", "/healthz", X_Padding="p" * 4096)
    with client(server) as c:
        c.sock.settimeout(TRICKLE_EVERY_S)
        sent = 0
        while time.monotonic() - c.opened < IO_BOUND_S:
            c.send(head[sent : sent + 1])
            sent += 1
            with contextlib.suppress(TimeoutError):
                if c.fill():
                    break
        elapsed = time.monotonic() - c.opened
        c.sock.settimeout(IO_BOUND_S)
        answer = c.response()
        assert answer.status == 408
        assert "headers" in answer.detail()
        assert answer.headers["connection"] == "close"
        assert c.closed_by_server()
    assert sent < len(head), "the headers arrived in full before any answer"
    # Not before the configured time: trickling kept the connection busy, never idle.
    assert elapsed >= HEADER_TIMEOUT_S - TIMER_GRANULARITY_S


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(server: LiveServer) -> None:
    with client(server) as c:
        assert c.closed_by_server()
        elapsed = time.monotonic() - c.opened
        assert c.buffer == b""
    assert elapsed >= HEADER_TIMEOUT_S - TIMER_GRANULARITY_S


def test_a_body_shorter_than_its_content_length_gets_400_saying_how_much_came(
    server: LiveServer,
) -> None:
    with client(server) as c:
        c.send(wine_request(WINE_BODY[:5], length=len(WINE_BODY)))
        answer = c.response()
        elapsed = time.monotonic() - c.opened
        assert answer.status == 400
        assert f"5 of the {len(WINE_BODY)} bytes" in answer.detail()
        assert c.closed_by_server()
    assert elapsed >= BODY_TIMEOUT_S - TIMER_GRANULARITY_S


def test_a_chunked_body_without_its_last_chunk_gets_400(server: LiveServer) -> None:
    with client(server) as c:
        c.send(
            request(
                "POST",
                "/predict/wine",
                b"%x\r\n%s\r\n" % (len(WINE_BODY[:10]), WINE_BODY[:10]),
                Content_Type="application/json",
                Transfer_Encoding="chunked",
            )
        )
        answer = c.response()
        assert answer.status == 400
        assert "10 bytes of a chunked body" in answer.detail()
        assert c.closed_by_server()


@pytest.mark.parametrize(
    ("extra", "then"),
    [
        (b"junk", 408),  # the start of a next request that never ends
        (b"junk\r\n\r\n", 400),  # a next request that is not HTTP
    ],
)
def test_bytes_beyond_the_content_length_are_a_next_request(
    server: LiveServer, extra: bytes, then: int
) -> None:
    with client(server) as c:
        c.send(wine_request() + extra)
        first = c.response()
        assert first.status == 200, first.body
        second = c.response()
        assert second.status == then
        assert second.detail()
        assert c.closed_by_server()


def test_normal_requests_are_answered_while_300_slow_clients_hold_connections(
    server: LiveServer,
) -> None:
    """Half trickle headers, half a body; ordinary clients meanwhile are answered."""
    slow_head = request("GET", "/healthz", X_Padding="p" * 4096)
    with contextlib.ExitStack() as stack:
        slow: dict[socket.socket, tuple[Client, bytes, int]] = {}
        for i in range(SLOW_CLIENTS):
            opened = time.monotonic()
            sock = stack.enter_context(socket.create_connection((HOST, server.port), IO_BOUND_S))
            if i % 2:
                sock.sendall(wine_request(b"", length=len(WINE_BODY)))
                slow[sock] = (Client(sock, opened=opened), b" " * len(WINE_BODY), 400)
            else:
                sock.sendall(slow_head[:10])
                slow[sock] = (Client(sock, opened=opened), slow_head[10:], 408)

        latencies: dict[str, list[float]] = {"GET /healthz": [], "POST /predict/wine": []}
        with httpx.Client(base_url=server.url, timeout=IO_BOUND_S) as http:
            # Unmeasured: it waits out the server's accepting the 300 (a burst, not a load).
            assert http.get("/healthz").status_code == 200
            for _ in range(20):
                for name, send in (
                    ("GET /healthz", lambda: http.get("/healthz")),
                    (
                        "POST /predict/wine",
                        lambda: http.post("/predict/wine", json={"instances": [ROW]}),
                    ),
                ):
                    start = time.perf_counter()
                    answer = send()
                    latencies[name].append(time.perf_counter() - start)
                    assert answer.status_code == 200, answer.text
        for _ in range(20):  # a fresh connection each, as most clients open one
            for name, raw in (
                ("GET /healthz", request("GET", "/healthz")),
                ("POST /predict/wine", wine_request()),
            ):
                with client(server) as c:
                    start = time.perf_counter()
                    c.send(raw)
                    answer = c.response()
                    latencies[name].append(time.perf_counter() - start)
                    assert answer.status == 200, answer.body

        # Every slow client is answered and closed, however it keeps trickling.
        selector = stack.enter_context(selectors.DefaultSelector())
        for sock in slow:
            selector.register(sock, selectors.EVENT_READ)
        open_after = SLOW_CLIENTS - len(selector.select(0))  # not answered yet
        lifetimes = []
        pending = dict(slow)
        deadline = time.monotonic() + IO_BOUND_S
        next_trickle = time.monotonic()
        while pending and time.monotonic() < deadline:
            for key, _ in selector.select(max(0.0, next_trickle - time.monotonic())):
                c, _, expected = pending.pop(key.fileobj)
                selector.unregister(key.fileobj)
                answer = c.response()
                lifetimes.append(time.monotonic() - c.opened)
                assert answer.status == expected, answer.body
                assert c.closed_by_server()
            # A byte each TRICKLE_EVERY_S, however often answers wake the select above: a
            # slow client's pace must not follow the server's.
            if time.monotonic() < next_trickle:
                continue
            next_trickle += TRICKLE_EVERY_S
            for sock, (c, rest, expected) in list(pending.items()):
                if rest:
                    with contextlib.suppress(BlockingIOError):
                        sock.send(rest[:1])
                    pending[sock] = (c, rest[1:], expected)
        assert not pending, f"{len(pending)} slow clients were never answered"

    for name, values in latencies.items():
        print(
            f"{name} with {open_after} slow connections open: n={len(values)} "
            f"median {statistics.median(values) * 1000:.1f} ms, "
            f"p99 {statistics.quantiles(values, n=100)[98] * 1000:.1f} ms"
        )
    print(f"slow connections closed after {min(lifetimes):.2f}-{max(lifetimes):.2f} s")
    assert min(lifetimes) >= min(HEADER_TIMEOUT_S, BODY_TIMEOUT_S) - TIMER_GRANULARITY_S


# ---------------------------------------------------------------------------------------------
# Oversized request heads: an answer the client reads, not a reset.


@pytest.mark.parametrize("size", [20_000, 1_000_000])
def test_a_url_over_the_limit_gets_414(server: LiveServer, size: int) -> None:
    with client(server) as c:
        c.send(request("GET", "/healthz?q=" + "a" * size))
        answer = c.response()
        assert answer.status == 414
        assert f"{MAX_HEAD_BYTES} bytes" in answer.detail()
        assert c.closed_by_server()


def test_headers_over_the_limit_get_431(server: LiveServer) -> None:
    with client(server) as c:
        c.send(request("GET", "/healthz", X_Large="b" * 2 * MAX_HEAD_BYTES))
        answer = c.response()
        assert answer.status == 431
        assert f"{MAX_HEAD_BYTES} bytes" in answer.detail()
        assert c.closed_by_server()


def test_headers_within_the_limit_are_served(server: LiveServer) -> None:
    with client(server) as c:
        c.send(request("GET", "/healthz?q=" + "a" * 4000, X_Large="b" * (MAX_HEAD_BYTES // 2)))
        assert c.response().status == 200


def test_a_malformed_content_length_gets_400(server: LiveServer) -> None:
    with client(server) as c:
        c.send(wine_request(length=None).replace(b"Content-Length: ", b"Content-Length: x"))
        answer = c.response()
        assert answer.status == 400
        assert answer.detail().startswith("invalid HTTP/1.1 request")
        assert c.closed_by_server()


# ---------------------------------------------------------------------------------------------
# Ordinary clients, unaffected.


def test_keep_alive_outlasts_the_header_deadline_between_requests(server: LiveServer) -> None:
    """The header deadline runs from a request's first byte; idle time is keep-alive's."""
    with client(server) as c:
        for pause in (0.0, HEADER_TIMEOUT_S + 0.5, 0.0):  # uvicorn's keep-alive is 5 s
            time.sleep(pause)
            c.send(wine_request())
            answer = c.response()
            assert answer.status == 200, answer.body
            assert answer.headers.get("connection") != "close"


def test_pipelined_requests_are_all_answered(server: LiveServer) -> None:
    with client(server) as c:
        c.send(request("GET", "/healthz") + wine_request() + request("GET", "/healthz"))
        assert [c.response().status for _ in range(3)] == [200, 200, 200]


# ---------------------------------------------------------------------------------------------
# A client that leaves.

# The most rows and draws a wine request may ask for: a pass of about a second here, long enough
# for another request to queue behind it and for its client to leave.
LONG_PASS_ROWS = 1024
LONG_PASS_SAMPLES = 1000


def metric(server: LiveServer, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    text = httpx.get(f"{server.url}/metrics", timeout=IO_BOUND_S).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def test_a_client_that_leaves_while_its_request_waits_costs_no_model_pass(
    server: LiveServer,
) -> None:
    """The connection tells the app (``service.disconnect.DisconnectNotice``): the request is
    dropped from the queue, counted as the client's 499, and never run."""
    wine = {"route": "/predict/wine"}
    gone_before = metric(server, "bayes_http_requests_total", status="499", **wine)
    passes_before = metric(server, "bayes_batch_requests_count", model="wine-bnn")
    long_body = json.dumps({"instances": [ROW] * LONG_PASS_ROWS}).encode()
    long_request = request(
        "POST",
        f"/predict/wine?samples={LONG_PASS_SAMPLES}",
        long_body,
        Content_Type="application/json",
        Content_Length=str(len(long_body)),
    )
    with client(server) as long, client(server) as leaving:
        long.send(long_request)
        # A full batch of its own: the short request waits in the queue for the next one.
        leaving.send(wine_request())
        deadline = time.monotonic() + IO_BOUND_S
        while metric(server, "bayes_queue_depth", model="wine-bnn") < 1:
            assert time.monotonic() < deadline, "the short request was never queued"
        leaving.sock.close()
        assert long.response().status == 200
    deadline = time.monotonic() + IO_BOUND_S
    while metric(server, "bayes_http_requests_total", status="499", **wine) == gone_before:
        assert time.monotonic() < deadline, "the request whose client left was not counted 499"
        time.sleep(0.01)
    assert metric(server, "bayes_queue_depth", model="wine-bnn") == 0
    # One pass ran, the long request's alone: the queued one was dropped before its turn.
    assert metric(server, "bayes_batch_requests_count", model="wine-bnn") == passes_before + 1


def test_no_request_of_this_file_was_counted_as_a_server_error(server: LiveServer) -> None:
    # Last in the file: the app saw the given-up bodies as clients gone (499), not crashes
    # (a 503 from /readyz while the models warmed up is no error).
    assert len(ROW) == len(WINE_FEATURES)
    metrics = httpx.get(f"{server.url}/metrics", timeout=IO_BOUND_S).text
    errors = [
        sample
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.labels.get("status") == "500" and sample.value > 0
    ]
    assert errors == []
    assert "Exception in ASGI application" not in server.output()
