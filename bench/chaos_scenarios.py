"""The hostile-load scenarios of ``python -m bench.chaos``, one function each.

Each starts its own server (:func:`bench.chaos_load.serve`, the command ``make serve`` runs,
on 127.0.0.1) with only the models it needs, sends a bounded number of requests within a
bounded time, and returns its phases with their checks. :class:`Scale` says how much: the
full suite or the ``--quick`` one that ``make test`` runs a part of.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Final

import httpx
import numpy as np
from PIL import Image

from bench.chaos_load import (
    REFUSED,
    Answer,
    Client,
    RawAnswer,
    Tally,
    drive,
    header_of,
    http_request,
    ms,
    multipart,
    peak_rss,
    percentile,
    pid_of,
    raw_exchange,
    read_all,
    serve,
    server_settings,
    service_env,
    unread_by_server,
)
from bench.chaos_report import Check, Phase, no_failures
from bench.checkpoints import CIFAR_MODEL, WINE_MODEL
from bench.server import cpu_seconds
from service.live_server import HOST, LiveServer
from service.settings import settings_key

__all__ = ["FULL", "QUICK", "SCENARIOS", "Scale"]

GiB: Final = 2**30
WINE_GAUSSIAN: Final = "wine-gaussian"
# Targets of the issue.
RSS_TARGET: Final = 2 * GiB
BOMB_REFUSAL_S: Final = 0.100
FAST_503_S: Final = 1.0
FAST_503_SHARE: Final = 0.90
CIFAR_THROUGHPUT_SHARE: Final = 0.80
SLOW_P99_S: Final = 0.050
# How long past its configured deadline a slow connection may stay open and still count as
# closed "after the configured time" (the server's timers run on a busy event loop).
CLOSE_SLACK_S: Final = 2.0
# Bounds of every request: a server that never answers ends the scenario, not the suite.
REQUEST_TIMEOUT_S: Final = 60.0


@dataclass(frozen=True)
class Scale:
    """How many of everything: counts, concurrencies and bounds of each scenario."""

    name: str
    poison_rounds: int  # rounds of 50 normal + 1 poisoned request, per poison and model
    bomb_requests: int  # sequential requests of 64 bombs
    bomb_rounds: int  # rounds of 8 concurrent requests of 50 bombs
    largest_requests: int  # requests of the largest images allowed, 8 each
    largest_concurrency: int
    flood_requests: int  # bodies just under MAX_BODY_BYTES, all at once
    cifar_unloaded: int  # sequential 64-image requests timed before the overload
    cifar_requests: int
    cifar_concurrency: int
    cifar_timeout_s: float | None  # the CIFAR model's deadline (TIMEOUT_S); None: its default
    wine_requests: int  # at concurrency 512
    slow_connections: int
    short_bodies: int
    client_timeouts: dict[str, str]  # settings for the slow-client server (quick: shorter)
    sigterm_requests: int
    budget_s: float  # the most any one phase may keep starting requests


FULL = Scale(
    name="full",
    poison_rounds=20,
    bomb_requests=10,
    bomb_rounds=5,
    largest_requests=64,
    largest_concurrency=16,
    flood_requests=256,
    cifar_unloaded=4,
    cifar_requests=400,
    cifar_concurrency=256,
    cifar_timeout_s=None,
    wine_requests=5000,
    slow_connections=300,
    short_bodies=20,
    client_timeouts={},
    sigterm_requests=200,
    budget_s=120.0,
)
QUICK = Scale(
    name="quick",
    poison_rounds=3,
    bomb_requests=3,
    bomb_rounds=1,
    largest_requests=4,
    largest_concurrency=4,
    flood_requests=8,
    cifar_unloaded=1,
    cifar_requests=32,
    cifar_concurrency=16,
    cifar_timeout_s=4.0,
    wine_requests=1024,
    slow_connections=50,
    short_bodies=5,
    client_timeouts={"HEADER_TIMEOUT_S": "3", "BODY_TIMEOUT_S": "3"},
    sigterm_requests=100,
    budget_s=30.0,
)


# Request bodies


def png(mode: str, width: int, height: int) -> bytes:
    """A blank PNG: it compresses to almost nothing, whatever its pixel count."""
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, "PNG", compress_level=9)
    return buffer.getvalue()


@cache
def bomb(mode: str) -> bytes:
    """7000 × 7000 = 49 megapixels, under Pillow's own 89-megapixel bomb limit."""
    return png(mode, 7000, 7000)


