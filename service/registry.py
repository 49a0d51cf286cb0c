"""The served models: opened and verified at start-up, warmed up, then batched.

Start-up is in two steps. :meth:`ModelRegistry.open` runs before the server
accepts requests: it checks each checkpoint against its manifest's sha256 and
loads the weights, so a missing or corrupt file stops the service with a
message naming it (unless that model is ``optional``: then its route answers
503 with the reason). :meth:`ModelRegistry.warm_up` then draws the posterior,
runs one pass and starts the batcher, in the background: ``/readyz`` says 503
until every model is done.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
from torch import nn

from models.checkpoint import CheckpointError, load_checkpoint, read_manifest, verify_checkpoint
from models.cifar import IMAGE_SIZE, BayesianCNN
from models.device import resolve_device, use_exact_float32
from models.wine import WINE_FEATURES
from service.batcher import BatcherSettings, DynamicBatcher
from service.errors import ServiceUnavailable
from service.metrics import ServiceMetrics
from service.predictors import ClassificationPredictor, Job, Predictor, RegressionPredictor
from service.settings import ModelSettings, Settings

logger = logging.getLogger(__name__)

# Retry-After while a model is still warming up (seconds).
WARMING_UP_RETRY_S = 1.0
# Retry-After for a model that failed to load: nothing will change without an operator.
FAILED_RETRY_S = 60.0

R = TypeVar("R")


class StartupError(RuntimeError):
    """A required model could not be loaded; the message names the file."""


@dataclass
class ServedModel(Generic[R]):
    """A loaded model and everything the routes need to answer for it."""

    key: str  # settings name: wine_bnn, wine_gaussian, cifar_bcnn
    name: str  # public name, the checkpoint's kind: wine-bnn, ...
    settings: ModelSettings
    checkpoint: Path
    version: str
    manifest: dict[str, Any]
    model: nn.Module
    predictor: Predictor[R] | None = None
    batcher: DynamicBatcher[Job, R] | None = None

    @property
    def ready(self) -> bool:
        return self.batcher is not None and self.batcher.running

    def describe(self) -> dict[str, Any]:
        """The GET /models entry."""
        return {
            "name": self.name,
            "kind": "classification" if isinstance(self.model, BayesianCNN) else "regression",
            "version": self.version,
            "device": str(next(self.model.parameters()).device),
            "default_samples": self.settings.default_samples,
            "max_samples": self.settings.max_samples,
            "input": _input_description(self.model),
            "test_metrics": self.manifest.get("test_metrics", {}),
            "ready": self.ready,
        }


@dataclass
class ModelRegistry:
    settings: Settings
    metrics: ServiceMetrics
    models: dict[str, ServedModel[Any]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        """Every configured model serves; an ``optional`` one that failed does not count."""
        required_failed = any(not getattr(self.settings, key).optional for key in self.failures)
        return (
            bool(self.models)
            and not required_failed
            and all(served.ready for served in self.models.values())
        )

    def open(self, keys: tuple[str, ...]) -> None:
        """Verify and load each model's weights onto its device."""
        for key in keys:
            model_settings: ModelSettings = getattr(self.settings, key)
            path = self.settings.checkpoint_path(model_settings)
            try:
                device = resolve_device(model_settings.device or self.settings.device)
            except RuntimeError as exc:  # no CUDA, or a name torch does not know
                raise StartupError(f"cannot serve {key}: {exc}") from exc
            if device.type == "cuda":
                use_exact_float32()
            try:
                digest = verify_checkpoint(path)
                model = load_checkpoint(path, device)
                manifest = read_manifest(path)
            except CheckpointError as exc:
                if not model_settings.optional:
                    raise StartupError(f"cannot serve {key}: {exc}") from exc
                logger.warning("%s is optional and not served: %s", key, exc)
                self.failures[key] = str(exc)
                continue
            self.models[key] = ServedModel(
                key=key,
                name=model.kind,  # type: ignore[arg-type]
                settings=model_settings,
                checkpoint=path,
                version=digest[:12],
                manifest=manifest,
                model=model,
            )
            logger.info("loaded %s (%s, version %s) on %s", key, path, digest[:12], device)

    async def warm_up(self) -> None:
        """Draw posteriors, run one pass each, start the batchers."""
        for key, served in list(self.models.items()):
            try:
                predictor = await asyncio.to_thread(_build_predictor, served)
                await asyncio.to_thread(predictor, [_warm_up_job(served)])
            except Exception as exc:  # e.g. out of device memory: fail this model only
                logger.exception("%s failed to warm up", key)
                self.failures[key] = f"warm-up failed: {exc}"
                del self.models[key]
                continue
            batcher_settings = BatcherSettings(
                max_batch_size=served.settings.max_batch_size,
                max_wait_ms=served.settings.max_wait_ms,
                max_queue_size=served.settings.max_queue_size,
                timeout_s=served.settings.timeout_s,
            )
            batcher: DynamicBatcher[Job, Any] = DynamicBatcher(
                predictor,
                batcher_settings,
                name=served.key,
                observer=self.metrics.for_model(served.name),
            )
            await batcher.start()
            served.predictor, served.batcher = predictor, batcher
            logger.info("%s is ready", served.key)

    def get(self, key: str) -> ServedModel[Any]:
        """The model, ready to serve, or a 503 saying why not."""
        if key in self.failures:
            raise ServiceUnavailable(
                f"model {key} is not available: {self.failures[key]}", retry_after=FAILED_RETRY_S
            )
        served = self.models.get(key)
        if served is None:
            raise ServiceUnavailable(f"model {key} is not configured", retry_after=FAILED_RETRY_S)
        if not served.ready:
            raise ServiceUnavailable(
                f"model {key} is not loaded yet", retry_after=WARMING_UP_RETRY_S
            )
        return served

    async def close(self) -> None:
        """Stop taking requests and answer those already queued."""
        for served in self.models.values():
            if served.batcher is not None:
                await served.batcher.stop(drain=True)


def _build_predictor(served: ServedModel[Any]) -> Predictor[Any]:
    if isinstance(served.model, BayesianCNN):
        return ClassificationPredictor(served.model, max_samples=served.settings.max_samples)
    return RegressionPredictor(served.model, max_samples=served.settings.max_samples)


def _warm_up_job(served: ServedModel[Any]) -> Job:
    if isinstance(served.model, BayesianCNN):
        inputs = np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    else:
        inputs = served.model.standardize.mean.cpu().numpy()[None]
    return Job(inputs, served.settings.max_samples, 0.95)


def _input_description(model: nn.Module) -> dict[str, Any]:
    if isinstance(model, BayesianCNN):
        return {
            "type": "image",
            "formats": ["PNG", "JPEG", "BMP", "GIF", "WebP"],
            "resized_to": [IMAGE_SIZE, IMAGE_SIZE],
            "classes": list(model.classes),
        }
    return {"type": "features", "features": list(WINE_FEATURES), "units": "UCI Wine Quality"}
