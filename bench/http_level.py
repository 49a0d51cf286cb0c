"""HTTP level: the service against a bare FastAPI endpoint under the same wrk load.

Four servers (six on CUDA), each one uvicorn worker on the same core, over the HTTP layer
the service is deployed with (:mod:`bench.server`), and one of several workers on request:

* ``service``: the real service with every model of the repository (batching on, the
  defaults);
* ``bare``: ``bench.bare_app``, which decodes the body as the service does and answers a
  canned body, the ceiling of HTTP + JSON here, as a plain FastAPI endpoint;
* ``bare direct``: the same endpoint behind the service's direct route
  (:class:`~service.routes.direct.DirectRoute`), without FastAPI's per-request preparation,
  which the service's predict routes skip too;
* ``unbatched``: the service with ``WINE_BNN__MAX_BATCH_SIZE=1`` (for the wine model it
  times), batching off;
* off the CPU (``--device cuda``), two more, for the wine model: ``graphs off``
  (``WINE_BNN__CUDA_GRAPHS=false``, its batches run eagerly on CUDA) and ``host CPU``
  (``WINE_BNN__DEVICE=cpu``, what the GPU has to beat);
* with ``--cifar-workers N`` (N > 1), one more for ``/predict/cifar`` alone: ``N workers``,
  the service serving only the CIFAR model in N worker processes (the image's ``WORKERS``),
  on every core but the load generator's. One process reads and checks every upload's
  multipart body and image headers on its one event loop, in Python, which caps what a GPU
  behind it can be given; N processes have N loops.

Each gets ``/predict/wine?model=bnn&samples=S`` closed loop at each concurrency and at one
fixed arrival rate (half the batched service's closed-loop throughput at concurrency 32,
unless ``--rate``). The batched service also gets the same row as an Open Inference Protocol
request, ``POST /v2/models/wine-bnn/infer`` (JSON tensors, ``samples`` S), at concurrency 32
right after its ``/predict/wine`` points, and ``/predict/cifar`` (its default model) with
JPEG uploads; its memory is read when ready, after all that load, and last after one request
to each model at its largest ``samples`` (draws are made when first asked for).

The targets compare the service with the bare endpoint at the concurrencies of
:data:`PAIRED_CONCURRENCY`; both are up at once for that, and are timed in alternating slices
(ABBA, twice; route ``wine-vs-bare``) so that a drift of this shared machine falls on both.
The service is compared with ``bare direct`` the same way at concurrency 32 (route
``wine-vs-bare-direct``; no target): what the model, the batcher and the middleware cost
beside the same HTTP and JSON work.
"""

from __future__ import annotations

import argparse
import json
import shlex
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import bodies, load, machine, memory, server
from bench.checkpoints import CIFAR_MODEL, DEFAULT_DIR, ROUTE_MODELS, WINE_MODEL, repository
from models.task import IMAGE_CLASSIFICATION, TABULAR_REGRESSION
from service.routes.predict import WINE_DEFAULT
from service.settings import Settings, settings_key
from service.tasks import TASKS

WINE_PATH = f"/predict/wine?model={WINE_DEFAULT}&samples={{samples}}"
CIFAR_PATH = "/predict/cifar?samples={samples}"  # its default model, CIFAR_MODEL
V2_PATH = f"/v2/models/{WINE_MODEL}/infer"  # samples in the body's parameters
V2_CONNECTIONS = 32  # the concurrency of the v2 / /predict/wine comparison
PAIRED_CONCURRENCY = (1, 32)  # where the service's targets are set against the bare endpoint
BARE_DIRECT = "bare direct"  # the bare endpoint behind the direct route, compared at c=32
# The wine model's own settings, as per-model variables: WINE_BNN__MAX_BATCH_SIZE...
_WINE_SETTING = f"{settings_key(WINE_MODEL).upper()}__{{}}"
UNBATCHED = _WINE_SETTING.format("MAX_BATCH_SIZE")
# Off the CPU, two more servers: the wine model without CUDA graphs, and on the host's CPU.
DEVICE_VARIANTS: dict[str, dict[str, str]] = {
    "graphs off": {_WINE_SETTING.format("CUDA_GRAPHS"): "false"},
    "host CPU": {_WINE_SETTING.format("DEVICE"): "cpu"},
}


