"""Run every benchmark, print one table of figures against their targets, write RESULTS.md.

Each part runs in its own process, so one's threads and memory don't colour the next, and
its exact command goes into the report beside its figures. ``--quick`` is a smoke run of
the same steps with short durations; its report says so.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import decode_level, machine, ray_level, report
from bench.load import LoadToolError, wrk_command

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("RESULTS.md")
FINDINGS = Path(__file__).with_name("findings.md")
SMOKE_BANNER = (
    "> **Smoke run** (`--quick`), numbers not representative; to be replaced by `make bench`.\n"
)

METHOD = """\
- **Model level** (`M`): rows (or images) per second of the service's predictor for each
  model with a posterior (its task kind's `predictor`, as the service builds it) on one batch
  (the wine test split, 735 rows; 64 CIFAR test JPEGs, the image task's `max_batch_size`, of
  which the HTTP benchmark uploads the first 8) against the notebook's
  `compute_predictions` way: one row at a time, S forward passes of the model in eval mode,
  each drawing fresh weights. Same process, device and torch threads, each for a fixed time
  budget. The notebook loop runs under `torch.no_grad()`, without DataLoader or summaries, so
  the ratio is a lower bound. The CIFAR figure is also the in-process reference for CIFAR
  over HTTP, run on the server's core with its thread count.
- **Ensemble against its single network** (`M`): the vectorised rows (images) per second of
  `wine-bnn-ensemble` over `wine-bnn`'s at S=100, and of `cifar-bcnn-ensemble` over
  `cifar-bcnn`'s at S=32, on the same batch in the model-level run, the two timed in 5
  alternating slices of the budget each so that a change in the machine's load falls on both:
  an ensemble's S draws (draw s from member s mod K) run in one pass through one network's
  forward, so at equal S it should cost what the single network does. A pair whose ensemble
  is not in the repository is skipped and the table says so. An ensemble's own notebook
  figure runs pass s on member s mod K.
- **HTTP level** (`H`): one uvicorn worker per server, each over the HTTP layer the service is
  deployed with (uvicorn's h11 behind `service.connection_guard`, as `make serve` and the image
  start it): the service (every model of the repository), `bench.bare_app` (same query
  parameters, the service's own decoder for the wine model, canned answer of the service's
  shape through the service's JSON encoder; a plain FastAPI endpoint), the same endpoint behind
  the service's direct route (`create_direct_app`: without FastAPI's per-request preparation,
  which the service's predict routes skip) and the service with `WINE_BNN__MAX_BATCH_SIZE=1`.
  wrk (one thread) drives each, closed loop at each concurrency and at a fixed arrival rate.
  The service and the bare endpoint are up together, and the targets against bare (c=1 p50,
  c=32 req/s) compare slices that alternate between them (ABBA, twice: the mean req/s and the
  median p50 of each one's slices), so that the drift of this shared machine, which moved the
  bare endpoint's c=1 p50 from 0.19 to 0.37 ms between two runs of one day, falls on both. The
  service against the bare endpoint behind the direct route is timed the same way at c=32
  (no target): the cost of the model, the batcher and the middleware alone.
  Body: one wine instance (the example `GET /models` shows); the service also gets that row as
  an Open Inference Protocol request (`POST /v2/models/wine-bnn/infer`, an FP32 [1, 11] JSON
  tensor, `samples` in its parameters) at c=32, in slices alternating with `/predict/wine` at
  c=32 (ABBA, twice), the mean of each route's slices being what the v2 / `/predict` ratio
  compares; CIFAR: a multipart upload of real test-split JPEGs; its images/s count the answers
  after the first batch's over the time to the last one, since a closed loop of second-long
  requests starts with an empty pipeline. With `--cifar-workers N` (what `bench/gpu.sh` passes
  on a host of 8 cores or more), CIFAR also on a service of N worker processes serving only
  that model, on every core but wrk's, timed once all N say they are ready. CPU ms/req is the
  server's user + system time (all its processes) over completed requests: unlike req/s,
  another job on the core does not change it.
- **Fixed arrival rate**: wrk's `delay()` hook (`bench/wrk_post.lua`) schedules request n
  at n/rate s and the next free connection of a pool sends it. Caveat: it is open loop only
  while a connection is free; a request that found the whole pool busy went out late, wrk
  times it from when it was sent, and the table says how many were late. hey's `-q` was
  rejected: it limits each worker, and its workers tick in step, so 200/s from 32 workers
  arrives as bursts of 32 every 160 ms.
- **Ray Serve** (`R`): the service on a local Ray cluster (a head node here, `make
  serve-ray`'s code): the ingress and one `wine-bnn` replica of one CPU, then two (scaled in
  place), each driven closed loop at S=100 with the one-row body (c=32) and with 1024 rows a
  request (c=8, the rate once answers flow). CPU ms/req is that of all the node's processes
  (proxy, ingress, replicas, Ray's daemons) over completed requests. The caveat: this
  machine's cores are shared by the load generator, Ray's proxy, the ingress and both
  replicas, so a second replica cannot double anything here; on a cluster it brings its own
  cores.
- **Decode stage** (`D`): images per second of the service's image decoder
  (`service.image_decoding.ImageDecoder`, in one event loop as in the service), 4 requests of
  64 images at a time decoded to 32×32, with a pool of 1 thread and of 2, in alternating
  slices: CIFAR-10 test JPEGs as they are (32×32: Pillow's header parsing, Python under the
  GIL, is most of the work, so threads cannot share it) and re-encoded at 512×512 (a
  photo's order of work, done in Pillow's C code without the GIL).
- **Memory**: `VmHWM` (peak resident set) and `VmRSS` from `/proc/<pid>/status` of the
  batched service, once `/readyz` answers 200 and again after all its load.
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: short durations")
    parser.add_argument(
        "--repository", type=Path, help="the model repository, passed on to every part"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="the report to write")
    parser.add_argument("--note", action="append", default=[], help="a line for the report")
    parser.add_argument(
        "--cifar-workers",
        type=int,
        default=1,
        help="also time CIFAR over HTTP on this many worker processes (bench.http_level)",
    )
    parser.add_argument(
        "--device", default="cpu", help="where the models run, in both parts: cpu, cuda, auto"
    )
    return parser.parse_args(argv)


def part(
    module: str, options: list[str], prefix: list[str], folder: Path
) -> tuple[dict[str, Any], str]:
    """Run ``python -m module``; return its JSON figures and the command, as one would type it."""
    out = folder / f"{module}.json"
    python = Path(sys.executable)
    shown = python.relative_to(ROOT) if python.is_relative_to(ROOT) else python
    command = [*prefix, str(shown), "-m", module, *options]
    print(f"\n$ {shlex.join(command)}", flush=True)
    subprocess.run([*command, "--json", str(out)], cwd=ROOT, check=True)
    return json.loads(out.read_text()), shlex.join(command)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        wrk_command("http://127.0.0.1/", 1, 1)
    except LoadToolError as exc:
        sys.exit(str(exc))
    place = machine.placement()
    started, clock = datetime.now(UTC), time.monotonic()
    about = machine.describe()
    shared = ["--device", args.device]
    if args.repository:
        shared += ["--repository", str(args.repository)]
    if args.quick:
        model_opts = ["--duration", "0.5"]
        http_opts = ["--duration", "1", "--cifar-duration", "8"]
    else:
        model_opts = ["--duration", "3"]
        http_opts = ["--duration", "5", "--cifar-duration", "15"]
    model_opts += ["--threads", str(place.server_threads), *shared]
    if args.cifar_workers > 1:
        http_opts += ["--cifar-workers", str(args.cifar_workers)]
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        model, model_cmd = part("bench.model_level", model_opts, place.server, Path(tmp))
        http, http_cmd = part("bench.http_level", [*http_opts, *shared], [], Path(tmp))
        # Before Ray's part: the processes a Ray cluster leaves for a while after it stops
        # would take the cores the decoding threads are timed on.
        decode_opts = ["--duration", "1" if args.quick else "6"]
        decode, decode_cmd = part("bench.decode_level", decode_opts, [], Path(tmp))
        ray_opts = ["--duration", "1" if args.quick else "5", *shared]
        ray, ray_cmd = part("bench.ray_level", ray_opts, [], Path(tmp))
    rows = report.model_rows(model, "M") + report.http_rows(http, model, "H")
    rows += ray_level.rows(ray, "R") + decode_level.rows(decode, "D")
    text = report.table(rows)
    print("\n" + text)
    minutes = (time.monotonic() - clock) / 60
    command = "python -m bench.run --quick" if args.quick else "make bench"
    args.output.write_text(
        results_md(
            args,
            about,
            place,
            text,
            model,
            http,
            model_cmd,
            http_cmd,
            started,
            minutes,
            extra_commands={"R": ray_cmd, "D": decode_cmd},
        )
    )
    print(f"\n{command}: {minutes:.1f} min; wrote {args.output}")


def results_md(
    args: argparse.Namespace,
    about: dict[str, str],
    place: machine.Placement,
    text: str,
    model: dict[str, Any],
    http: dict[str, Any],
    model_cmd: str,
    http_cmd: str,
    started: datetime,
    minutes: float,
    extra_commands: dict[str, str] | None = None,
) -> str:
    run = "`.venv/bin/python -m bench.run --quick`" if args.quick else "`make bench`"
    notes = list(args.note)
    lines = [
        "# Benchmark results",
        "",
        *([SMOKE_BANNER] if args.quick else []),
        f"{started:%Y-%m-%d %H:%M} UTC, {run}, {minutes:.1f} min. Claims are the ratios: each "
        "pair was measured side by side in this run; absolute numbers drift with the machine.",
        "",
        *(f"**Note:** {n.rstrip('.')}.\n" for n in notes),
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in about.items()),
        f"| placement | {place.note}; torch threads in the server and model level: "
        f"{place.server_threads} |",
        "",
        "## Figures",
        "",
        text,
        "",
        f"- `M`: `{model_cmd}`",
        f"- `H`: `{http_cmd}`",
        *(f"- `{key}`: `{command}`" for key, command in (extra_commands or {}).items()),
        "",
        "## How each figure is measured",
        "",
        METHOD,
        "<details><summary>Server and wrk commands of each point</summary>",
        "",
        *(f"- {name}: `{s['command']}`" for name, s in http["servers"].items()),
        *(
            f"- {p['server']} {p['route']} c={p['connections']}"
            + (f" rate={p['rate']:g}/s" if p["rate"] is not None else "")
            + f": `{p['command']}`"
            for p in http["points"]
        ),
        "",
        "</details>",
        "",
    ]
    if FINDINGS.is_file():
        lines += [FINDINGS.read_text().rstrip(), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
