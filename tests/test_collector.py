"""The collector the app serves under (``service.collector``), and the premise it rests on.

Young collections wait for :data:`~service.collector.YOUNG_THRESHOLD` containers because a
request leaves no reference cycle behind: everything it made is freed by reference counting
the moment it is answered. Were a path to leave cycles, they would pile up to that many
objects between collections, so each path is checked here: the app is driven through raw
ASGI calls (a client library would leave cycles of its own), with the collector off, and a
collection afterwards must find nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from fastapi import FastAPI

from bench.bodies import MULTIPART, multipart
from service.app import create_app
from service.collector import YOUNG_THRESHOLD, serving_collector
from service.settings import Settings
from service.tasks.tabular_regression import INPUT_TENSOR
from tests.test_api import image_file

# Only there so that a broken service fails the test instead of hanging it.
HANG_GUARD_S = 30.0
ROW = [7.0, 0.27, 0.36, 20.7, 0.045, 45.0, 170.0, 1.001, 3.0, 0.45, 8.8]
# Each path this many times: a cycle per request would leave hundreds of objects.
REPEATS = 50


def test_the_block_freezes_raises_the_young_threshold_and_gives_both_back() -> None:
    before = gc.get_threshold()
    with serving_collector():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


JSON = "application/json"
PNGS = [(f"{seed}.png", image_file("PNG", seed=seed)) for seed in range(2)]
# (method, path, query, content type, body, status): answers and refusals of every kind.
REQUESTS: list[tuple[str, str, str, str, bytes, int]] = [
    ("POST", "/predict/wine", "", JSON, json.dumps({"instances": [ROW, ROW]}).encode(), 200),
    ("POST", "/predict/wine", "", JSON, json.dumps({"instances": [ROW[:5]]}).encode(), 422),
    ("POST", "/predict/wine", "", JSON, b'{"instances": [[1, 2', 422),
    ("POST", "/predict/wine", "level=2", JSON, json.dumps({"instances": [ROW]}).encode(), 422),
    ("POST", "/predict/wine", "", "text/plain", b"7.0", 415),
    ("POST", "/predict/wine-nope", "", JSON, json.dumps({"instances": [ROW]}).encode(), 404),
    (
        "POST",
        "/v2/models/wine-bnn/infer",
        "",
        JSON,
        json.dumps(
            {"inputs": [{"name": INPUT_TENSOR, "shape": [1, 11], "datatype": "FP32", "data": ROW}]}
        ).encode(),
        200,
    ),
    ("POST", "/predict/cifar", "", MULTIPART, multipart(PNGS), 200),
    ("POST", "/predict/cifar", "", MULTIPART, multipart([("a.png", b"not an image")]), 415),
    ("GET", "/models", "", JSON, b"", 200),
    ("GET", "/nowhere", "", JSON, b"", 404),
]


async def call(app: FastAPI, method: str, path: str, query: str, kind: str, body: bytes) -> int:
    """One request through the app's ASGI interface; its status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [
            (b"host", b"test"),
            (b"content-type", kind.encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        await asyncio.Future()  # the client stays: nothing more comes
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0]


@contextlib.asynccontextmanager
async def started(checkpoint_dir: Path) -> AsyncIterator[FastAPI]:
    settings = Settings(
        model_repository=checkpoint_dir,
        models=("wine-bnn", "cifar-bcnn"),
        log_level="warning",
        per_model={"cifar_bcnn": {"default_samples": 2, "max_samples": 4}},
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        while await call(app, "GET", "/readyz", "", JSON, b"") != 200:
            await asyncio.sleep(0.01)
        yield app


@contextlib.contextmanager
def collector_off() -> Iterator[list[Any]]:
    """The collector off for the block; then what one collection finds unreachable."""
    found: list[Any] = []
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # keep what is found, to say what it was
    try:
        yield found
    finally:
        gc.collect()
        found.extend(gc.garbage)
        gc.garbage.clear()
        gc.set_debug(0)
        gc.enable()


def describe(garbage: list[Any]) -> str:
    kinds = Counter(
        f"frame of {item.f_code.co_qualname}"
        if isinstance(item, FrameType)
        else type(item).__qualname__
        for item in garbage
    )
    return ", ".join(f"{count} {kind}" for kind, count in kinds.most_common(12))


@pytest.fixture(scope="module")
def served(checkpoint_dir: Path) -> Iterator[tuple[asyncio.Runner, FastAPI]]:
    with asyncio.Runner() as runner:
        stack = contextlib.AsyncExitStack()
        start = stack.enter_async_context(started(checkpoint_dir))
        app = runner.run(asyncio.wait_for(start, HANG_GUARD_S))
        try:
            yield runner, app
        finally:
            runner.run(stack.aclose())


@pytest.mark.parametrize(("method", "path", "query", "kind", "body", "status"), REQUESTS)
def test_a_request_leaves_no_reference_cycle(
    served: tuple[asyncio.Runner, FastAPI],
    method: str,
    path: str,
    query: str,
    kind: str,
    body: bytes,
    status: int,
) -> None:
    runner, app = served

    async def requests() -> None:
        for _ in range(REPEATS):
            assert await call(app, method, path, query, kind, body) == status

    runner.run(asyncio.wait_for(call(app, method, path, query, kind, body), HANG_GUARD_S))
    with collector_off() as garbage:
        runner.run(asyncio.wait_for(requests(), HANG_GUARD_S))
    assert not garbage, f"{REPEATS} requests left reference cycles: {describe(garbage)}"
