"""Ray Serve level: the service on a local Ray cluster, one wine replica against two.

A head node on this machine, the ingress (no CPU reserved for it) and N ``wine-bnn``
replicas of one CPU each (``make serve-ray``'s code: :func:`service.ray_app.application`).
wrk drives ``/predict/wine?model=bnn`` closed loop, first with one replica, then, after the
deployment is scaled to two in place, with two, with two bodies at S=100: one row (the HTTP
benchmark's request: the proxy and the ingress set the pace, the replicas idle) and 1024
rows (the replicas set it). CPU ms/req is that of every process of the Ray node. Caveat: on
a two-core machine the two replicas share the cores with the load generator, Ray's proxy and
the ingress, so two replicas cannot double anything here; on a cluster, each replica brings
its own cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import bodies, load, server
from bench.checkpoints import DEFAULT_DIR, WINE_MODEL, repository
from bench.report import Row
from service.live_server import free_port
from service.ray_cluster import RayNode, node_processes
from service.settings import Settings

PATH = "/predict/wine?model=bnn&samples={samples}"
# The request whose model work outweighs the HTTP around it: the most rows a request may hold
# (the tabular task's max_instances), at the default S; fewer connections, as each takes tens
# of ms at a replica.
HEAVY_ROWS = 1024
HEAVY_CONNECTIONS = 8
READY_TIMEOUT_S = 300.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per point")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--samples", type=int, default=100, help="S of the one-row request")
    parser.add_argument("--repository", type=Path, default=DEFAULT_DIR, help="the models")
    parser.add_argument("--device", default="cpu", help="the replicas' DEVICE")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def heavy_body(folder: Path, one: bodies.Body) -> bodies.Body:
    """``HEAVY_ROWS`` copies of the one-row body's instance."""
    row = json.loads(one.path.read_text())
    path = folder / "heavy.json"
    path.write_text(json.dumps({"instances": [row] * HEAVY_ROWS}))
    return bodies.Body(path, one.content_type, HEAVY_ROWS)


def deploy(settings: Settings, replicas: int, url: str) -> None:
    """Deploy (or scale in place to) ``replicas`` wine replicas; wait until they answer."""
    from ray import serve

    from service.ray_app import APP_NAME, INGRESS, application

    options = {
        INGRESS: {"ray_actor_options": {"num_cpus": 0}},
        WINE_MODEL: {"num_replicas": replicas, "ray_actor_options": {"num_cpus": 1}},
    }
    serve.run(application(settings, options), name=APP_NAME, route_prefix="/")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        status = serve.status().applications[APP_NAME].deployments[WINE_MODEL]
        running = {str(k): v for k, v in status.replica_states.items()}.get("RUNNING", 0)
        ready = httpx.get(f"{url}/readyz", timeout=5).status_code == 200
        if ready and running == replicas and len(status.replica_states) == 1:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{replicas} replicas not running: {status.replica_states}")
        time.sleep(0.5)


def node_cpu_seconds(node: RayNode) -> float:
    """User + system CPU seconds of the node's processes so far: Ray's proxy, the ingress,
    the replicas, Ray's own daemons (what each request costs the cluster, whatever else
    runs on the machine)."""
    assert node.process is not None
    total = 0.0
    for pid in node_processes(node.temp_dir, node.process.pid):
        with contextlib.suppress(OSError, ValueError):
            total += server.cpu_seconds(pid)[0]
    return total


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import ray
    from ray import serve

    args = parse_args(argv)
    found = repository(args.repository, (WINE_MODEL,))
    settings = Settings(models=(WINE_MODEL,), model_repository=args.repository, device=args.device)
    points: list[dict[str, Any]] = []
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp, RayNode(num_cpus=3) as head:
        one = bodies.tabular_body(Path(tmp), found[WINE_MODEL])
        heavy = heavy_body(Path(tmp), one)
        ray.init(address=head.address, logging_level="WARNING", log_to_driver=False)
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            for replicas in (1, 2):
                deploy(settings, replicas, url)
                for name, body, connections in (
                    ("one row", one, args.connections),
                    (f"{HEAVY_ROWS} rows", heavy, HEAVY_CONNECTIONS),
                ):
                    samples = args.samples
                    target = url + PATH.format(samples=samples)
                    load.run_wrk(  # not recorded: warms the pools and the allocator
                        target, body.path, body.content_type, connections=8, duration_s=1.0
                    )
                    before = node_cpu_seconds(head)
                    result = load.run_wrk(
                        target,
                        body.path,
                        body.content_type,
                        connections=connections,
                        duration_s=args.duration,
                        steady=body is heavy,
                    )
                    cpu_ms = (node_cpu_seconds(head) - before) * 1e3 / max(result.requests, 1)
                    print(
                        f"  ray {replicas} replica(s), {name} S={samples}: "
                        f"{result.throughput:8,.1f} req/s, p50 {result.p50_ms:7.1f} ms, "
                        f"p99 {result.p99_ms:7.1f} ms, CPU {cpu_ms:.1f} ms/req"
                        + (f", {result.errors} errors" if result.errors else ""),
                        flush=True,
                    )
                    points.append(
                        {
                            "replicas": replicas,
                            "body": name,
                            "rows": body.instances,
                            "samples": samples,
                            "cpu_ms_per_request": cpu_ms,
                            **result.as_dict(),
                        }
                    )
            serve.shutdown()
        finally:
            ray.shutdown()
    report: dict[str, Any] = {"model": WINE_MODEL, "device": args.device, "points": points}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


def _steady(point: dict[str, Any]) -> dict[str, Any]:
    """The point with its answers/s once they flow as its throughput, where it has that."""
    steady = point.get("steady_throughput")
    return point if steady is None else {**point, "throughput": steady}


def rows(figures: dict[str, Any], source: str) -> list[Row]:
    """One row per body: req/s (and rows/s) with one replica and with two, and their ratio."""
    out = []
    by_body: dict[str, dict[int, dict[str, Any]]] = {}
    for point in figures["points"]:
        by_body.setdefault(point["body"], {})[point["replicas"]] = point
    for body, points in by_body.items():
        if 1 not in points or 2 not in points:
            continue
        one, two = (_steady(points[n]) for n in (1, 2))
        rows_per_request = one["rows"]
        shown = f"{one['throughput']:,.0f} / {two['throughput']:,.0f} req/s"
        if rows_per_request > 1:
            shown += (
                f" ({one['throughput'] * rows_per_request:,.0f} / "
                f"{two['throughput'] * rows_per_request:,.0f} rows/s)"
            )
        errors = one["errors"] + two["errors"]
        ratio = two["throughput"] / one["throughput"] if one["throughput"] else float("nan")
        cpu = f"; CPU {one['cpu_ms_per_request']:.1f} / {two['cpu_ms_per_request']:.1f} ms/req"
        out.append(
            Row(
                f"Ray Serve {figures['model']}, {body} S={one['samples']} "
                f"c={one['connections']}: 1 / 2 replicas (2 cores shared with the load "
                "generator, proxy and ingress)",
                f"{shown} = {ratio:.2f}×{cpu}" + (f"; {errors} errors" if errors else ""),
                source=source,
            )
        )
    return out


if __name__ == "__main__":
    main()
