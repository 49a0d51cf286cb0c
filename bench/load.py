"""Drive a server with wrk and parse what it measured.

Closed loop: N connections, each sending its next request as soon as its last answer came.
Fixed arrival rate: request n is due at n/rate s and the next free connection of a pool
sends it (``wrk_post.lua``'s delay() hook). That is open loop while a connection is free;
a request that finds the whole pool busy goes out late, and wrk times it from when it was
sent, so its wait is missing from the tail. The script counts such requests: the report
flags a point where any were late.

Why not hey's ``-q``: it is a per-worker limit, and its workers tick in step, so "200/s
from 32 workers" arrives as a burst of 32 requests every 160 ms, not one every 5 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

WRK_SCRIPT = Path(__file__).with_name("wrk_post.lua")
WRK_MARKER = "BENCH_JSON "


class LoadToolError(RuntimeError):
    """wrk is missing, failed, or printed nothing we can read."""


@dataclass(frozen=True)
class LoadResult:
    connections: int
    duration_s: float
    requests: int
    errors: int  # connection errors, timeouts and answers >= 400
    throughput: float  # completed requests per second
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    rate: float | None = None  # fixed arrival rate asked for; None: closed loop
    late: int = 0  # fixed rate only: requests sent late because every connection was busy
    late_max_ms: float = 0.0
    steady_throughput: float | None = None  # with steady=True: answers/s after the first burst

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def wrk_command(url: str, connections: int, duration_s: float, timeout_s: float = 10) -> list[str]:
    """One wrk thread: the load generator stays on its own core."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise LoadToolError("wrk not found: apt-get install -y wrk (make bench does)")
    return [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{duration_s:g}s",
        f"--timeout={timeout_s:g}s",
        "-s",
        str(WRK_SCRIPT),
        url,
    ]


def wrk_env(
    body: Path, content_type: str, rate: float | None = None, steady: bool = False
) -> dict[str, str]:
    """What the Lua script reads; also written into the report beside each command."""
    env = {"BENCH_BODY": str(body), "BENCH_CONTENT_TYPE": content_type}
    if rate is not None:
        env["BENCH_RATE"] = f"{rate:g}"
    if steady:
        env["BENCH_STEADY"] = "1"
    return env


def run_wrk(
    url: str,
    body: Path,
    content_type: str,
    *,
    connections: int,
    duration_s: float,
    rate: float | None = None,
    steady: bool = False,
    prefix: list[str] | None = None,
) -> LoadResult:
    """Closed loop over ``connections``, or a fixed ``rate`` served by that pool.

    ``steady`` also measures the rate once answers flow, leaving out the ramp: for requests
    that take seconds, the empty pipeline at the start would otherwise weigh on req/s.
    """
    command = [*(prefix or []), *wrk_command(url, connections, duration_s)]
    env = {**os.environ, **wrk_env(body, content_type, rate, steady)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise LoadToolError(f"wrk exited {done.returncode}: {done.stderr or done.stdout}")
    return parse_wrk(done.stdout, connections, rate)


def parse_wrk(output: str, connections: int, rate: float | None = None) -> LoadResult:
    lines = [line for line in output.splitlines() if line.startswith(WRK_MARKER)]
    if not lines:
        raise LoadToolError(f"no {WRK_MARKER.strip()} line in wrk's output:\n{output}")
    data = json.loads(lines[-1][len(WRK_MARKER) :])
    seconds = data["duration_us"] / 1e6
    steady = data.get("steady_rps", -1)  # -1: not asked for, or too few answers
    return LoadResult(
        connections=connections,
        duration_s=seconds,
        requests=data["requests"],
        errors=sum(data["errors"].values()),
        throughput=data["requests"] / seconds,
        p50_ms=data["p50_us"] / 1e3,
        p95_ms=data["p95_us"] / 1e3,
        p99_ms=data["p99_us"] / 1e3,
        max_ms=data["max_us"] / 1e3,
        rate=rate,
        late=data.get("late", 0),
        late_max_ms=data.get("late_max_ms", 0.0),
        steady_throughput=steady if steady >= 0 else None,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="POST a file with wrk; print the figures.")
    parser.add_argument("url")
    parser.add_argument("--body", type=Path, required=True, help="file sent as the body")
    parser.add_argument("--content-type", default="application/json")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds")
    parser.add_argument("--rate", type=float, help="fixed arrival rate (requests/s)")
    args = parser.parse_args(argv)
    result = run_wrk(
        args.url,
        args.body,
        args.content_type,
        connections=args.connections,
        duration_s=args.duration,
        rate=args.rate,
    )
    print(json.dumps(result.as_dict(), indent=2))


if __name__ == "__main__":
    main()