@dataclass(frozen=True)
class Point:
    server: str  # service, bare, BARE_DIRECT, unbatched, or a DEVICE_VARIANTS name
    # wine; v2 (wine as an Open Inference Protocol request) or wine-vs-v2 beside it; wine-vs-bare
    # (service's and bare's slices, alternating) or wine-vs-bare-direct (the service's and bare
    # direct's); or cifar
    route: str
    result: load.LoadResult
    cpu_ms_per_request: float  # the server's CPU time (all threads) per completed request
    loop_ms_per_request: float  # the part on the main thread: HTTP, routing, JSON, batcher
    command: str  # the wrk command line, with the variables its script reads


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wine point")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument(
        "--samples",
        type=int,
        default=TASKS[TABULAR_REGRESSION].defaults["default_samples"],
        help="wine posterior samples S",
    )
    parser.add_argument("--rate", type=float, help="fixed arrival rate (default: see above)")
    parser.add_argument("--rate-connections", type=int, default=128, help="pool for --rate")
    parser.add_argument(
        "--cifar-samples",
        type=int,
        default=TASKS[IMAGE_CLASSIFICATION].defaults["default_samples"],
        help="CIFAR posterior samples S",
    )
    parser.add_argument("--cifar-images", type=int, default=8, help="JPEGs per request")
    parser.add_argument("--cifar-connections", type=int, default=16)
    parser.add_argument(
        "--cifar-workers",
        type=int,
        default=1,
        help="also time /predict/cifar on a service of this many worker processes (1: not)",
    )
    parser.add_argument("--cifar-duration", type=float, default=15.0, help="seconds")
    parser.add_argument("--repository", type=Path, default=DEFAULT_DIR, help="the models")
    parser.add_argument("--device", default="cpu", help="the service's DEVICE: cpu, cuda, auto")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


class Driver:
    """Runs wrk against one server from the load generator's core; keeps every point."""

    def __init__(self, place: machine.Placement, points: list[Point]) -> None:
        self.place = place
        self.points = points

    def run(
        self,
        target: server.Server,
        name: str,
        route: str,
        path: str,
        body: bodies.Body,
        *,
        connections: int,
        duration_s: float,
        rate: float | None = None,
        steady: bool = False,
    ) -> load.LoadResult:
        url = target.url + path
        cpu_before = server.tree_cpu_seconds(target.pid)
        result = load.run_wrk(
            url,
            body.path,
            body.content_type,
            connections=connections,
            duration_s=duration_s,
            rate=rate,
            steady=steady,
            prefix=self.place.load,
        )
        cpu_after = server.tree_cpu_seconds(target.pid)
        cpu_ms, loop_ms = (
            (after - before) * 1e3 / max(result.requests, 1)
            for after, before in zip(cpu_after, cpu_before, strict=True)
        )
        env = load.wrk_env(body.path, body.content_type, rate, steady)
        wrk = load.wrk_command(url, connections, duration_s)
        command = shell_line(env, [*self.place.load, *wrk])
        self.points.append(Point(name, route, result, cpu_ms, loop_ms, command))
        shown = f"{rate:g}/s" if rate is not None else f"c={connections}"
        print(
            f"  {name:<9} {route:<5} {shown:>8}: {result.throughput:9,.1f} req/s, "
            f"p50 {result.p50_ms:7.2f} ms, p99 {result.p99_ms:8.2f} ms, "
            f"CPU {cpu_ms:6.2f} ms/req ({loop_ms:.2f} on the loop)"
            + (f", {result.errors} errors" if result.errors else "")
            + (f", {result.late} late" if result.late else "")
            + (
                f", {result.steady_throughput:,.2f} req/s steady"
                if result.steady_throughput is not None
                else ""
            ),
            flush=True,
        )
        return result

    def wine_points(
        self,
        target: server.Server,
        name: str,
        path: str,
        body: bodies.Body,
        args: argparse.Namespace,
        rate: float | None,
    ) -> None:
        # Not recorded: fills the allocator and the connection pools before timing.
        load.run_wrk(
            target.url + path,
            body.path,
            body.content_type,
            connections=32,
            duration_s=1.0,
            prefix=self.place.load,
        )
        for c in args.concurrency:
            self.run(target, name, "wine", path, body, connections=c, duration_s=args.duration)
        if rate is not None:
            self.run(
                target,
                name,
                "wine",
                path,
                body,
                connections=args.rate_connections,
                duration_s=args.duration,
                rate=rate,
            )

    def v2_points(
        self,
        target: server.Server,
        v2: bodies.Body,
        wine_path: str,
        wine: bodies.Body,
        duration_s: float,
    ) -> None:
        """The wine row as a v2 inference request and as ``/predict/wine``, at the concurrency
        they are compared at, in alternating slices (ABBA, twice) so that a drift of the
        machine or of the batching falls on both: routes ``v2`` and ``wine-vs-v2``."""
        load.run_wrk(  # not recorded, as in wine_points
            target.url + V2_PATH,
            v2.path,
            v2.content_type,
            connections=V2_CONNECTIONS,
            duration_s=1.0,
            prefix=self.place.load,
        )
        for which in ABBA:
            route, path, body = (("wine-vs-v2", wine_path, wine), ("v2", V2_PATH, v2))[which]
            self.run(
                target,
                "service",
                route,
                path,
                body,
                connections=V2_CONNECTIONS,
                duration_s=slice_seconds(duration_s),
            )

    def paired_points(
        self,
        servers: dict[str, server.Server],
        route: str,
        path: str,
        body: bodies.Body,
        concurrency: tuple[int, ...],
        duration_s: float,
    ) -> None:
        """``/predict/wine`` on two servers (``servers``, A then B), both up, in alternating
        slices at each of ``concurrency``: points of ``route``."""
        names = list(servers)
        for c in concurrency:
            for which in ABBA:
                self.run(
                    servers[names[which]],
                    names[which],
                    route,
                    path,
                    body,
                    connections=c,
                    duration_s=slice_seconds(duration_s),
                )


