"""The served models: found in the repository, verified and loaded at start-up, warmed up, batched.

Start-up is in two steps. :meth:`ModelRegistry.open` runs before the server accepts requests:
it lists the repository, checks each checkpoint against its manifest's sha256 and loads the
weights, so a missing or corrupt file stops the service with a message naming it (unless that
model is ``optional``: then requests for it answer 503 with the reason). :meth:`warm_up` then
draws each posterior, runs one pass and starts the batcher, in the background: ``/readyz``
says 503 until every model is done. Nothing here knows a model class or a model name: what a
model's task kind needs is in its :class:`~service.tasks.Task`.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from models.checkpoint import CheckpointError, load_checkpoint, read_manifest, verify_checkpoint
from models.device import resolve_device, use_exact_float32
from models.predictive import member_count, network_count
from service.allocator import retain_freed_memory
from service.backend import BackendFactory, ModelBackend
from service.batcher import BatcherSettings, DynamicBatcher
from service.body_budget import BodyBudget
from service.errors import InputError, ModelNotFound, ServiceUnavailable
from service.image_decoding import ImageDecoder, default_workers
from service.metrics import ServiceMetrics
from service.predictor import EAGER, Job, Predictor
from service.repository import RepositoryError, find_models
from service.routes.parameters import DEFAULT_LEVEL
from service.settings import ModelSettings, Settings, settings_key
from service.tasks import TASKS, Limits, Task

logger = logging.getLogger(__name__)

# Retry-After while a model is still warming up (seconds).
WARMING_UP_RETRY_S = 1.0
# Retry-After for a model that failed to load: nothing will change without an operator.
FAILED_RETRY_S = 60.0
# The warm-up passes' level: the default one, which CUDA graphs are captured for.
_WARM_UP_LEVEL = DEFAULT_LEVEL
# The larger warm-up batch: enough rows to see what a row adds over the fixed cost of a batch,
# few enough that warming up a CNN does not raise the process's peak memory for good.
_WARM_UP_ROWS = 16
_WARM_UP_TIMINGS = 3  # each timed thrice, the median kept


class StartupError(RuntimeError):
    """A required model could not be loaded, or the settings name no model; the message says."""


@dataclass
class ServedModel:
    """A loaded model and everything the routes need to answer for it."""

    name: str  # the checkpoint's file stem, in routes and responses
    settings: ModelSettings
    checkpoint: Path
    version: str
    manifest: dict[str, Any]
    task: Task[Any, Any]
    limits: Limits
    networks: int | None  # distinct networks its posterior holds; None: any number differ
    device: str  # where its batches run
    execution: str = EAGER  # how: eager, or as captured CUDA graphs (service.graphs)
    predictor: Predictor[Any] | None = None  # these two only where this process runs it
    batcher: DynamicBatcher[Job, Any] | None = None
    backend: ModelBackend | None = None  # what the routes call: the batcher, or a remote one

    @property
    def ready(self) -> bool:
        return self.backend is not None and self.backend.running

    @property
    def ref(self) -> dict[str, str]:
        """The ``model`` of every answer: the same name and version give the same numbers."""
        return {"name": self.name, "version": self.version}

    @property
    def max_samples(self) -> int:
        """The most posterior draws a request can use: a deterministic model's networks (1, or
        K for an ensemble) at most."""
        if self.networks is None:
            return self.settings.max_samples
        return min(self.settings.max_samples, self.networks)

    @property
    def default_samples(self) -> int:
        return min(self.settings.default_samples, self.max_samples)

    def resolve_samples(self, requested: int | None) -> int:
        """The draws a request gets: ``samples`` or the default; above the maximum is a 422.

        A model of finitely many networks (one, or a deterministic ensemble's K) answers a
        larger ``samples`` with all of them: more draws would only repeat them.
        """
        if requested is None:
            return self.default_samples
        if requested > self.max_samples and self.networks is None:
            raise InputError.unprocessable(
                loc=("query", "samples"),
                msg=f"Input should be less than or equal to {self.max_samples} "
                f"for model {self.name}",
                type="less_than_equal",
                input=requested,
            )
        return min(requested, self.max_samples)

    def describe(self) -> dict[str, Any]:
        """The GET /models entry."""
        return {
            "name": self.name,
            "task": self.task.name,
            "kind": self.task.model.kind,
            "version": self.version,
            "device": self.device,
            "execution": self.execution,
            "default_samples": self.default_samples,
            "max_samples": self.max_samples,
            "max_instances": self.settings.max_instances,
            **self.task.describe(),
            "members": member_count(self.task.model),
            "test_metrics": self.manifest.get("test_metrics", {}),
            "epistemic_threshold": self.epistemic_threshold,
            "ready": self.ready,
        }

    @property
    def epistemic_threshold(self) -> dict[str, Any] | None:
        """The manifest's epistemic threshold (image models scored since it was recorded:
        :func:`training.evaluate.epistemic_threshold`), or None."""
        recorded = self.manifest.get("thresholds", {})
        if "epistemic_nats" not in recorded:
            return None
        return {
            key: recorded.get(key) for key in ("epistemic_nats", "quantile", "samples", "images")
        }


@dataclass
class ModelRegistry:
    settings: Settings
    metrics: ServiceMetrics
    # None: each model runs here, on its own batcher; else where this connects it to.
    backends: BackendFactory | None = None
    models: dict[str, ServedModel] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    _optional: set[str] = field(default_factory=set)
    _opened: bool = False
    image_decoder: ImageDecoder = field(init=False)
    bodies: BodyBudget = field(init=False)

    def __post_init__(self) -> None:
        self.bodies = BodyBudget(
            self.settings.max_inflight_body_bytes, self.settings.max_body_bytes
        )
        self.image_decoder = ImageDecoder(
            workers=self.settings.decode_workers or default_workers(),
            max_image_pixels=self.settings.max_image_pixels,
            max_request_pixels=self.settings.max_request_pixels,
            max_inflight_pixels=self.settings.max_decoding_pixels,
        )

    @property
    def ready(self) -> bool:
        """Every served model is warm; an ``optional`` one that failed does not count."""
        required_failed = any(name not in self._optional for name in self.failures)
        return (
            bool(self.models)
            and not required_failed
            and all(served.ready for served in self.models.values())
        )

    def list_models(self) -> dict[str, Path]:
        """The models to serve, by name, and their checkpoints: ``MODELS``, or all of them."""
        folder = self.settings.model_repository
        try:
            found = find_models(folder)
        except RepositoryError as exc:
            raise StartupError(str(exc)) from exc
        return {name: found[name] for name in self._names_to_serve(found, folder)}

    def open(self) -> None:
        """List the repository; verify and load each served model's weights onto its device."""
        found = self.list_models()
        if self.backends is None:  # the batches run in this process
            retain_freed_memory()
        self._opened = True
        for name in found:
            optional = self._is_optional(name)
            if optional:
                self._optional.add(name)
            try:
                served = self._load(name, found[name])
            except CheckpointError as exc:
                if not optional:
                    raise StartupError(f"cannot serve {name}: {exc}") from exc
                logger.warning("%s is optional and not served: %s", name, exc)
                self.failures[name] = str(exc)
                continue
            self.models[name] = served
            logger.info(
                "loaded %s (%s, %s, version %s) on %s",
                name,
                served.checkpoint,
                served.task.name,
                served.version,
                served.describe()["device"],
            )

    def _names_to_serve(self, found: dict[str, Path], folder: Path) -> tuple[str, ...]:
        """``MODELS`` if set (each must be in the repository), else everything in it."""
        listing = ", ".join(found) or "none"
        if self.settings.models is None:
            if not found:
                raise StartupError(
                    f"model repository {folder} holds no NAME.safetensors checkpoints"
                )
            names = tuple(found)
        else:
            by_key = {settings_key(name): name for name in found}
            names = tuple(by_key.get(settings_key(name), name) for name in self.settings.models)
            missing = [name for name in names if name not in found]
            if missing:
                raise StartupError(
                    f"MODELS names {missing}, which {folder} does not hold; it holds: {listing}"
                )
        keys = {settings_key(name) for name in found}
        strays = sorted(set(self.settings.per_model) - keys)
        if strays:  # most likely a typo (WINE_BN__MAX_WAIT_MS): say so, loudly
            logger.warning(
                "settings for models %s (NAME__SETTING variables or [NAME] tables) name no "
                "model of %s, and are ignored; it holds: %s",
                strays,
                folder,
                listing,
            )
        return names

    def is_optional(self, name: str) -> bool:
        """Whether model ``name`` failing leaves the others serving (its ``optional``)."""
        return name in self._optional or self._is_optional(name)

    def _is_optional(self, name: str) -> bool:
        value = self.settings.per_model.get(settings_key(name), {}).get("optional", False)
        try:
            return TypeAdapter(bool).validate_python(value)
        except ValidationError as exc:
            raise StartupError(f"settings of model {name!r}: optional: {exc}") from None

    def _load(self, name: str, path: Path) -> ServedModel:
        digest = verify_checkpoint(path)
        manifest = read_manifest(path)
        model = load_checkpoint(path)
        task_class = TASKS.get(model.task)
        if task_class is None:
            raise CheckpointError(
                f"{path} holds a {model.task!r} model; this service serves {sorted(TASKS)}"
            )
        try:
            model_settings = self.settings.model_settings(name, task_class.defaults)
            # With remote backends the weights here only tell decoding and encoding the
            # model's features, classes and kind: they stay on the CPU.
            wanted = "cpu" if self.backends is not None else None
            device = resolve_device(wanted or model_settings.device or self.settings.device)
        except (ValueError, RuntimeError) as exc:  # bad settings; no CUDA, an unknown device
            raise StartupError(f"cannot serve {name}: {exc}") from exc
        if device.type == "cuda":
            use_exact_float32()
        model.to(device)
        return ServedModel(
            name=name,
            settings=model_settings,
            checkpoint=path,
            version=digest[:12],
            manifest=manifest,
            task=task_class(model),
            limits=Limits(
                max_instances=model_settings.max_instances,
                max_file_bytes=self.settings.max_body_bytes,
                image_decoder=self.image_decoder,
            ),
            networks=network_count(model),
            device=str(next(model.parameters()).device),
        )

    async def warm_up(self) -> None:
        """Draw posteriors, run one pass each, start the batchers; or connect the backends."""
        for name, served in list(self.models.items()):
            if self.backends is not None:
                try:
                    served.backend, served.device, served.execution = await self.backends(
                        served, self.metrics.for_model(name)
                    )
                except Exception as exc:
                    logger.exception("%s could not be reached where it runs", name)
                    self.failures[name] = f"its backend failed: {exc}"
                    del self.models[name]
                    continue
                logger.info(
                    "%s is ready (on %s, %s on %s)",
                    name,
                    type(served.backend).__name__,
                    served.execution,
                    served.device,
                )
                continue
            try:
                predictor = await asyncio.to_thread(
                    served.task.predictor, served.settings.max_samples
                )
                row = served.task.warm_up_inputs()
                # A first pass at the default draws, for its one-off costs (making the draws,
                # allocations, kernels). Draws past the default are made when a request first
                # asks for them: the memory of draws nobody asks for is never taken.
                samples = min(served.settings.default_samples, predictor.max_samples)
                await asyncio.to_thread(predictor, [Job(row, samples, _WARM_UP_LEVEL)])
                if served.settings.cuda_graphs:
                    served.execution = await asyncio.to_thread(
                        predictor.accelerate,
                        row,
                        samples=samples,
                        level=_WARM_UP_LEVEL,
                        max_rows=served.settings.max_batch_size,
                    )
                # Then batches of one row and of several, as most requests ask: what a batch
                # costs whatever its rows, and what each row adds (admission's estimate).
                timings = []
                for rows in (1, min(served.settings.max_batch_size, _WARM_UP_ROWS)):
                    job = Job(np.repeat(row[:1], rows, axis=0), samples, _WARM_UP_LEVEL)
                    seconds = []
                    for _ in range(_WARM_UP_TIMINGS):
                        started = time.perf_counter()
                        await asyncio.to_thread(predictor, [job])
                        seconds.append(time.perf_counter() - started)
                    timings.append((statistics.median(seconds), rows))
            except Exception as exc:  # e.g. out of device memory: fail this model only
                logger.exception("%s failed to warm up", name)
                self.failures[name] = f"warm-up failed: {exc}"
                del self.models[name]
                continue
            batcher: DynamicBatcher[Job, Any] = DynamicBatcher(
                predictor,
                BatcherSettings(
                    max_batch_size=served.settings.max_batch_size,
                    max_wait_ms=served.settings.max_wait_ms,
                    max_queue_size=served.settings.max_queue_size,
                    timeout_s=served.settings.timeout_s,
                ),
                name=name,
                observer=self.metrics.for_model(name),
            )
            # Its cost stands in until real batches are timed: a flood arriving at once is then
            # judged at the door, not all let in to be refused after decoding.
            batcher.seed_estimate(*timings)
            await batcher.start()
            served.predictor, served.batcher, served.backend = predictor, batcher, batcher
            logger.info("%s is ready (%s on %s)", name, served.execution, served.device)

    def get(self, name: str) -> ServedModel:
        """The model, ready to serve; 404 if it is not served, 503 saying why if not ready."""
        if name in self.failures:
            raise ServiceUnavailable(
                f"model {name} is not available: {self.failures[name]}", retry_after=FAILED_RETRY_S
            )
        served = self.models.get(name)
        if served is None:
            if not self._opened:  # the repository is not even listed yet
                raise ServiceUnavailable("the service is starting", retry_after=WARMING_UP_RETRY_S)
            raise ModelNotFound(name, sorted(self.models))
        if not served.ready:
            raise ServiceUnavailable(
                f"model {name} is not loaded yet", retry_after=WARMING_UP_RETRY_S
            )
        return served

    async def close(self) -> None:
        """Stop taking requests and answer those already queued."""
        for served in self.models.values():
            if served.backend is not None:
                await served.backend.stop(drain=True)
        self.image_decoder.close()
