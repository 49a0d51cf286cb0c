"""The real service in a uvicorn subprocess on a free local port, for tests and demos.

In-process test clients skip the parts users meet first: the command line, the port, start-up
and shutdown, real sockets. :class:`LiveServer` runs exactly what ``make serve`` (or the
image's start command) runs and waits for ``/readyz``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, NoReturn, Self

import httpx

from service.connection_guard import HTTP_PROTOCOL

__all__ = ["LiveServer", "ServerStartError", "free_port"]

HOST: Final = "127.0.0.1"
# Bounds, so that a server that never comes up fails instead of hanging; not speed checks.
STARTUP_TIMEOUT_S: Final = 120.0
STOP_TIMEOUT_S: Final = 15.0
_POLL_S: Final = 0.1


class ServerStartError(RuntimeError):
    """The server exited or never became ready; the message carries its output."""


def free_port(host: str = HOST) -> int:
    """A port nothing listens on now (the OS picks it; another process could take it first)."""
    (port,) = free_ports(1, host)
    return port


def free_ports(count: int, host: str = HOST, *, besides: Collection[int] = ()) -> list[int]:
    """``count`` different ports nothing listens on now, none of them in ``besides``.

    Each is held until all are picked: one after another, :func:`free_port` may hand out the
    same port twice (a Ray node given one port for two of its components fails to start).
    """
    with contextlib.ExitStack() as held:
        ports: list[int] = []
        while len(ports) < count:
            probe = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            probe.bind((host, 0))
            port = probe.getsockname()[1]
            if port not in besides:
                ports.append(port)
        return ports


def default_command(port: int) -> list[str]:
    """What ``make serve`` runs, on ``port`` of the loopback interface."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "service.app:create_app",
        "--http",
        HTTP_PROTOCOL,
        "--host",
        HOST,
        "--port",
        str(port),
        "--no-access-log",
    ]


class LiveServer:
    """Start the service on entry, wait until ``/readyz`` says 200, stop it on exit.

    ``env`` is added to this process's environment (the service reads its settings there).
    ``command`` replaces the default uvicorn command line; it must serve on ``port``.
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        command: Sequence[str] | None = None,
        port: int | None = None,
        cwd: str | os.PathLike[str] | None = None,
        startup_timeout: float = STARTUP_TIMEOUT_S,
    ) -> None:
        self.port = port if port is not None else free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.command = list(command) if command is not None else default_command(self.port)
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)

    def start(self) -> None:
        # Output to a file, not a pipe: a pipe nobody reads fills up and stalls the server.
        with tempfile.NamedTemporaryFile(prefix="live-server-", suffix=".log", delete=False) as log:
            self.log_path = Path(log.name)
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # so stop() can end all it started, and only that
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._fail(
                    f"the server exited with code {self.process.returncode} before it was ready"
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(_POLL_S)
        self._fail(f"the server was not ready within {self.startup_timeout:g} s")

    def _fail(self, reason: str) -> NoReturn:
        self.stop()
        output = self.output()
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
        raise ServerStartError(f"{reason}; its output:\n{output}")

    def stop(self) -> int | None:
        """SIGTERM (a graceful shutdown), then SIGKILL if need be; return the exit code."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # Anything it left behind in its session (a worker, a process a shell started).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return process.returncode

    def output(self) -> str:
        """Everything the server has printed so far."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")
