"""Start a uvicorn server in its own process group, wait until it is ready, always stop it.

Servers run as separate processes (one uvicorn worker each), pinned to their own core, so the
load generator measures them from outside as a client would, over the HTTP layer the service
is deployed with (``make serve``, the image): uvicorn's h11 behind the slow-client guard
(:mod:`service.connection_guard`). The bare endpoint runs over the same layer, so that service
over bare is the cost of what the service adds, not of a different HTTP parser (uvicorn's
default, httptools, parses a request in about 0.09 ms less CPU here, for both).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from service.connection_guard import HTTP_PROTOCOL
from service.live_server import LiveServer, free_port

ROOT = Path(__file__).resolve().parents[1]
SERVICE_APP = "service.app:create_app"
BARE_APP = "bench.bare_app:create_app"
BARE_DIRECT_APP = "bench.bare_app:create_direct_app"


@dataclass(frozen=True)
class Server:
    pid: int
    url: str
    command: list[str]
    env: dict[str, str]  # the variables set on top of ours, for the report


def uvicorn_command(app: str, port: int, prefix: list[str], workers: int = 1) -> list[str]:
    return [
        *prefix,
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        app,
        "--http",
        HTTP_PROTOCOL,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]


@contextlib.contextmanager
def running(
    app: str,
    *,
    env: Mapping[str, str] | None = None,
    prefix: list[str] | None = None,
    threads: int = 1,
    workers: int = 1,
) -> Iterator[Server]:
    """Run ``app`` until the block ends, in ``workers`` processes (``--workers``, as the
    image's ``WORKERS``); torch gets ``threads`` threads in each (its core share)."""
    port = free_port()
    command = uvicorn_command(app, port, prefix or [], workers)
    extra = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **(env or {})}
    with LiveServer(extra, command=command, port=port, cwd=ROOT) as live:
        assert live.process is not None
        yield Server(live.process.pid, live.url, command, extra)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User + system CPU seconds of the whole process and of its main thread (the event loop).

    Wall-clock throughput drops when another job takes the core; CPU seconds spent per
    request do not, so they show where the service's cost goes even on a busy machine. The
    rest of the process is mostly the batchers' model threads.
    """
    return _cpu(Path(f"/proc/{pid}/stat")), _cpu(Path(f"/proc/{pid}/task/{pid}/stat"))


def tree_cpu_seconds(pid: int) -> tuple[float, float]:
    """:func:`cpu_seconds` of ``pid`` and of the processes it started, added up: uvicorn with
    more than one worker supervises, and its children serve (their main threads are the
    event loops). With one worker there are none, and this is :func:`cpu_seconds`."""
    total, loop = cpu_seconds(pid)
    for child in _children(pid):
        with contextlib.suppress(OSError):  # a child that has just exited
            child_total, child_loop = tree_cpu_seconds(child)
            total, loop = total + child_total, loop + child_loop
    return total, loop


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _cpu(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
