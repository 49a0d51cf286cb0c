"""The service on Ray Serve: one deployment per model of the repository, behind one ingress.

``import_path: service.ray_app:build_app`` in a Serve config (``deploy/ray-serve.yaml``,
``serve run``, KubeRay's ``RayService``), or ``make serve-ray`` (:mod:`service.ray_serve`).

The seam is the model backend (:class:`service.backend.ModelBackend`), and nothing above it
changes:

* The **ingress** deployment is exactly :func:`service.app.create_app`, whose registry
  connects each model to its deployment (:meth:`Ingress.connect`) instead of starting a
  batcher. Everything per request stays there, as in one process: admission, reading the
  body, decoding (images on its pool), the deadline, encoding JSON or tensors. It loads each
  checkpoint on the CPU for what decoding and encoding need (features, classes, kind) and
  verifies it, so it knows the version every replica must serve.
* Each **model** deployment (:class:`ModelReplica`, named after the model) holds the model,
  its fixed posterior and its own :class:`~service.batcher.DynamicBatcher`, built by the same
  :class:`~service.registry.ModelRegistry` code ``make serve`` runs. It gets decoded
  :class:`~service.predictor.Job` objects (numpy arrays) and answers each with its rows'
  :class:`~service.predictor.BatchResult` (:class:`ReplicaAnswer`).

Why our batcher and not ``@serve.batch``: ``@serve.batch`` coalesces calls up to a count
and a wait, but a batch here is measured in rows (one request may hold 1 or 1024), one pass
runs the first S_max draws of the fixed posterior for jobs of different ``samples`` and
``level`` and hands each its own rows and first S draws (the answers do not depend on what
shares a batch), and admission refuses at once what could not be answered before its
deadline, with a retry hint from the real backlog. ``@serve.batch`` does none of that;
wrapping the batcher in it would only add a second queue.

Same answers everywhere: every replica draws its posterior from the same seed
(:func:`models.predictive.fixed_posterior`) from a checkpoint whose sha256 it verifies, and
says its version with every answer; the ingress refuses an answer of another version (a 503),
so an answer never depends on which replica or node served it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import ray
import torch
from fastapi import FastAPI
from ray import serve
from ray.exceptions import RayActorError
from ray.serve import Application
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.checkpoint import read_manifest
from service.access_log import REQUEST_ID_HEADER
from service.app import create_app
from service.backend import ModelBackend, record_replica
from service.batcher import (
    Admission,
    BatcherClosedError,
    BatchObserver,
    DeadlineExceededError,
    QueueFullError,
)
from service.metrics import ServiceMetrics
from service.predictor import BatchResult, Job
from service.registry import FAILED_RETRY_S, ModelRegistry, ServedModel
from service.settings import ModelSettings, Settings
from service.tasks import TASKS

__all__ = [
    "APP_NAME",
    "INGRESS",
    "Ingress",
    "ModelReplica",
    "RayModelBackend",
    "ReplicaAnswer",
    "application",
    "build_app",
]

logger = logging.getLogger(__name__)

APP_NAME: Final = "bayes-serve"  # the Serve application's name
INGRESS: Final = "ingress"  # its ingress deployment's; each model's is the model's name
# Requests the ingress takes at once: Serve's default (5) would serialise the HTTP layer.
INGRESS_MAX_ONGOING: Final = 1024
# A replica that died mid-request: the job is run again on another, this many times at most
# (inference is a pure function of the job), before the client gets a 503.
REPLICA_RETRIES: Final = 3
_RETRY_PAUSE_S: Final = 0.05  # doubled each time
# Retry-After when the replicas that could run a request are gone or refusing at Ray's door.
REPLICA_LOST_RETRY_S: Final = 1.0


# ---------------------------------------------------------------------------------------------
# What crosses from a replica to the ingress: plain dataclasses of numpy arrays and strings.


@dataclass(frozen=True)
class ReplicaError:
    """Why a replica did not answer a job, as the batcher said it (it crosses processes as
    data, not as an exception, so that its kind and retry hint survive the trip)."""

    kind: str  # one of _ERRORS' keys, or "fault"
    message: str
    retry_after: float = 0.0


@dataclass(frozen=True)
class BatchReport:
    """One batch a replica ran, for the ingress's ``/metrics`` (each batch reported once)."""

    requests: int
    rows: int
    seconds: float


@dataclass(frozen=True)
class ReplicaAnswer:
    """A job's rows of its batch's summaries, or why there are none; who answered."""

    replica: str  # DEPLOYMENT#ID@NODE: the X-Replica header and the access log name it
    version: str  # the checkpoint's, as GET /models says it
    result: BatchResult | None = None
    error: ReplicaError | None = None
    batch: BatchReport | None = None  # the batch this job ran in, if no job reported it yet
    queue_depth: int = 0  # the replica's queue when it answered