# Which of two things (A: 0, B: 1) each slice of an alternating comparison times: ABBA, twice.
ABBA = (0, 1, 1, 0) * 2


def cifar_on_workers(
    args: argparse.Namespace,
    points: list[Point],
    env: dict[str, str],
    path: str,
    cifar: bodies.Body,
) -> dict[str, object]:
    """``/predict/cifar`` on ``args.cifar_workers`` worker processes serving the CIFAR model
    alone, on every core but the load generator's; its description for the report."""
    wide = machine.wide_placement()
    only_cifar = {**env, "MODELS": json.dumps([CIFAR_MODEL])}
    with server.running(
        server.SERVICE_APP,
        env=only_cifar,
        prefix=wide.server,
        threads=wide.server_threads,
        workers=args.cifar_workers,
    ) as many:
        ready_everywhere(many.url, args.cifar_workers)
        post_once(many.url + path, cifar)
        Driver(wide, points).run(
            many,
            f"{args.cifar_workers} workers",
            "cifar",
            path,
            cifar,
            connections=args.cifar_connections,
            duration_s=args.cifar_duration,
            steady=True,
        )
        return {**_describe(many), "placement": wide.note}


def ready_everywhere(url: str, workers: int, timeout_s: float = 300.0) -> None:
    """Until ``/readyz`` has said ready on many fresh connections in a row: each may reach any
    worker, and one still loading or warming its models would answer the load with 503s."""
    deadline = time.monotonic() + timeout_s
    in_a_row = 0
    while in_a_row < 8 * workers:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=10) as answer:
                in_a_row = in_a_row + 1 if answer.status == 200 else 0
        except OSError as exc:  # HTTPError (a 503) is one
            in_a_row = 0
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{url}: {workers} workers not all ready in {timeout_s:g} s"
                ) from exc
            time.sleep(0.2)


def slice_seconds(duration_s: float) -> float:
    """Half a point's duration, in whole seconds (what wrk takes): each of A and B gets four."""
    return float(max(1, round(duration_s / 2)))


def post_once(url: str, body: bodies.Body) -> None:
    _post(url, body.path.read_bytes(), body.content_type)


def _post(url: str, data: bytes, content_type: str) -> None:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()


