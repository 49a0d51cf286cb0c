"""What the numbers were measured on, and which cores the server and the load generator get.

Absolute numbers mean little without the machine beside them, so every report carries this.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("torch", "fastapi", "starlette", "uvicorn", "pydantic", "numpy")


@dataclass(frozen=True)
class Placement:
    """The server's cores and the load generator's, kept apart so neither steals the other's."""

    server: list[str]  # command prefix, e.g. ["taskset", "-c", "0"]
    load: list[str]
    server_threads: int  # torch threads in the server and the model level
    note: str


def placement() -> Placement:
    """One core for the server where there are only two; two (its event loop and its model
    thread) where there are four or more, as on a GPU host; the load generator on the next."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2 or not shutil.which("taskset"):
        return Placement([], [], len(cores), f"{len(cores)} core(s): server and load share them")
    server_cores = cores[:2] if len(cores) >= 4 else cores[:1]
    return _pinned(server_cores, cores[len(server_cores)])


def wide_placement() -> Placement:
    """Every core but the last for the server, the last for the load generator: for a server
    of several worker processes (the image's ``WORKERS``), which :func:`placement`'s one or
    two cores would starve."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2 or not shutil.which("taskset"):
        return Placement([], [], 1, f"{len(cores)} core(s): server and load share them")
    return _pinned(cores[:-1], cores[-1])


def _pinned(server_cores: list[int], load_core: int) -> Placement:
    """The server on ``server_cores`` and the load generator on ``load_core`` (taskset), one
    torch thread in the server."""
    server, load = ",".join(map(str, server_cores)), str(load_core)
    plural = "s" if len(server_cores) > 1 else ""
    return Placement(
        ["taskset", "-c", server],
        ["taskset", "-c", load],
        1,
        f"server pinned to core{plural} {server}, load generator to core {load} (taskset)",
    )


def cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def ram_gib() -> float:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


def load_average() -> str:
    return " ".join(_read("/proc/loadavg").split()[:3]) or "unknown"


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def describe() -> dict[str, str]:
    """One flat record for RESULTS.md."""
    return {
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "ram": f"{ram_gib():.1f} GiB",
        "kernel": platform.release(),
        "load average at start": load_average(),
        **versions(),
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