@dataclass(frozen=True)
class ReplicaInfo:
    replica: str
    version: str
    device: str
    execution: str


# ---------------------------------------------------------------------------------------------
# The model replica


class _BatchReports(ServiceMetrics):
    """The replica's metrics: it keeps the last batch for the first of its jobs to report.

    The batcher reports a batch after it has set its jobs' results and before any of them
    resumes, so the first job to resume after a report is one of that batch's.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pending: BatchReport | None = None
        self.queue_depth = 0

    def for_model(self, model: str) -> _BatchReports:  # type: ignore[override]
        return self

    def on_batch(self, *, requests: int, rows: int, seconds: float) -> None:
        self.pending = BatchReport(requests, rows, seconds)

    def on_queue_depth(self, depth: int) -> None:
        self.queue_depth = depth

    def take(self) -> BatchReport | None:
        report, self.pending = self.pending, None
        return report


# The batcher's errors, and what they become again on the ingress's side.
_ERRORS: Final[dict[type[Exception], str]] = {
    QueueFullError: "queue_full",
    DeadlineExceededError: "deadline",
    BatcherClosedError: "closed",
    ValueError: "input",  # the maths refused this job's own numbers: a 422
    ArithmeticError: "input",
}


class ModelReplica:
    """One replica of one model: the model, its fixed posterior, its own batcher.

    Built by the registry code ``make serve`` runs, for this one model; it runs on the GPU
    when Ray gave it one (``ray_actor_options.num_gpus``) and ``DEVICE`` is ``auto``. A
    required model that cannot be loaded fails the replica, and so the deployment, as it
    stops ``make serve``; an ``optional`` one leaves it answering that it is not available.
    """

    async def __init__(self, settings: Settings, name: str) -> None:
        context = serve.get_replica_context()
        node = ray.get_runtime_context().get_node_id()[:8]
        self.name = name
        self.replica = f"{context.deployment}#{context.replica_id.unique_id}@{node}"
        if settings.device == "auto" and not ray.get_gpu_ids():
            settings = settings.model_copy(update={"device": "cpu"})  # no GPU of its own
        self.reports = _BatchReports()
        self.registry = ModelRegistry(settings.model_copy(update={"models": (name,)}), self.reports)
        self.registry.open()
        await self.registry.warm_up()
        self.served = self.registry.models.get(name)
        self.failure = self.registry.failures.get(name)
        if self.served is None and not self.registry.is_optional(name):
            raise RuntimeError(f"model {name} failed: {self.failure}")
        # As the app does: what is loaded now lives as long as the replica. The young
        # collections keep CPython's threshold here (service.collector): the cycles Ray's
        # own request paths leave were not measured.
        gc.freeze()
        logger.info("%s: replica %s is ready", name, self.replica)

    def info(self) -> ReplicaInfo:
        served = self.served
        return ReplicaInfo(
            self.replica,
            served.version if served else "",
            served.device if served else "none",
            served.execution if served else "none",
        )

    async def run(self, job: Job, budget_s: float, label: str) -> ReplicaAnswer:
        """Run ``job`` within ``budget_s`` seconds (what is left of its request's deadline)."""
        served = self.served
        if served is None or served.batcher is None:
            error = ReplicaError("closed", f"model {self.name}: {self.failure}", FAILED_RETRY_S)
            return ReplicaAnswer(self.replica, "", error=error)
        batcher = served.batcher
        try:
            admission = batcher.admit()
            loop = asyncio.get_running_loop()
            admission.deadline = min(admission.deadline, loop.time() + budget_s)
            result = await batcher.submit(job, rows=job.rows, admission=admission, label=label)
        except Exception as exc:
            kind = next((k for t, k in _ERRORS.items() if isinstance(exc, t)), "fault")
            message = str(exc) if kind != "fault" else f"{type(exc).__name__}: {exc}"
            error = ReplicaError(kind, message, getattr(exc, "retry_after", 0.0))
            return self._answer(served, error=error)
        return self._answer(served, result=_on_host(result))

    def _answer(self, served: ServedModel, **fields: Any) -> ReplicaAnswer:
        return ReplicaAnswer(
            self.replica,
            served.version,
            batch=self.reports.take(),
            queue_depth=self.reports.queue_depth,
            **fields,
        )

    async def __del__(self) -> None:
        """Serve calls this on a graceful stop: answer what is queued, then go."""
        registry = getattr(self, "registry", None)
        if registry is not None:
            await registry.close()


def _on_host(result: BatchResult) -> BatchResult:
    """The result with any tensor in it moved to the CPU: the ingress may have no GPU."""
    moved = {
        field.name: value.cpu()
        for field in dataclasses.fields(result)
        if isinstance(value := getattr(result, field.name), torch.Tensor)
    }
    return dataclasses.replace(result, **moved) if moved else result


# ---------------------------------------------------------------------------------------------
# The ingress side: a model's deployment handle with the batcher's shape


class ReplicaLostError(QueueFullError):
    """The replicas that could run this request died or refused it at Ray's door: another
    try, soon, may find a live one (a 503 with a short Retry-After)."""


class RayModelBackend:
    """A model's replicas, as the routes see a batcher (:class:`~service.backend.ModelBackend`).

    ``admit`` holds a place here, before the body is read: at most the model's
    ``max_queue_size`` requests of it are admitted or in flight from this ingress at once
    (each replica's batcher then admits or refuses a job as it would in one process). A job
    goes with what is left of its deadline; a replica's refusal comes back as the batcher's
    error, Ray's backpressure as :class:`~service.batcher.QueueFullError`, a replica that died
    mid-request is retried on another. Every answer names its replica
    (:func:`~service.backend.record_replica`) and must be of the version loaded here.
    """

    def __init__(
        self, handle: DeploymentHandle, served: ServedModel, observer: BatchObserver
    ) -> None:
        self._handle = handle
        self._name = served.name
        self._version = served.version
        self._limit = served.settings.max_queue_size
        self._timeout_s = served.settings.timeout_s
        self._observer = observer
        self._running = True
        self._admitted = 0
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def running(self) -> bool:
        return self._running

    def admit(self) -> Admission:
        if not self._running:
            raise BatcherClosedError(f"model {self._name}'s backend is not accepting requests")
        waiting = self._admitted + self._in_flight
        if waiting >= self._limit:
            raise QueueFullError(
                f"{waiting} requests of model {self._name} are arriving or running",
                retry_after=REPLICA_LOST_RETRY_S,
            )
        self._admitted += 1
        loop = asyncio.get_running_loop()
        return Admission(self._let_go, loop.time() + self._timeout_s)

    def _let_go(self) -> None:
        self._admitted -= 1

    async def submit(
        self, item: Job, *, rows: int = 1, admission: Admission | None = None, label: str = ""
    ) -> BatchResult:
        if admission is None:
            admission = self.admit()
        elif admission.released:
            raise ValueError("this admission was released or used already")
        admission.release()  # the place becomes a request in flight, or goes
        if not self._running:
            raise BatcherClosedError(f"model {self._name}'s backend is not accepting requests")
        self._in_flight += 1
        self._idle.clear()
        try:
            answer = await self._call(item, admission.deadline, label)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()
        return self._result(answer)

    async def _call(self, job: Job, deadline: float, label: str) -> ReplicaAnswer:
        loop = asyncio.get_running_loop()
        pause = _RETRY_PAUSE_S
        for attempt in range(REPLICA_RETRIES + 1):
            budget = deadline - loop.time()
            if budget <= 0:
                raise DeadlineExceededError(f"model {self._name}: no time left to run it")
            try:
                return await self._handle.run.remote(job, budget, label)
            except BackPressureError as exc:
                retry = exc.retry_after_s or REPLICA_LOST_RETRY_S
                raise QueueFullError(f"model {self._name}: {exc}", retry_after=retry) from exc
            except (RayActorError, DeploymentUnavailableError) as exc:
                if attempt == REPLICA_RETRIES:
                    raise ReplicaLostError(
                        f"model {self._name}'s replicas stopped while running this request "
                        f"({attempt + 1} tries): {type(exc).__name__}",
                        retry_after=REPLICA_LOST_RETRY_S,
                    ) from exc
                logger.warning(
                    "%s: a replica stopped while running request %s (%s); trying another",
                    self._name,
                    label or "(unlabelled)",
                    type(exc).__name__,
                )
                await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
                pause *= 2
        raise AssertionError("unreachable")  # the loop returns or raises

    def _result(self, answer: ReplicaAnswer) -> BatchResult:
        record_replica(answer.replica)
        if answer.batch is not None:
            batch = answer.batch
            self._observer.on_batch(requests=batch.requests, rows=batch.rows, seconds=batch.seconds)
        self._observer.on_queue_depth(answer.queue_depth)
        error = answer.error
        if error is not None:
            raise _local_error(error)
        if answer.version != self._version:
            raise RuntimeError(
                f"replica {answer.replica} serves version {answer.version} of model "
                f"{self._name}, not {self._version}: its checkpoint differs from this node's"
            )
        assert answer.result is not None
        return answer.result

    async def stop(self, *, drain: bool = True) -> None:
        """Take no more requests; with ``drain``, wait for those in flight to be answered."""
        self._running = False
        if drain:
            await self._idle.wait()


def _local_error(error: ReplicaError) -> Exception:
    """The batcher's error a replica reported, raised here as the routes know it."""
    if error.kind == "queue_full":
        return QueueFullError(error.message, retry_after=error.retry_after)
    if error.kind == "deadline":
        return DeadlineExceededError(error.message)
    if error.kind == "closed":
        return BatcherClosedError(error.message)
    if error.kind == "input":
        return ValueError(error.message)
    return RuntimeError(error.message)


# ---------------------------------------------------------------------------------------------
# The ingress and the application


@serve.ingress()
class Ingress:
    """The HTTP side: :func:`service.app.create_app`, its models on their deployments."""

    def __init__(self, settings: Settings, models: Mapping[str, DeploymentHandle]) -> None:
        self.settings = settings
        self.models = dict(models)

    def __serve_build_asgi_app__(self) -> FastAPI:
        app = create_app(self.settings, backends=self.connect)
        app.add_middleware(_OneRequestId)
        return app

    async def connect(
        self, served: ServedModel, observer: BatchObserver
    ) -> tuple[ModelBackend, str, str]:
        """Wait for the model's deployment; check it serves the version loaded here."""
        handle = self.models.get(served.name)
        if handle is None:
            raise RuntimeError(f"the Ray application has no deployment for {served.name}")
        info: ReplicaInfo = await handle.info.remote()
        if info.version != served.version:
            raise RuntimeError(
                f"replica {info.replica} serves version {info.version or 'none'}, this "
                f"ingress loaded version {served.version}: the nodes' checkpoints differ"
            )
        return RayModelBackend(handle, served, observer), info.device, info.execution


class _OneRequestId:
    """Drops the app's ``X-Request-Id`` header: Ray's proxy adds its own to every response,
    and the app's access log took that very id from the request (the proxy sets it there)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_once(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != _REQUEST_ID]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_once)


_REQUEST_ID: Final = REQUEST_ID_HEADER.encode()


def build_app(args: dict[str, Any] | None = None) -> Application:
    """The application, for a Serve config's ``import_path: service.ray_app:build_app``.

    ``args`` (the config's ``args``) are service settings, by their lower-case names as in
    the TOML file (``model_repository``, ``models``, ``device``...), over the environment's.
    """
    return application(Settings(**(args or {})))


# Serve's own line per call is off: the ingress's access log has one per request, replica too.
_LOGGING: Final = {"enable_access_log": False}


def served_models(settings: Settings) -> dict[str, Path]:
    """The models ``settings`` serve, by name, and their checkpoints (as the registry lists)."""
    lister = ModelRegistry(settings, ServiceMetrics())
    try:
        return lister.list_models()
    finally:
        lister.image_decoder.close()


def application(
    settings: Settings, options: Mapping[str, Mapping[str, Any]] | None = None
) -> Application:
    """The ingress and one deployment per model ``settings`` serve, with code defaults that
    ``options`` (deployment name → :func:`ray.serve.deployment` options, as a config file's
    ``deployments`` entries say them) override.

    Code defaults: one replica and one CPU each; a model replica takes as many requests at
    once as its batcher queues (``max_queue_size``), and Ray queues no more than that for it
    before answering 503. The settings travel with the application, so that every replica,
    on any node, serves with the settings of the process that built it.
    """
    options = options or {}
    folder = settings.model_repository.expanduser().resolve()
    settings = settings.model_copy(update={"model_repository": folder})
    found = served_models(settings)
    unknown = sorted(set(options) - {*found, INGRESS})
    if unknown:  # a config written for a repository holding other models, or MODELS narrower
        logger.warning("options for deployments %s, which are not served, are ignored", unknown)
    models: dict[str, Application] = {}
    for name, path in found.items():
        queue = _max_queue_size(settings, name, path)
        defaults: dict[str, Any] = {
            "name": name,
            "max_ongoing_requests": queue,
            "max_queued_requests": queue,
            "ray_actor_options": {"num_cpus": 1},
            "logging_config": _LOGGING,
        }
        deployment = serve.deployment(ModelReplica).options(**{**defaults, **options.get(name, {})})
        models[name] = deployment.bind(settings, name)
    ingress_defaults: dict[str, Any] = {
        "name": INGRESS,
        "max_ongoing_requests": INGRESS_MAX_ONGOING,
        "ray_actor_options": {"num_cpus": 1},
        "logging_config": _LOGGING,
    }
    ingress = serve.deployment(Ingress).options(**{**ingress_defaults, **options.get(INGRESS, {})})
    return ingress.bind(settings, models)


def _max_queue_size(settings: Settings, name: str, path: Path) -> int:
    """The model's ``max_queue_size``; bad settings are left for its replica to report."""
    task = TASKS.get(read_manifest(path).get("task", ""))
    if task is not None:
        with contextlib.suppress(ValueError):
            return settings.model_settings(name, task.defaults).max_queue_size
    return ModelSettings.model_fields["max_queue_size"].default
