"""``make serve-ray``: the service on Ray Serve, in the foreground, as ``make serve`` runs it.

``python -m service.ray_serve [--config deploy/ray-serve.yaml] [--port 8000]``:

1. joins the Ray cluster at ``--address`` (or ``RAY_ADDRESS``, or one started on this machine
   with ``ray start --head``), else starts a head node of its own
   (:class:`~service.ray_cluster.RayNode`) and prints the command that joins more machines;
2. reads the Serve config (Ray's own format, checked with Ray's schema), keeps the entries of
   the models it serves, and, when the cluster has no GPU at all, runs the models that ask for
   one on the CPU, saying so;
3. deploys :func:`service.ray_app.application` with the config's deployment options and
   HTTP port (``--port`` over it), waits for ``/readyz``, and runs until Ctrl-C or SIGTERM;
4. then removes the application, and stops Serve and the Ray node if it started them: no Ray
   process of its own is left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Final

import httpx

try:
    import ray
    import yaml
    from ray import serve
    from ray.serve.schema import ServeDeploySchema

    from service.ray_app import APP_NAME, INGRESS, application, served_models
except ModuleNotFoundError as missing:  # Ray brings PyYAML
    if missing.name not in ("ray", "yaml"):
        raise
    sys.exit("error: Ray is not installed: pip install -e '.[ray]' (make serve-ray does)")
from service.live_server import free_port
from service.port import port_problem
from service.ray_cluster import RayNode, RayNodeError
from service.registry import StartupError
from service.settings import Settings

logger = logging.getLogger("service.ray_serve")

DEFAULT_CONFIG: Final = Path(__file__).resolve().parents[1] / "deploy" / "ray-serve.yaml"
READY_TIMEOUT_S: Final = 300.0  # a model that never warms up fails rather than hangs
DASHBOARD_PORT: Final = 8265  # Ray's default


class Stopped(Exception):
    """Ctrl-C or SIGTERM: stop, cleaning up."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip("`: "))
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="Serve config file")
    parser.add_argument("--host", help="HTTP host (default: the config's, else 0.0.0.0)")
    parser.add_argument("--port", type=int, help="HTTP port (default: $PORT, else the config's)")
    parser.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS"),
        help="a running cluster's address (default: $RAY_ADDRESS, else one started on this "
        "machine by `ray start --head`, else a new head node here)",
    )
    parser.add_argument(
        "--new-head",
        action="store_true",
        help="start a head node here even if a cluster is running on this machine",
    )
    parser.add_argument(
        "--num-cpus",
        type=int,
        help="CPUs a head node started here offers (default: the cores, or what the config's "
        "replicas ask for at their most, if more: on one machine they share its cores)",
    )
    parser.add_argument(
        "--no-dashboard", action="store_true", help="start no Ray dashboard on a new head node"
    )
    return parser.parse_args(argv)


def load_config(path: Path) -> Any:
    """The config as Ray's ``ServeDeploySchema``: its own checks, its own error messages."""
    return ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))


def deployment_options(app_config: Any) -> dict[str, dict[str, Any]]:
    """Each ``deployments`` entry as :func:`ray.serve.deployment` options, by its name."""
    return {
        entry.name: entry.model_dump(exclude_unset=True, exclude={"name"})
        for entry in app_config.deployments
    }


def without_gpus(options: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``options`` with every GPU ask dropped, for a cluster that has none to give."""
    fitted: dict[str, dict[str, Any]] = {}
    for name, entry in options.items():
        actor = dict(entry.get("ray_actor_options") or {})
        if actor.get("num_gpus"):
            logger.warning("the cluster has no GPU: %s runs on the CPU", name)
            actor.pop("num_gpus")
            entry = {**entry, "ray_actor_options": actor}
        fitted[name] = entry
    return fitted


def cpus_asked(options: Mapping[str, Mapping[str, Any]], names: list[str]) -> float:
    """CPUs the deployments ``names`` ask for at their most replicas (1 each by default)."""
    total = 0.0
    for name in names:
        entry = options.get(name, {})
        cpus = (entry.get("ray_actor_options") or {}).get("num_cpus", 1)
        scaling = entry.get("autoscaling_config") or {}
        replicas = scaling.get("max_replicas") or entry.get("num_replicas") or 1
        total += cpus * (replicas if isinstance(replicas, int) else 1)
    return total


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM raise :class:`Stopped`, once: the clean-up is not interrupted.

    Called again after each ``ray.init``, which installs a SIGTERM handler of its own (it
    logs, then lets the signal kill the process, clean-up or not).
    """

    def stop(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Stopped(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)


@dataclass
class Launch:
    """One ``make serve-ray``: what it deploys, and what it started, to stop it again."""

    config: Any  # ServeDeploySchema
    app_config: Any  # its application, ServeApplicationSchema
    settings: Settings
    names: list[str]  # the models served
    options: dict[str, dict[str, Any]]  # deployment options, of served deployments only
    host: str
    port: int
    node: RayNode | None = None  # the head node this started, if it did
    deployed: bool = False

    @property
    def name(self) -> str:
        return self.app_config.name or APP_NAME

    def run(self, args: argparse.Namespace) -> None:
        """Join or start the cluster, deploy, wait until ready; then block until signalled."""
        address = None if args.new_head else args.address or _running_cluster()
        if address is None:
            needed = cpus_asked(self.options, [*self.names, INGRESS])
            cpus = args.num_cpus or max(os.cpu_count() or 1, math.ceil(needed))
            self.node = RayNode(
                num_cpus=cpus,
                dashboard=not args.no_dashboard,
                dashboard_port=_free_or(DASHBOARD_PORT),
                node_ip=None,  # the machine's address: other machines can join
            )
            logger.info(
                "starting a Ray head node here (%d CPUs; its files in %s)", cpus, self.node.temp_dir
            )
            self.node.start()
            address = self.node.address
        ray.init(address=address, runtime_env=self.app_config.runtime_env or None)
        stop_on_signals()
        gcs = ray.get_runtime_context().gcs_address
        logger.info("Ray cluster at %s: more machines join with `ray start --address=%s`", gcs, gcs)
        options = self.options if ray.cluster_resources().get("GPU") else without_gpus(self.options)
        http = {**self.config.http_options.model_dump(), "host": self.host, "port": self.port}
        serve.start(http_options=http, proxy_location=self.config.proxy_location)
        self.deployed = True
        serve.run(
            application(self.settings, options),
            name=self.name,
            route_prefix=self.app_config.route_prefix,
            logging_config=self.app_config.logging_config,
        )
        local = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        _wait_ready(f"http://{local}:{self.port}")
        logger.info(
            "serving %s at http://%s:%d (Ctrl-C stops)", ", ".join(self.names), self.host, self.port
        )
        while True:
            time.sleep(3600)

    def tear_down(self) -> None:
        """Remove the application; stop Serve and the node if this started them."""
        if ray.is_initialized():
            with contextlib.suppress(Exception):
                if self.node is not None:  # Serve is ours too: stop it, the application with it
                    serve.shutdown()
                elif self.deployed:  # another's cluster: remove only what this deployed
                    serve.delete(self.name)
            ray.shutdown()
        if self.node is not None:
            self.node.stop()
            logger.info("stopped the Ray node this started")


def plan(args: argparse.Namespace) -> Launch:
    """What to deploy: the config's first application, the models the settings serve."""
    config = load_config(args.config)
    app_config, *others = config.applications
    if others:
        logger.warning(
            "%s holds %d applications; deploying the first", args.config, len(others) + 1
        )
    settings = Settings(**app_config.args)
    names = list(served_models(settings))
    options = deployment_options(app_config)
    skipped = sorted(set(options) - {*names, INGRESS})
    if skipped:  # e.g. MODELS names fewer models than the config was written for
        logger.warning("%s: %s are not served; their entries are skipped", args.config, skipped)
        options = {key: value for key, value in options.items() if key not in skipped}
    host = args.host or config.http_options.host or "0.0.0.0"
    port = args.port or int(os.environ.get("PORT") or config.http_options.port)
    return Launch(config, app_config, settings, names, options, host, port)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        launch = plan(args)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop_on_signals()
    try:
        launch.run(args)
    except Stopped as stopped:
        logger.info("%s: removing the deployment", stopped)
    except (RayNodeError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        launch.tear_down()
    return 0


def _running_cluster() -> str | None:
    """A cluster ``ray start --head`` started on this machine (Ray's own address file)."""
    try:
        ray.init(address="auto", logging_level=logging.WARNING)
    except ConnectionError:
        return None
    finally:
        stop_on_signals()
    address: str = ray.get_runtime_context().gcs_address
    ray.shutdown()
    return address


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{url}/readyz did not answer 200 within {READY_TIMEOUT_S:g} s")


def _free_or(port: int) -> int:
    """``port`` if nothing listens there, else one that is free."""
    return port if port_problem("127.0.0.1", port) is None else free_port()


if __name__ == "__main__":
    sys.exit(main())
