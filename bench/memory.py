"""Memory of the service: peak and current resident set, read from ``/proc/<pid>/status``.

``VmHWM`` is the kernel's high-water mark of the resident set, so a peak during start-up
(drawing the posteriors) or under load is caught without sampling. ``bench.http_level`` reads
it when the service is ready and again after all its load; run alone, this script does the
same with a short load of its own.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import bodies, load, machine, server
from bench.checkpoints import CIFAR_MODEL, DEFAULT_DIR, ROUTE_MODELS, WINE_MODEL, repository

GiB = 1024**3
TARGET_BYTES = 1 * GiB


@dataclass(frozen=True)
class Memory:
    peak_bytes: int  # VmHWM
    current_bytes: int  # VmRSS

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / 2**20

    @property
    def current_mib(self) -> float:
        return self.current_bytes / 2**20


def read(pid: int) -> Memory:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            fields[name] = int(value.split()[0]) * 1024  # the kernel writes kB
    return Memory(fields["VmHWM"], fields["VmRSS"])


def service_env(folder: Path, models: Iterable[str], device: str = "cpu") -> dict[str, str]:
    """The service on ``folder``, serving ``models`` (named, so that a ``MODELS`` of the
    environment does not change what is measured), on the CPU unless told: the memory target
    is about the CPU."""
    return {
        "MODEL_REPOSITORY": str(folder),
        "MODELS": json.dumps(list(models)),
        "DEVICE": device,
        "LOG_LEVEL": "warning",
    }


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of load per route")
    parser.add_argument("--repository", type=Path, default=DEFAULT_DIR, help="the models")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    place = machine.placement()
    found = repository(args.repository, ROUTE_MODELS)
    with tempfile.TemporaryDirectory() as tmp:
        wine = bodies.tabular_body(Path(tmp), found[WINE_MODEL])
        cifar = bodies.cifar_body(Path(tmp), bodies.cifar_files(8))
        with server.running(
            server.SERVICE_APP,
            env=service_env(args.repository, found),
            prefix=place.server,
            threads=place.server_threads,
        ) as svc:
            ready = read(svc.pid)
            for path, body, connections in (
                (f"/predict/{WINE_MODEL}?samples=100", wine, 32),
                (f"/predict/{CIFAR_MODEL}?samples=32", cifar, 16),
            ):
                load.run_wrk(
                    svc.url + path,
                    body.path,
                    body.content_type,
                    connections=connections,
                    duration_s=args.duration,
                    prefix=place.load,
                )
            after = read(svc.pid)
    report = {"ready": asdict(ready), "after_load": asdict(after)}
    for name, memory in (("ready", ready), ("after load", after)):
        print(f"{name:>10}: peak {memory.peak_mib:,.0f} MiB, current {memory.current_mib:,.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
