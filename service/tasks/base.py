"""What a task kind tells the service, in one class per kind (after LitServe's ``LitAPI``).

A request's life is decode → batch → predict → unbatch → encode. The batcher does the batching
and unbatching for every kind alike; a :class:`Task` says the rest for its kind: how a request
body becomes model input (:meth:`Task.decode`), how a batch runs and is summarised
(:meth:`Task.predictor`), how one request's summaries become its JSON predictions
(:meth:`Task.encode`), plus what start-up and ``GET /models`` need (:meth:`Task.warm_up_inputs`,
:meth:`Task.describe`). One instance serves one model; the registry, routes and batcher know
no model class and no model name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
from pydantic import BaseModel
from starlette.requests import Request
from torch import nn

from service.predictor import BatchResult, Job, Predictor

__all__ = ["Decoded", "Limits", "Task"]

R = TypeVar("R", bound=BatchResult)
C = TypeVar("C")


@dataclass(frozen=True)
class Limits:
    """What one request may hold: the model's instance limit and the service's size limits."""

    max_instances: int
    max_file_bytes: int
    max_image_pixels: int


@dataclass(frozen=True)
class Decoded(Generic[C]):
    """A request body as model input (N rows), and what encoding its answer needs of it."""

    inputs: np.ndarray
    context: C


class Task(ABC, Generic[R, C]):
    """One kind of model, for one model of that kind."""

    name: ClassVar[str]
    """The task kind, as models declare it (``model.task``) and ``GET /models`` reports it."""
    defaults: ClassVar[Mapping[str, Any]]
    """Per-model settings (:class:`~service.settings.ModelSettings` fields) a model of this
    kind gets unless its own settings say otherwise."""
    response_model: ClassVar[type[BaseModel]]
    """The 200 body, for the OpenAPI description."""
    request_body: ClassVar[dict[str, Any]]
    """The OpenAPI ``requestBody.content`` this kind accepts."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """``GET /models`` fields of this kind: ``input``, and ``classes`` for a classifier."""

    @abstractmethod
    def warm_up_inputs(self) -> np.ndarray:
        """One row of valid input, run once at start-up before the model is called ready."""

    @abstractmethod
    def predictor(self, max_samples: int) -> Predictor[R]:
        """The batch's forward pass over up to ``max_samples`` posterior draws and its summary."""

    @abstractmethod
    async def decode(self, request: Request, limits: Limits) -> Decoded[C]:
        """Read and validate the body; raise :class:`~service.errors.InputError` if it is bad."""

    @abstractmethod
    def encode(self, job: Job, result: R, context: C) -> list[dict[str, Any]]:
        """The ``predictions`` of one request, from its rows of the batch's summaries."""
