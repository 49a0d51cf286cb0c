"""Hostile load against the real service: ``make chaos`` (``python -m bench.chaos``).

Poisoned batches, image bombs, CIFAR and wine overload, slow and lying clients, SIGTERM
mid-load: each scenario starts the service as ``make serve`` does, on 127.0.0.1 only, sends a
bounded number of requests within a bounded time and stops by itself. The table of what was
sent, what came back and each target's verdict is printed and written to ``bench/CHAOS.md``
(a few minutes on two cores; ``--quick``: under a minute, the scale ``make test`` runs a part
of in ``tests/test_chaos.py``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from bench import machine
from bench.chaos_report import Phase, table
from bench.chaos_scenarios import FULL, QUICK, SCENARIOS

CHAOS: Final = Path(__file__).with_name("CHAOS.md")

METHOD: Final = """\
- Each scenario starts its own server with `service.live_server.LiveServer` (the command
  `make serve` runs, bound to 127.0.0.1), serving the committed checkpoints (`checkpoints/`)
  on the CPU with only the models the scenario needs and otherwise the default settings
  (the quick run shortens the slow-client deadlines). The clients are asyncio + httpx in this
  process; slow, lying and SIGTERM clients use raw sockets.
- *answered by status*: HTTP answers by status code; then what got no answer: *dropped* (the
  connection was accepted, then closed or reset without an HTTP answer), *timeout* (no answer
  within the client's bound), *refused* (the connection was refused).
- *peak RSS*: the server's `VmHWM` from `/proc/<pid>/status` at the end of the phase (the
  high-water mark since it started, model loading included).
- *first 503*: from the phase's first request to the first 503 answer.
- *latency*: from sending a request to having read its whole answer, at the client.
- Checks marked as timing (refusal times, p99, throughput, deadlines) are wall-clock claims of
  this machine; `tests/test_chaos.py` asserts only the others (statuses, dropped connections,
  memory).
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the short version: fewer of all")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=list(SCENARIOS),
        help="run only these (repeatable); default: all",
    )
    parser.add_argument("--output", type=Path, default=CHAOS, help="the report to write")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    return parser.parse_args(argv)


def run(names: list[str], quick: bool) -> list[Phase]:
    scale = QUICK if quick else FULL
    phases: list[Phase] = []
    for name in names:
        started = time.monotonic()
        print(f"chaos: {name} ({scale.name}) ...", flush=True)
        found = SCENARIOS[name](scale)
        print(f"chaos: {name}: {time.monotonic() - started:.0f} s", flush=True)
        phases += found
    return phases


def report(
    phases: list[Phase],
    command: str,
    about: dict[str, str],
    started: datetime,
    minutes: float,
    quick: bool,
) -> str:
    """CHAOS.md: when and how it ran, on what (``about``, read at the start), the table."""
    checks = [c for p in phases for c in p.checks if c.ok is not None]
    missed = [c for c in checks if not c.ok]
    lines = [
        "# Hostile load",
        "",
        *(
            ["> **Quick run** (`--quick`): small counts; `make chaos` runs the full suite.", ""]
            if quick
            else []
        ),
        f"{started:%Y-%m-%d %H:%M} UTC, `{command}`, {minutes:.1f} min: "
        f"{len(checks) - len(missed)} of {len(checks)} checks pass"
        + (f"; missed: {', '.join(sorted({c.what for c in missed}))}." if missed else "."),
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in about.items()),
        f"| load average at end | {machine.load_average()} |",
        "",
        "## Results",
        "",
        table(phases),
        "",
        "## How it is measured",
        "",
        METHOD,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Phase]:
    args = parse_args(argv)
    names = args.scenario or list(SCENARIOS)
    started, clock = datetime.now(UTC), time.monotonic()
    about = machine.describe()  # the load average before the suite adds its own
    phases = run(names, args.quick)
    minutes = (time.monotonic() - clock) / 60
    text = table(phases)
    print("\n" + text)
    shown = ["python", "-m", "bench.chaos", *(argv if argv is not None else sys.argv[1:])]
    command = "make chaos" if argv is None and len(sys.argv) == 1 else shlex.join(shown)
    if not args.no_write:
        args.output.write_text(report(phases, command, about, started, minutes, args.quick))
        print(f"\n{command}: {minutes:.1f} min; wrote {args.output}")
    return phases


if __name__ == "__main__":
    main()
