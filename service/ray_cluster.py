"""A Ray node of our own on this machine: started with ``ray start``, stopped with all it ran.

``make serve-ray`` starts a head node when no cluster is running, and the tests start a head
and a second node beside it. Each node is ``ray start --block`` in a session of its own, with
its session files in a temporary folder of its own and every port it listens on picked
free, so a second cluster on the same machine (a concurrent test run, someone's notebook)
neither collides with it nor is touched when it stops. ``ray stop`` is not used: it stops
every Ray process of the machine, by name, whoever started it.

Stopping is SIGTERM to ``ray start --block``, which stops the node's processes (raylet, GCS,
workers, which run the actors) gracefully; then SIGKILL to its session; then whatever still
names the node's own folder on its command line (a worker that outlived its raylet), by
process id.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from service.live_server import HOST, free_port, free_ports

__all__ = ["RayNode", "RayNodeError", "node_processes", "ray_command"]

# Bounds, so that a node that never comes up fails rather than hangs; not speed checks.
START_TIMEOUT_S: Final = 120.0
STOP_TIMEOUT_S: Final = 30.0
_POLL_S: Final = 0.2
# Ray's smallest object store; this service passes small arrays, never large objects.
OBJECT_STORE_BYTES: Final = 100 * 1024 * 1024
# The ports a node's components listen on, each given one of ours (a head also its client
# server's): Ray's defaults are fixed numbers, which two nodes on one machine would share.
_COMPONENT_PORTS: Final = (
    "--node-manager-port",
    "--object-manager-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--metrics-export-port",
    "--runtime-env-agent-port",
)


# No usage report (nothing is sent anywhere); no drain on SIGTERM: whoever stops a node here
# has removed its Serve application first, so there is no traffic left to drain (Ray's
# default waits for it, tens of seconds).
_QUIET: Final = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}


class RayNodeError(RuntimeError):
    """The node did not start; the message carries ``ray start``'s output."""


def ray_command() -> str:
    """The ``ray`` command of this Python's environment (installed by ``.[ray]``)."""
    beside = Path(sys.executable).with_name("ray")
    found = str(beside) if beside.is_file() else shutil.which("ray")
    if found is None:
        raise RayNodeError("the ray command is not installed: pip install -e '.[ray]'")
    return found


class RayNode:
    """One ``ray start --block`` process: a head (``address`` None) or a node joining one.

    ``num_cpus`` and ``num_gpus`` are what the node offers the scheduler (None: what the
    machine has). ``node_ip`` is the address it gives the cluster: the loopback interface by
    default, which no other machine reaches; None lets Ray pick this machine's address.
    ``dashboard`` starts Ray's dashboard on the head (port 8265 unless ``dashboard_port``);
    tests leave it off, it costs a second and a hundred MB.
    """

    def __init__(
        self,
        *,
        address: str | None = None,
        num_cpus: int | None = None,
        num_gpus: int | None = None,
        dashboard: bool = False,
        dashboard_port: int | None = None,
        temp_dir: Path | None = None,
        env: dict[str, str] | None = None,
        node_ip: str | None = HOST,
    ) -> None:
        self.joins = address
        self.node_ip = node_ip
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.dashboard = dashboard
        self.dashboard_port = dashboard_port
        self._owns_temp_dir = temp_dir is None
        # Short: Ray puts socket files under it, and a socket path has at most 107 bytes.
        self.temp_dir = temp_dir or Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
        self.env = {**os.environ, **_QUIET, **(env or {})}
        self.port = free_port() if address is None else None
        self.address = address if address is not None else f"{HOST}:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.temp_dir.with_name(self.temp_dir.name + ".log")

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

    def command(self) -> list[str]:
        # Different ports for every component, and none the head's own (Ray refuses to start
        # a node that would give one port to two of them).
        head = () if self.port is None else (self.port,)
        *components, client_server = free_ports(len(_COMPONENT_PORTS) + 1, besides=head)
        ports = dict(zip(_COMPONENT_PORTS, components, strict=True))
        command = [ray_command(), "start", "--block", "--disable-usage-stats"]
        if self.node_ip is not None:
            command += [f"--node-ip-address={self.node_ip}"]
        if self.joins is None:
            command += ["--head", f"--port={self.port}"]
            command += [f"--ray-client-server-port={client_server}"]
            command += [f"--include-dashboard={str(self.dashboard).lower()}"]
            if self.dashboard:
                command += ["--dashboard-host=127.0.0.1"]
                if self.dashboard_port is not None:
                    command += [f"--dashboard-port={self.dashboard_port}"]
        else:
            command += [f"--address={self.joins}"]
        command += [f"{flag}={port}" for flag, port in ports.items()]
        command += [f"--temp-dir={self.temp_dir}", f"--object-store-memory={OBJECT_STORE_BYTES}"]
        if self.num_cpus is not None:
            command += [f"--num-cpus={self.num_cpus}"]
        if self.num_gpus is not None:
            command += [f"--num-gpus={self.num_gpus}"]
        return command

    def start(self) -> None:
        """Start the node; return once ``ray start`` says it is up (or fail with its output)."""
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, not Ray directly
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._fail(f"ray start exited with code {self.process.returncode}")
            if "will now block forever" in self.output():
                return
            time.sleep(_POLL_S)
        self._fail(f"the Ray node was not up within {START_TIMEOUT_S:g} s")

    def _fail(self, reason: str) -> None:
        output = self.output()
        self.stop()
        raise RayNodeError(f"{reason}; its output:\n{output}")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """Stop every process of this node, and only those; remove its files. Idempotent."""
        process = self.process
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        for pid in self.leftovers(process.pid if process is not None else None):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process = None
        if self._owns_temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        self.log_path.unlink(missing_ok=True)

    def leftovers(self, session: int | None = None) -> list[int]:
        """Processes of this node still running (``session``: ``ray start``'s pid)."""
        return node_processes(self.temp_dir, session)


def node_processes(temp_dir: Path, session: int | None = None) -> list[int]:
    """The processes of a node: those in the session ``ray start`` led (``session``, its
    pid; Ray's actors make process groups of their own, and rename themselves ``ray::...``),
    and those naming the node's own folder ``temp_dir`` on their command line."""
    marker = str(temp_dir).encode()
    return [
        pid
        for pid, sid, cmdline in _processes()
        if (session is not None and sid == session) or marker in cmdline
    ]


def _processes() -> Iterator[tuple[int, int, bytes]]:
    """Every other process: its id, its session's id, its command line."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                yield int(entry.name), int(stat[3]), (entry / "cmdline").read_bytes()
