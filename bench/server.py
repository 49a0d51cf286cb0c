"""Start a uvicorn server in its own process group, wait until it is ready, always stop it.

Servers run as separate processes (one uvicorn worker each), pinned to their own core, so the
load generator measures them from outside as a client would.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICE_APP = "service.app:create_app"
BARE_APP = "bench.bare_app:create_app"
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class ServerError(RuntimeError):
    """The server exited or never became ready; the message carries its last output."""


@dataclass(frozen=True)
class Server:
    pid: int
    url: str
    command: list[str]
    env: dict[str, str]  # the variables set on top of ours, for the report


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def uvicorn_command(app: str, port: int, prefix: list[str]) -> list[str]:
    return [
        *prefix,
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
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
    ready_path: str = "/readyz",
    timeout_s: float = 120.0,
) -> Iterator[Server]:
    """Run ``app`` until the block ends; torch gets ``threads`` threads (its core share)."""
    port = free_port()
    command = uvicorn_command(app, port, prefix or [])
    extra = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **(env or {})}
    # Quiet by default: the report is the output. BENCH_SERVER_LOG=1 shows the server's log.
    quiet = None if os.environ.get("BENCH_SERVER_LOG") else subprocess.DEVNULL
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **extra},
        stdout=quiet,
        stderr=quiet,
        start_new_session=True,  # its own process group: killed whole, whatever it spawned
        preexec_fn=_die_with_parent,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(process, url + ready_path, timeout_s)
        yield Server(process.pid, url, command, extra)
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM the server's process group, SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _die_with_parent() -> None:
    """Runs in the child before exec: if the harness is killed outright, the server goes too."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User + system CPU seconds of the whole process and of its main thread (the event loop).

    Wall-clock throughput drops when another job takes the core; CPU seconds spent per
    request do not, so they show where the service's cost goes even on a busy machine. The
    rest of the process is mostly the batchers' model threads.
    """
    return _cpu(Path(f"/proc/{pid}/stat")), _cpu(Path(f"/proc/{pid}/task/{pid}/stat"))


def _cpu(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _wait_ready(process: subprocess.Popen[bytes], url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(
                f"server exited with {process.returncode} before {url} answered 200; "
                "rerun with BENCH_SERVER_LOG=1 to see its output"
            )
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(url, timeout=1) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.1)
    raise ServerError(f"{url} did not answer 200 within {timeout_s:g} s")