@cache
def largest_allowed() -> bytes:
    """1999 × 2000 RGB: just under the default MAX_IMAGE_PIXELS (4,000,000)."""
    return png("RGB", 1999, 2000)


@cache
def noise_jpeg() -> bytes:
    """1000 × 1000 RGB noise as a JPEG, about 1.2 MB: a megapixel that does not compress."""
    pixels = np.random.default_rng(1).integers(0, 256, (1000, 1000, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


@cache
def cifar_images(count: int = 64) -> tuple[tuple[str, bytes], ...]:
    """``count`` 32 × 32 JPEGs of seeded noise: the model's cost is the same as for photos,
    and no data set is needed."""
    rng = np.random.default_rng(0)
    files = []
    for i in range(count):
        buffer = io.BytesIO()
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
        files.append((f"noise-{i}.jpg", buffer.getvalue()))
    return tuple(files)


def wine_example(live: LiveServer, model: str) -> dict[str, float]:
    """The typical row GET /models shows for ``model``: a request that must succeed."""
    models = httpx.get(f"{live.url}/models", timeout=30).json()["models"]
    return next(m for m in models if m["name"] == model)["input"]["example"]


def batch_sizes(live: LiveServer, model: str) -> tuple[float, float]:
    """Requests over model passes so far (the batch-size histogram's sum and count)."""
    text = httpx.get(f"{live.url}/metrics", timeout=30).text
    found = {}
    for stat in ("sum", "count"):
        match = re.search(
            rf'^bayes_batch_requests_{stat}\{{model="{re.escape(model)}"\}} (\S+)$', text, re.M
        )
        found[stat] = float(match[1]) if match else 0.0
    return found["sum"], found["count"]


CRASH: Final = "Exception in ASGI application"  # what uvicorn logs when the app raises
CRASH_CHECK: Final = "unhandled exceptions in the server's log"


def crashes(live: LiveServer) -> int:
    return live.output().count(CRASH)


def log_check(live: LiveServer, since: int = 0) -> Check:
    """Unhandled exceptions in the server's log (after the first ``since``): each one a 500,
    whether or not a client saw it (the client may have left)."""
    found = crashes(live) - since
    return Check(CRASH_CHECK, str(found), "0", found == 0)


# What the batcher's refusals say (service/batcher.py), to tell where a 503 was decided.
_ON_ARRIVAL: Final = ("queued or arriving", "of work queued")
_AFTER_DECODING: Final = "after the request's deadline"


def refusal_stages(tally: Tally) -> Check:
    """Where the refusals were decided: a 503 on arrival costs the server next to nothing; one
    after the body was read and decoded has cost it all that work."""
    stages: Counter[str] = Counter()
    for answer in tally.answers:
        if answer.status == 503:
            if any(marker in answer.detail for marker in _ON_ARRIVAL):
                stages["503 on arrival, before the body was read"] += 1
            elif _AFTER_DECODING in answer.detail:
                stages["503 after the body was read and decoded"] += 1
            else:
                stages["503, other"] += 1
        elif answer.status is not None and answer.status != 200:
            stages[str(answer.status)] += 1
    found = "; ".join(f"{stage}: {n}" for stage, n in stages.most_common()) or "no refusals"
    return Check("where the refusals were decided", found)


def latency_text(tally: Tally, status: int = 200, label: str = "") -> str:
    values = tally.latencies(status)
    if not values:
        return ""
    return (
        f"{label or status} p50 {ms(percentile(values, 50))}, p99 {ms(percentile(values, 99))}, "
        f"max {ms(values[-1])}"
    )


# (1) Poisoned batches

POISONS: Final[dict[str, tuple[str, Callable[[dict[str, float]], dict[str, float]]]]] = {
    "level=0.9999999999999999": ("?level=0.9999999999999999", dict),
    "level=nan": ("?level=nan", dict),
    "features at 1e38": ("", lambda row: dict.fromkeys(row, 1e38)),
    "features at 1e39 (beyond float32)": ("", lambda row: dict.fromkeys(row, 1e39)),
}
ROUND_SIZE: Final = 50


def poisoned_batches(scale: Scale) -> list[Phase]:
    """Rounds of 50 normal wine requests and one poisoned one, all sent at once, so that the
    poisoned one shares model passes with normal ones: none of the normal may fail."""
    models = (WINE_MODEL, WINE_GAUSSIAN)
    phases = []
    with serve(service_env(models)) as live:
        for model in models:
            example = wine_example(live, model)
            before = batch_sizes(live, model)
            tally = asyncio.run(_poison_rounds(live, model, example, scale.poison_rounds))
            after = batch_sizes(live, model)
            requests, passes = (a - b for a, b in zip(after, before, strict=True))
            split = live.output().count(f"{model}: predict failed for a batch")
            phases.append(_poison_phase(model, tally, scale, requests / max(passes, 1), split))
            phases[-1].peak_rss = peak_rss(live)
        phases[-1].checks.append(log_check(live))
    return phases


async def _poison_rounds(
    live: LiveServer, model: str, example: dict[str, float], rounds: int
) -> Tally:
    tally = Tally()
    normal = json.dumps(example).encode()
    path = f"/predict/{model}"
    async with Client(live.port, timeout_s=REQUEST_TIMEOUT_S) as http:
        start = time.perf_counter()
        for poison, (query, body) in POISONS.items():
            poisoned = json.dumps(body(example)).encode()
            for _ in range(rounds):
                sends = [
                    http.post(path, normal, start=start, tag=f"normal {poison}")
                    for _ in range(ROUND_SIZE)
                ]
                sends.insert(
                    ROUND_SIZE // 2,
                    http.post(path + query, poisoned, start=start, tag=f"poisoned {poison}"),
                )
                tally.add(await asyncio.gather(*sends))
    return tally


def _poison_phase(model: str, tally: Tally, scale: Scale, per_pass: float, split: int) -> Phase:
    checks = []
    for poison in POISONS:
        normal = tally.of(f"normal {poison}")
        affected = normal.sent - normal.statuses.get(200, 0)
        checks.append(
            Check(
                f"normal requests not answered 200, poison {poison}",
                f"{affected} of {normal.sent}",
                "0",
                affected == 0,
            )
        )
    poisoned = Tally([a for a in tally.answers if a.tag.startswith("poisoned")])
    client_errors = all(a.status is not None and 400 <= a.status < 500 for a in poisoned.answers)
    by_poison = "; ".join(
        f"{poison}: {tally.of(f'poisoned {poison}').describe_statuses()}" for poison in POISONS
    )
    checks.append(Check("poisoned requests answered 4xx", by_poison, "all 4xx", client_errors))
    checks.append(no_failures(tally))
    return Phase(
        f"poisoned batches, {model}",
        f"{scale.poison_rounds} rounds × ({ROUND_SIZE} normal + 1 poisoned, at once) for each "
        f"of {len(POISONS)} poisons; {per_pass:.1f} requests per model pass on average, "
        f"{split} failed batches re-run in halves",
        tally,
        latency=latency_text(tally),
        checks=checks,
        figures={"requests_per_pass": per_pass, "split_batches": split},
    )


# (2) Image bombs


def image_bombs(scale: Scale) -> list[Phase]:
    """7000 × 7000 PNGs (small files, 49 megapixels each), the largest images the defaults
    allow, and more of them per request than the pixel budget takes: refused at once, and
    the server's memory stays bounded whatever is sent."""
    phases = []
    with serve(service_env([CIFAR_MODEL])) as live:
        ready_rss = peak_rss(live)
        path = f"/predict/{CIFAR_MODEL}"
        grey, rgb, largest = bomb("L"), bomb("RGB"), largest_allowed()
        cases = [
            (
                f"64 bombs per request (7000×7000 grey PNG, {len(grey) / 1000:.0f} kB each), "
                f"{scale.bomb_requests} in turn",
                [("bomb.png", grey)] * 64,
                scale.bomb_requests,
                1,
                415,
            ),
            (
                f"{scale.bomb_rounds} round{'s' * (scale.bomb_rounds != 1)} of 8 concurrent "
                f"requests of 50 bombs (7000×7000 RGB PNG, {len(rgb) / 1000:.0f} kB each)",
                [("bomb.png", rgb)] * 50,
                8 * scale.bomb_rounds,
                8,
                415,
            ),
            (
                f"64 images of 1999×2000 per request (over MAX_REQUEST_PIXELS together), "
                f"{scale.bomb_requests} in turn",
                [("large.png", largest)] * 64,
                scale.bomb_requests,
                1,
                413,
            ),
        ]
        for load, files, count, concurrency, refusal in cases:
            body, content_type = multipart(files, "image/png")
            tally = asyncio.run(
                _post_many(live, path, body, content_type, count, concurrency, scale)
            )
            refused = tally.statuses.get(refusal, 0)
            slowest = max(tally.latencies(), default=float("nan"))
            phases.append(
                Phase(
                    "image bombs",
                    load,
                    tally,
                    peak_rss(live),
                    latency_text(tally, refusal, f"{refusal}s"),
                    [
                        Check(
                            f"refused with {refusal}",
                            f"{refused} of {tally.sent}",
                            "all",
                            refused == tally.sent,
                        ),
                        Check(
                            "slowest refusal",
                            ms(slowest),
                            f"≤ {ms(BOMB_REFUSAL_S)}",
                            slowest <= BOMB_REFUSAL_S,
                            timing=True,
                        ),
                        no_failures(tally),
                    ],
                )
            )
        body, content_type = multipart([("large.png", largest)] * 8, "image/png")
        tally = asyncio.run(
            _post_many(
                live,
                path,
                body,
                content_type,
                scale.largest_requests,
                scale.largest_concurrency,
                scale,
            )
        )
        phases.append(
            Phase(
                "image bombs",
                f"the largest allowed: {scale.largest_requests} requests of 8 images of "
                f"1999×2000 (each just under MAX_IMAGE_PIXELS, 32 MP together), "
                f"c={scale.largest_concurrency}",
                tally,
                peak_rss(live),
                latency_text(tally),
                [no_failures(tally)],
            )
        )
        phases.append(_clients_leave(live, path, body, content_type, scale))
        phases.append(_body_flood(live, path, scale, ready_rss))
    return phases


def _body_flood(live: LiveServer, path: str, scale: Scale, ready_rss: int) -> Phase:
    """As many bodies at once as clients like, each just under MAX_BODY_BYTES of valid images:
    what the service holds in memory is what it has admitted."""
    limit = server_settings(service_env([CIFAR_MODEL])).max_body_bytes
    image = noise_jpeg()
    count = (limit - 4096) // (len(image) + 200)
    body, content_type = multipart([("noise.jpg", image)] * count, "image/jpeg")
    n = scale.flood_requests
    before = crashes(live)
    tally = asyncio.run(_post_many(live, path, body, content_type, n, n, scale))
    rss = peak_rss(live)
    return Phase(
        "image bombs",
        f"body flood: {n} requests at once, each {len(body) / 2**20:.1f} MiB (MAX_BODY_BYTES "
        f"{limit / 2**20:g} MiB) of {count} JPEGs of 1000×1000 noise",
        tally,
        rss,
        latency_text(tally),
        [
            Check(
                "server peak RSS over all the bomb phases (VmHWM)",
                f"{rss / 2**20:,.0f} MiB (when ready: {ready_rss / 2**20:,.0f} MiB)",
                f"≤ {RSS_TARGET / 2**20:,.0f} MiB",
                rss <= RSS_TARGET,
            ),
            refusal_stages(tally),
            no_failures(tally),
            log_check(live, before),
        ],
    )


async def _post_many(
    live: LiveServer,
    path: str,
    body: bytes,
    content_type: str,
    count: int,
    concurrency: int,
    scale: Scale,
    *,
    timeout_s: float = REQUEST_TIMEOUT_S,
) -> Tally:
    """``count`` POSTs of ``body``, ``concurrency`` at a time, closed loop."""
    async with Client(live.port, timeout_s=timeout_s) as http:
        start = time.perf_counter()
        answers = await drive(
            count,
            concurrency,
            lambda _: http.post(path, body, start=start, content_type=content_type),
            budget_s=scale.budget_s,
        )
    return Tally(answers)


IDLE_CPU_SHARE: Final = 0.05  # below this share of a core, the server counts as idle
LEAVE_AFTER_S: Final = 0.3


def _clients_leave(
    live: LiveServer, path: str, body: bytes, content_type: str, scale: Scale
) -> Phase:
    """Clients that hang up 0.3 s after sending the largest allowed images: how long does the
    server go on working for them? (Before the fix: minutes.)"""
    pid = pid_of(live)
    count = scale.largest_requests
    before = crashes(live)
    tally = asyncio.run(
        _post_many(live, path, body, content_type, count, count, scale, timeout_s=LEAVE_AFTER_S)
    )
    left = time.perf_counter()
    busy_for = float("nan")
    last_cpu, last = cpu_seconds(pid)[0], left
    bound = left + 60.0
    while time.perf_counter() < bound:
        time.sleep(0.25)
        cpu, now = cpu_seconds(pid)[0], time.perf_counter()
        if (cpu - last_cpu) / (now - last) < IDLE_CPU_SHARE:
            busy_for = last - left
            break
        last_cpu, last = cpu, now
    return Phase(
        "image bombs",
        f"clients that leave: {count} requests of 8 images of 1999×2000 at once, each client "
        f"hanging up after {LEAVE_AFTER_S:g} s",
        tally,
        peak_rss(live),
        "",
        [
            Check(
                "server still busy after the clients left",
                f"{busy_for:.2f} s" if busy_for == busy_for else "over 60 s",
                "",
            ),
            log_check(live, before),
        ],
    )


# (3) CIFAR overload


def cifar_overload(scale: Scale) -> list[Phase]:
    """Far more 64-image requests at once than the model can answer within the deadline: the
    excess must be refused fast with 503, and the answered ones must keep the model busy."""
    files = cifar_images()
    body, content_type = multipart(files, "image/jpeg")
    images = len(files)
    deadline = (
        {f"{settings_key(CIFAR_MODEL).upper()}__TIMEOUT_S": f"{scale.cifar_timeout_s:g}"}
        if scale.cifar_timeout_s is not None
        else {}
    )
    with serve(service_env([CIFAR_MODEL], **deadline)) as live:
        path = f"/predict/{CIFAR_MODEL}"
        warm = asyncio.run(
            _post_many(live, path, body, content_type, 1 + scale.cifar_unloaded, 1, scale)
        )
        timed = warm.answers[1:]
        unloaded = images * len(timed) / sum(a.seconds for a in timed)
        if any(a.status != 200 for a in warm.answers):
            raise RuntimeError(f"unloaded CIFAR requests failed: {warm.describe_statuses()}")
        tally = asyncio.run(
            _post_many(
                live, path, body, content_type, scale.cifar_requests, scale.cifar_concurrency, scale
            )
        )
        rss = peak_rss(live)
        crash_check = log_check(live)
    answered = tally.statuses.get(200, 0)
    last_200 = max((a.at for a in tally.answers if a.status == 200), default=0.0)
    rate = answered * images / last_200 if last_200 else 0.0
    refusals = [a for a in tally.answers if a.status != 200]
    fast = sum(1 for a in refusals if a.status == 503 and a.seconds <= FAST_503_S)
    share = fast / len(refusals) if refusals else 1.0
    ratio = rate / unloaded
    refused_503 = latency_text(tally, 503, "503s")
    return [
        Phase(
            "CIFAR overload",
            f"{scale.cifar_requests} requests of {images} JPEGs at c={scale.cifar_concurrency} "
            f"(S = the model's default"
            + (f", deadline {scale.cifar_timeout_s:g} s" if scale.cifar_timeout_s else "")
            + f"); unloaded first: {len(timed)} request{'s' * (len(timed) != 1)} in turn",
            tally,
            rss,
            "; ".join(filter(None, [latency_text(tally), refused_503])),
            [
                Check(
                    f"refusals that are 503 answered within {FAST_503_S:g} s",
                    f"{fast} of {len(refusals)} = {share:.0%}",
                    f"≥ {FAST_503_SHARE:.0%}",
                    share >= FAST_503_SHARE,
                    timing=True,
                ),
                Check(
                    "answered images/s under overload / unloaded",
                    f"{rate:.1f} / {unloaded:.1f} = {ratio:.2f} ({answered} answered in "
                    f"{last_200:.1f} s)",
                    f"≥ {CIFAR_THROUGHPUT_SHARE:g}",
                    ratio >= CIFAR_THROUGHPUT_SHARE,
                    timing=True,
                ),
                refusal_stages(tally),
                Check(
                    "every 503 has Retry-After",
                    f"{tally.missing_retry_after} of {tally.statuses.get(503, 0)} without",
                    "0",
                    tally.missing_retry_after == 0,
                ),
                no_failures(tally),
                crash_check,
            ],
            figures={"unloaded_images_per_s": unloaded, "images_per_s": rate},
        )
    ]


# (4) Wine overload

WINE_CONCURRENCY: Final = 512


def wine_overload(scale: Scale) -> list[Phase]:
    """512 clients at once on the wine model, closed loop: overload is shed with 503s that say
    when to come back; nothing fails and no connection is dropped."""
    with serve(service_env([WINE_MODEL])) as live:
        body = json.dumps(wine_example(live, WINE_MODEL)).encode()
        path = f"/predict/{WINE_MODEL}"
        started = time.perf_counter()
        tally = asyncio.run(
            _post_many(
                live, path, body, "application/json", scale.wine_requests, WINE_CONCURRENCY, scale
            )
        )
        seconds = time.perf_counter() - started
        rss = peak_rss(live)
        crash_check = log_check(live)
    answered = tally.statuses.get(200, 0)
    return [
        Phase(
            "wine overload",
            f"{scale.wine_requests} one-row requests at c={WINE_CONCURRENCY}, closed loop (a "
            "refused client sends its next request at once)",
            tally,
            rss,
            f"{answered / seconds:,.0f} answers 200/s; " + latency_text(tally),
            [
                Check(
                    "every 503 has Retry-After",
                    f"{tally.missing_retry_after} of {tally.statuses.get(503, 0)} without",
                    "0",
                    tally.missing_retry_after == 0,
                ),
                no_failures(tally),
                crash_check,
            ],
        )
    ]


# (5) Slow and lying clients

SLOW_BOUND_S: Final = 30.0  # how long slow connections are watched when no timeout is set


def slow_clients(scale: Scale) -> list[Phase]:
    """Connections that send their headers a byte a second, and bodies shorter than their
    Content-Length: normal requests are still answered fast, and the liars are shut out
    after the configured time."""
    env = service_env([WINE_MODEL], **scale.client_timeouts)
    settings = server_settings(env)
    header_timeout = getattr(settings, "header_timeout_s", None)
    body_timeout = getattr(settings, "body_timeout_s", None)
    with serve(env) as live:
        example = json.dumps(wine_example(live, WINE_MODEL)).encode()
        path = f"/predict/{WINE_MODEL}"
        slow, normal = asyncio.run(
            _slow_headers(live, path, example, scale.slow_connections, header_timeout)
        )
        short = asyncio.run(_short_bodies(live, path, scale.short_bodies, body_timeout))
        rss = peak_rss(live)
        crash_check = log_check(live)
    last = _short_phase(short, body_timeout, rss)
    last.checks.append(crash_check)
    return [_slow_phase(slow, normal, header_timeout, rss), last]


async def _trickle(port: int, data: bytes, bound_s: float) -> RawAnswer:
    """Send ``data`` a byte a second until the server closes or ``bound_s`` passes."""
    opened = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError:
        return RawAnswer(None, None, b"", REFUSED)
    reading = asyncio.create_task(read_all(reader, opened, bound_s))
    try:
        for byte in data:
            if reading.done():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.wait([reading], timeout=1.0)
    except OSError:
        pass  # the server closed; what it sent is in the reader's hands
    answer = await reading
    writer.close()
    return answer


async def _slow_headers(
    live: LiveServer, path: str, body: bytes, connections: int, timeout_s: float | None
) -> tuple[list[RawAnswer], Tally]:
    """Open the slow connections over a second, then time normal requests in turn while all
    of them are open (until the first could be closed by the server's header deadline)."""
    bound = min(timeout_s + 10 if timeout_s else SLOW_BOUND_S, 60.0)
    head = http_request(path, body)
    slow = []
    for _ in range(connections):
        slow.append(asyncio.create_task(_trickle(live.port, head, bound)))
        await asyncio.sleep(1.0 / connections)
    window = (timeout_s - 1.5) if timeout_s else bound - 1.5
    answers: list[Answer] = []
    async with Client(live.port, timeout_s=REQUEST_TIMEOUT_S) as http:
        start = time.perf_counter()
        while time.perf_counter() - start < max(window, 0.5):
            answers.append(await http.post(path, body, start=start))
            await asyncio.sleep(0.02)
    return list(await asyncio.gather(*slow)), Tally(answers)


def _slow_phase(slow: list[RawAnswer], normal: Tally, timeout_s: float | None, rss: int) -> Phase:
    closed = [a.closed_after for a in slow if a.closed_after is not None]
    answered = Tally([Answer(a.status, a.closed_after or 0, 0, a.failure) for a in slow])
    p99 = percentile(normal.latencies(), 99)
    if timeout_s is None:
        close_check = Check(
            "slow connections closed by the server",
            f"{len(closed)} of {len(slow)} within {SLOW_BOUND_S:g} s",
            "after the configured time (none configured)",
            False,
        )
    else:
        timely = [t for t in closed if timeout_s - 0.5 <= t <= timeout_s + CLOSE_SLACK_S]
        spread = f"{min(closed):.1f} to {max(closed):.1f} s" if closed else "none"
        close_check = Check(
            f"slow connections closed after the configured time (HEADER_TIMEOUT_S={timeout_s:g})",
            f"{len(timely)} of {len(slow)} closed {spread} after connecting; their answers: "
            f"{answered.describe_statuses()}",
            f"all, within {timeout_s:g} to {timeout_s + CLOSE_SLACK_S:g} s",
            len(timely) == len(slow),
            timing=True,
        )
    return Phase(
        "slow clients",
        f"{len(slow)} connections sending headers at 1 byte/s; meanwhile {normal.sent} normal "
        "requests, one at a time",
        normal,
        rss,
        latency_text(normal),
        [
            Check(
                f"normal requests' p99 while {len(slow)} slow connections are open",
                ms(p99),
                f"≤ {ms(SLOW_P99_S)}",
                p99 <= SLOW_P99_S,
                timing=True,
            ),
            close_check,
            no_failures(normal),
        ],
        figures={"slow_answers": slow},
    )


SHORT_DECLARED: Final = 1000
SHORT_SENT: Final = 10


async def _short_bodies(
    live: LiveServer, path: str, count: int, timeout_s: float | None
) -> list[RawAnswer]:
    """Declare a body of 1000 bytes, send 10, then wait for the server's answer."""
    request = http_request(path, b"x" * SHORT_DECLARED)[: -(SHORT_DECLARED - SHORT_SENT)]
    bound = min(timeout_s + 10 if timeout_s else SLOW_BOUND_S, 60.0)
    return list(
        await asyncio.gather(
            *(raw_exchange(live.port, request, bound_s=bound) for _ in range(count))
        )
    )


def _short_phase(short: list[RawAnswer], timeout_s: float | None, rss: int) -> Phase:
    tally = Tally([Answer(a.status, a.closed_after or float("nan"), 0.0, a.failure) for a in short])
    times = [a.closed_after for a in short if a.status is not None and a.closed_after]
    slowest = max(times) if len(times) == len(short) else float("inf")
    client_error = all(a.status is not None and 400 <= a.status < 500 for a in short)
    limit = (timeout_s or SLOW_BOUND_S) + CLOSE_SLACK_S
    setting = f"BODY_TIMEOUT_S={timeout_s:g}" if timeout_s else "no body timeout configured"
    return Phase(
        "slow clients",
        f"{len(short)} bodies shorter than their Content-Length ({SHORT_SENT} of "
        f"{SHORT_DECLARED} bytes), at once",
        tally,
        rss,
        f"answered and closed after {min(times):.1f} to {max(times):.1f} s" if times else "",
        [
            Check("answered 4xx", tally.describe_statuses(), "all 4xx", client_error),
            Check(
                f"answered within the body deadline ({setting})",
                "never" if slowest == float("inf") else f"{slowest:.1f} s",
                f"≤ {limit:g} s",
                slowest <= limit,
                timing=True,
            ),
        ],
    )


# (6) SIGTERM mid-load

SIGTERM_ROWS: Final = 8
SIGTERM_SAMPLES: Final = 1000
# How long after the server has read every request the signal comes: time for the app to
# take each up (admit or refuse it), not for the model to answer them.
SIGTERM_AFTER_S: Final = 0.05
# The model's deadline in this scenario: long enough that every request is admitted (its
# backlog fits), so that SIGTERM finds admitted work in flight rather than fast 503s.
SIGTERM_TIMEOUT_S: Final = 60.0
# The longest the signal waits for the server to have read every request.
SIGTERM_READ_BOUND_S: Final = 10.0


def sigterm(scale: Scale) -> list[Phase]:
    """Requests in flight when the server is told to stop: every one it took is answered
    before it exits, none is dropped.

    Every request is written at once; the signal comes once the server has read all of them
    (none waits in its accept queue or its receive buffers) and has taken each up: admitted
    it, or refused it at once. A connection the server has not yet accepted when it stops
    listening is reset by the kernel, which no server can answer; what it has taken must all
    be answered.
    """
    n = scale.sigterm_requests
    deadline = {f"{settings_key(WINE_MODEL).upper()}__TIMEOUT_S": f"{SIGTERM_TIMEOUT_S:g}"}
    with serve(service_env([WINE_MODEL], **deadline)) as live:
        example = wine_example(live, WINE_MODEL)
        body = json.dumps({"instances": [example] * SIGTERM_ROWS}).encode()
        path = f"/predict/{WINE_MODEL}?samples={SIGTERM_SAMPLES}"
        request = http_request(path, body)
        run = asyncio.run(_sigterm_run(live, request, n))
        crash_check = log_check(live)
    tally = Tally(
        [
            Answer(
                a.status,
                a.closed_after or float("nan"),
                0.0,
                a.failure,
                retry_after=header_of(a.data, "retry-after"),
            )
            for a in run.answers
        ]
    )
    refusals = Counter(
        "shutting down" if b"shutting down" in a.data else "at capacity"
        for a in run.answers
        if a.status == 503
    )
    refused = ", ".join(f"{reason}: {k}" for reason, k in refusals.most_common()) or "none"
    unread = "unknown" if run.unread is None else str(run.unread)
    return [
        Phase(
            "SIGTERM mid-load",
            f"{n} requests of {SIGTERM_ROWS} wine rows at S={SIGTERM_SAMPLES} (deadline "
            f"{SIGTERM_TIMEOUT_S:g} s), all written at once; SIGTERM {SIGTERM_AFTER_S:g} s "
            f"after the server had read them all ({run.waited_s:.2f} s after the first was "
            "written)",
            tally,
            run.rss,
            f"server exited {run.exit_s:.1f} s after SIGTERM with code {run.code}",
            [
                Check(
                    "in flight when SIGTERM came",
                    f"{n - run.before} of {n} (answered before it: {run.before}; not yet read "
                    f"by the server: {unread})",
                    "",
                ),
                Check(
                    "requests dropped (accepted, then closed without an answer)",
                    f"{tally.dropped} of {n}; answered 200: {tally.statuses.get(200, 0)}, "
                    f"refused 503: {refused}",
                    "0",
                    tally.dropped == 0,
                ),
                no_failures(tally),
                crash_check,
            ],
            figures={
                "answered_before_sigterm": run.before,
                "in_flight_at_sigterm": n - run.before,
                "unread_at_sigterm": run.unread,
            },
        )
    ]


@dataclass(frozen=True)
class _SigtermRun:
    answers: list[RawAnswer]
    before: int  # answered before the signal
    unread: int | None  # requests the server had not read when the signal came
    waited_s: float  # from writing the first request to the signal
    exit_s: float  # from the signal to the server's exit
    code: int | None
    rss: int  # the server's peak RSS just before the signal


async def _sigterm_run(live: LiveServer, request: bytes, count: int) -> _SigtermRun:
    """Write every request, wait until the server has read them all, SIGTERM, collect."""
    assert live.process is not None
    pending = count
    all_written = asyncio.Event()

    def written() -> None:
        nonlocal pending
        pending -= 1
        if pending == 0:
            all_written.set()

    started = time.perf_counter()
    exchanges = [
        asyncio.create_task(
            raw_exchange(live.port, request, bound_s=REQUEST_TIMEOUT_S, written=written)
        )
        for _ in range(count)
    ]
    bound = started + SIGTERM_READ_BOUND_S
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(SIGTERM_READ_BOUND_S):
            await all_written.wait()
    unread = unread_by_server(live.port)
    while unread and time.perf_counter() < bound:
        await asyncio.sleep(0.01)
        unread = unread_by_server(live.port)
    await asyncio.sleep(SIGTERM_AFTER_S)
    rss = peak_rss(live)
    before = sum(1 for task in exchanges if task.done())
    waited = time.perf_counter() - started
    live.process.send_signal(signal.SIGTERM)
    signalled = time.perf_counter()
    answers = await asyncio.gather(*exchanges)
    code = await asyncio.to_thread(live.process.wait, REQUEST_TIMEOUT_S)
    return _SigtermRun(answers, before, unread, waited, time.perf_counter() - signalled, code, rss)


SCENARIOS: Final[dict[str, Callable[[Scale], list[Phase]]]] = {
    "poison": poisoned_batches,
    "bombs": image_bombs,
    "cifar": cifar_overload,
    "wine": wine_overload,
    "slow": slow_clients,
    "sigterm": sigterm,
}
