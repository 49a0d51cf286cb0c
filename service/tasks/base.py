"""What a task kind tells the service, in one class per kind (after LitServe's ``LitAPI``).

A request's life is read → decode → batch → predict → unbatch → encode. The batcher does the
batching and unbatching for every kind alike; a :class:`Task` says the rest for its kind: how a
request's body is read (:meth:`Task.read`) and becomes model input (:meth:`Task.decode`; the
route starts watching for the client leaving in between, which it cannot do while the body is
still arriving), how a batch runs and is summarised
(:meth:`Task.predictor`), how one request's summaries become its JSON predictions
(:meth:`Task.encode`), plus what start-up and ``GET /models`` need (:meth:`Task.warm_up_inputs`,
:meth:`Task.describe`). The Open Inference Protocol (``/v2``) sees the same model as named
tensors: :meth:`Task.tensor_inputs` and :meth:`Task.tensor_outputs` describe them,
:meth:`Task.decode_tensors` and :meth:`Task.encode_tensors` are ``decode`` and ``encode`` for
them, so a v2 request builds the very :class:`~service.predictor.Job` its ``/predict`` twin
does. One instance serves one model; the registry, routes and batcher know no model class and
no model name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
from pydantic import BaseModel
from starlette.requests import Request
from torch import nn

from service.image_decoding import ImageDecoder
from service.predictor import BatchResult, Job, Predictor
from service.protocol.tensors import RequestTensor, TensorSpec

__all__ = ["Decoded", "Limits", "Task"]

R = TypeVar("R", bound=BatchResult)
C = TypeVar("C")


@dataclass(frozen=True)
class Limits:
    """What one request may hold (the model's instance limit, the service's size limits) and
    the service's bounded image decoder, which enforces the pixel limits."""

    max_instances: int
    max_file_bytes: int
    image_decoder: ImageDecoder


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
    async def read(self, request: Request, limits: Limits) -> Any:
        """The whole body, as sent (parsed JSON, or files); a 4xx if it cannot be read so."""

    @abstractmethod
    async def decode(self, body: Any, limits: Limits) -> Decoded[C]:
        """Validate what :meth:`read` gave and make model input of it; a 4xx if it is bad."""

    @abstractmethod
    def encode(self, job: Job, result: R, context: C) -> list[dict[str, Any]]:
        """The ``predictions`` of one request, from its rows of the batch's summaries."""

    # The Open Inference Protocol: the same model as named tensors.

    @abstractmethod
    def tensor_inputs(self) -> tuple[TensorSpec, ...]:
        """The forms the model's one input may take (one name; a datatype each)."""

    @abstractmethod
    def tensor_outputs(self) -> tuple[TensorSpec, ...]:
        """The output tensors, in the order :meth:`encode_tensors` gives them."""

    @abstractmethod
    def tensor_metadata(self) -> dict[str, Any]:
        """Fields the model metadata adds to the protocol's: the classes, or the features."""

    @abstractmethod
    async def decode_tensors(self, inputs: Sequence[RequestTensor], limits: Limits) -> Decoded[C]:
        """The request's input tensors as model input; a
        :class:`~service.protocol.ProtocolError` names what is wrong."""

    @abstractmethod
    def encode_tensors(self, job: Job, result: R, context: C) -> list[np.ndarray]:
        """One array per output of :meth:`tensor_outputs`, in its order, over the job's rows."""