def ask_every_draw(url: str, images: bodies.Body) -> None:
    """One request to each served model at its largest ``samples`` (a tabular model's example
    row, or ``images``). A model makes its posterior draws when a request first asks for them,
    so each then holds all it may: the memory read after is the most their draws can take."""
    with urllib.request.urlopen(url + "/models", timeout=60) as response:
        models = json.load(response)["models"]
    for model in models:
        path = f"{url}/predict/{model['name']}?samples={model['max_samples']}"
        if model["task"] == TABULAR_REGRESSION:
            _post(path, json.dumps(model["input"]["example"]).encode(), "application/json")
        else:
            post_once(path, images)


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = parse_args(argv)
    place = machine.placement()
    print(place.note)
    points: list[Point] = []
    driver = Driver(place, points)
    servers: dict[str, dict[str, object]] = {}
    found = repository(args.repository, ROUTE_MODELS)
    with tempfile.TemporaryDirectory() as tmp:
        wine = bodies.tabular_body(Path(tmp), found[WINE_MODEL])
        v2 = bodies.v2_tabular_body(Path(tmp), found[WINE_MODEL], args.samples)
        cifar = bodies.cifar_body(Path(tmp), bodies.cifar_files(args.cifar_images))
        env = memory.service_env(args.repository, found, args.device)
        run = {"prefix": place.server, "threads": place.server_threads}
        wine_path = WINE_PATH.format(samples=args.samples)
        cifar_path = CIFAR_PATH.format(samples=args.cifar_samples)

        with (
            server.running(server.SERVICE_APP, env=env, **run) as svc,
            server.running(server.BARE_APP, env=env, **run) as bare,
            server.running(server.BARE_DIRECT_APP, env=env, **run) as direct,
        ):
            ready = memory.read(svc.pid)
            rate = args.rate
            driver.wine_points(svc, "service", wine_path, wine, args, None)
            driver.v2_points(svc, v2, wine_path, wine, args.duration)
            if rate is None:
                at_32 = [
                    p.result for p in points if p.route == "wine" and p.result.connections == 32
                ]
                base = at_32[0].throughput if at_32 else points[-1].result.throughput
                rate = float(max(1, round(base / 2)))
            driver.run(
                svc,
                "service",
                "wine",
                wine_path,
                wine,
                connections=args.rate_connections,
                duration_s=args.duration,
                rate=rate,
            )
            post_once(svc.url + cifar_path, cifar)
            driver.run(
                svc,
                "service",
                "cifar",
                cifar_path,
                cifar,
                connections=args.cifar_connections,
                duration_s=args.cifar_duration,
                steady=True,
            )
            after = memory.read(svc.pid)
            driver.wine_points(bare, "bare", wine_path, wine, args, rate)
            paired = {"service": svc, "bare": bare}
            driver.paired_points(
                paired, "wine-vs-bare", wine_path, wine, PAIRED_CONCURRENCY, args.duration
            )
            beside_direct = {"service": svc, BARE_DIRECT: direct}
            driver.paired_points(
                beside_direct, "wine-vs-bare-direct", wine_path, wine, (32,), args.duration
            )
            servers |= {name: _describe(srv) for name, srv in (paired | beside_direct).items()}
            ask_every_draw(svc.url, cifar)
            every_draw = memory.read(svc.pid)

        if args.cifar_workers > 1:
            servers["workers"] = cifar_on_workers(args, points, env, cifar_path, cifar)

        unbatched_env = {**env, UNBATCHED: "1"}
        with server.running(server.SERVICE_APP, env=unbatched_env, **run) as off:
            driver.wine_points(off, "unbatched", wine_path, wine, args, rate)
            servers["unbatched"] = _describe(off)

        if args.device != "cpu":
            for name, variant in DEVICE_VARIANTS.items():
                with server.running(server.SERVICE_APP, env={**env, **variant}, **run) as other:
                    driver.wine_points(other, name, wine_path, wine, args, rate)
                    servers[name] = _describe(other)

    report: dict[str, object] = {
        "placement": place.note,
        "device": args.device,
        "samples": args.samples,
        "cifar_samples": args.cifar_samples,
        "cifar_images_per_request": args.cifar_images,
        "rate": rate,
        "models": list(found),
        "wine_model": WINE_MODEL,
        "cifar_model": CIFAR_MODEL,
        "wine_max_wait_ms": Settings()
        .model_settings(WINE_MODEL, TASKS[TABULAR_REGRESSION].defaults)
        .max_wait_ms,
        "points": [
            {
                "server": p.server,
                "route": p.route,
                "cpu_ms_per_request": p.cpu_ms_per_request,
                "loop_ms_per_request": p.loop_ms_per_request,
                "command": p.command,
                **p.result.as_dict(),
            }
            for p in points
        ],
        "memory": {
            "ready": asdict(ready),
            "after_load": asdict(after),
            "every_draw": asdict(every_draw),
        },
        "servers": servers,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


def shell_line(env: dict[str, str], command: list[str]) -> str:
    """The command as one could paste it into a shell, its variables in front."""
    assignments = [f"{key}={shlex.quote(value)}" for key, value in env.items()]
    return " ".join([*assignments, shlex.join(command)])


def _describe(srv: server.Server) -> dict[str, object]:
    return {"command": shell_line(srv.env, srv.command)}


if __name__ == "__main__":
    main()
