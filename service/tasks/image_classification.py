"""Image classification: image files in, class probabilities with credible intervals out.

Body: ``multipart/form-data`` with one or more parts named ``files``, or JSON
``{"instances": [{"b64": ...}, ...]}``; any Pillow-readable image of any size, converted to RGB
and resized to the model's input. Answer per image: the mean class probabilities, their
argmax, each class's central interval across the posterior draws, and the entropy split
(total, aleatoric, epistemic = the mutual information), in nats.

As tensors (``/v2``): input ``image``, BYTES [N] (each element an image file, base64 in JSON,
its bytes as binary data) or UINT8 [N, H, W, 3] (pixels at the model's input size); outputs
``probabilities``, ``lower``, ``upper`` FP32 [N, C], ``label`` BYTES [N], ``class_index`` INT64
[N], ``confidence`` FP32 [N], ``entropy_total``, ``entropy_aleatoric``, ``entropy_epistemic``
FP32 [N].
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import numpy as np
import torch
from PIL import Image
from starlette.requests import Request
from torch import Tensor

from models.cnn import BayesianCNN
from models.images import to_model_input
from models.layers import Posterior
from models.predictive import class_probability_samples
from models.task import IMAGE_CLASSIFICATION
from service.errors import InputError
from service.inputs import (
    check_content_type,
    image_files_from_json,
    image_files_from_multipart,
    parse_json,
)
from service.predictor import BatchResult, Job, Predictor
from service.protocol import ProtocolError
from service.protocol.tensors import BYTES, RequestTensor, TensorSpec, match_input
from service.schemas import ClassificationResponse, ImageJsonBody, inline_schema
from service.tasks.base import Decoded, Limits, Task
from uncertainty.classification import summarize_classification

__all__ = ["ClassificationPredictor", "ClassificationResult", "ImageClassification"]

MULTIPART = "multipart/form-data"
JSON = "application/json"
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WebP")
# The v2 input tensor's name, and its pixel form's datatype.
IMAGE_TENSOR: Final = "image"
UINT8: Final = "UINT8"


@dataclass(frozen=True)
class Uploads:
    """The image files of a request, as read: ``(name, bytes)``; ``named``: multipart files,
    whose names each answer echoes."""

    files: list[tuple[str, bytes]]
    named: bool
    opened: list[Image.Image] | None = None  # each file, its header read as it arrived


@dataclass(frozen=True)
class ClassificationResult(BatchResult):
    """Per-image summaries of the S draws' class probabilities, float32."""

    probabilities: np.ndarray  # N × C
    lower: np.ndarray  # N × C
    upper: np.ndarray  # N × C
    total: np.ndarray
    aleatoric: np.ndarray
    epistemic: np.ndarray


class ClassificationPredictor(Predictor[ClassificationResult]):
    def forward(self, inputs: Tensor, posterior: Posterior | None) -> tuple[Tensor, ...]:
        if posterior is None:
            raise ValueError("an image classifier needs a posterior")
        return (class_probability_samples(self.model, to_model_input(inputs), posterior),)

    def summarise(self, outputs: tuple[Tensor, ...], level: float) -> ClassificationResult:
        s = summarize_classification(outputs[0], level)
        probabilities, lower, upper = torch.stack([s.probabilities, s.lower, s.upper]).cpu().numpy()
        total, aleatoric, epistemic = torch.stack([s.total, s.aleatoric, s.epistemic]).cpu().numpy()
        return ClassificationResult(probabilities, lower, upper, total, aleatoric, epistemic)


class ImageClassification(Task[ClassificationResult, list[str] | None]):
    """The decode context is the uploaded files' names (multipart only), echoed per image."""

    name: ClassVar[str] = IMAGE_CLASSIFICATION
    defaults: ClassVar[dict[str, Any]] = {
        "default_samples": 32,
        "max_samples": 64,
        "max_instances": 64,
        "max_batch_size": 64,
    }
    response_model = ClassificationResponse
    request_body: ClassVar[dict[str, Any]] = {
        MULTIPART: {
            "schema": {
                "type": "object",
                "properties": {
                    "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                },
                "required": ["files"],
            }
        },
        JSON: {"schema": inline_schema(ImageJsonBody)},
    }

    model: BayesianCNN

    def __init__(self, model: BayesianCNN) -> None:
        super().__init__(model)
        self.classes = model.classes
        self.size = model.image_size
        images = "images"
        self._inputs = (
            TensorSpec(IMAGE_TENSOR, BYTES, (-1,), (images,)),
            TensorSpec(
                IMAGE_TENSOR,
                UINT8,
                (-1, self.size, self.size, 3),
                (images, "height in pixels", "width in pixels", "RGB channels"),
            ),
        )
        per_class = (-1, len(self.classes))
        by_class = (images, f"the {len(self.classes)} classes, as the metadata lists them")
        per_image = ((-1,), (images,))
        self._outputs = (
            TensorSpec("probabilities", "FP32", per_class, by_class),
            TensorSpec("lower", "FP32", per_class, by_class),
            TensorSpec("upper", "FP32", per_class, by_class),
            TensorSpec("label", BYTES, *per_image),
            TensorSpec("class_index", "INT64", *per_image),
            TensorSpec("confidence", "FP32", *per_image),
            TensorSpec("entropy_total", "FP32", *per_image),
            TensorSpec("entropy_aleatoric", "FP32", *per_image),
            TensorSpec("entropy_epistemic", "FP32", *per_image),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "input": {"type": "image", "formats": list(FORMATS), "size": [self.size, self.size]},
            "classes": list(self.classes),
        }

    def warm_up_inputs(self) -> np.ndarray:
        return np.zeros((1, self.size, self.size, 3), dtype=np.uint8)

    def predictor(self, max_samples: int) -> ClassificationPredictor:
        return ClassificationPredictor(self.model, max_samples=max_samples)

    async def read(self, request: Request, limits: Limits) -> Uploads:
        media_type = check_content_type(request.headers.get("content-type"), (MULTIPART, JSON))
        if media_type == JSON:
            files = image_files_from_json(
                parse_json(await request.body()), max_images=limits.max_instances
            )
            return Uploads(files, named=False)
        # Each image's header is measured as its part arrives: a bomb or a request of too
        # many pixels is refused there, before the rest of its body is read.
        count = limits.image_decoder.pixel_count()
        opened: list[Image.Image] = []
        files = await image_files_from_multipart(
            request,
            max_images=limits.max_instances,
            max_file_bytes=limits.max_file_bytes,
            on_file=lambda index, name, data: opened.append(
                count.add(_file_label(index, name), data)
            ),
        )
        return Uploads(files, named=True, opened=opened if len(opened) == len(files) else None)

    async def decode(self, uploads: Uploads, limits: Limits) -> Decoded[list[str] | None]:
        # Named in messages as the client sent them: ``files[3] 'cat.png'`` or ``instances[3]``.
        labeled = [
            (_file_label(index, name) if uploads.named else name, data)
            for index, (name, data) in enumerate(uploads.files)
        ]
        # On the service's bounded pool, off the event loop, within its pixel budgets.
        images = await limits.image_decoder.decode(labeled, self.size, uploads.opened)
        names = [name for name, _ in uploads.files] if uploads.named else None
        return Decoded(images, names)

    def encode(
        self, job: Job, result: ClassificationResult, names: list[str] | None
    ) -> list[dict[str, Any]]:
        classes = self.classes
        predictions = []
        for i, best in enumerate(result.probabilities.argmax(axis=1).tolist()):
            probabilities = result.probabilities[i]
            prediction: dict[str, Any] = {
                "label": classes[best],
                "class_index": best,
                "confidence": probabilities[best],
                "probabilities": dict(zip(classes, probabilities, strict=True)),
                "intervals": {
                    c: {"lower": lo, "upper": hi}
                    for c, lo, hi in zip(classes, result.lower[i], result.upper[i], strict=True)
                },
                "uncertainty": {
                    "total": result.total[i],
                    "aleatoric": result.aleatoric[i],
                    "epistemic": result.epistemic[i],
                },
            }
            if names is not None:
                prediction["filename"] = names[i]
            predictions.append(prediction)
        return predictions

    def tensor_inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    def tensor_outputs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    def tensor_metadata(self) -> dict[str, Any]:
        return {"classes": list(self.classes)}

    async def decode_tensors(
        self, inputs: Sequence[RequestTensor], limits: Limits
    ) -> Decoded[None]:
        tensor, spec = match_input(inputs, self._inputs, max_batch=limits.max_instances)
        if spec.datatype == UINT8:  # already the model's input: N × size × size × 3
            pixels = np.require(tensor.array(), np.uint8, ["C_CONTIGUOUS", "WRITEABLE"])
            return Decoded(pixels, None)
        files = [
            (_element_name(index), data if tensor.binary else _base64(tensor, index, data))
            for index, data in enumerate(tensor.array().ravel().tolist())
        ]
        try:
            # The files go the way /predict's go: the service's bounded decoder, its budgets.
            images = await limits.image_decoder.decode(files, self.size)
        except InputError as exc:
            if exc.status_code != 415:  # over the pixels of a request (413): as it is
                raise
            raise _refusal(tensor, str(exc.detail), files) from exc
        return Decoded(images, None)

    def encode_tensors(
        self, job: Job, result: ClassificationResult, context: None
    ) -> list[np.ndarray]:
        best = result.probabilities.argmax(axis=1)
        labels = np.empty(len(best), dtype=object)
        labels[:] = [self.classes[i] for i in best.tolist()]
        return [
            result.probabilities,
            result.lower,
            result.upper,
            labels,
            best.astype(np.int64),
            result.probabilities[np.arange(len(best)), best],
            result.total,
            result.aleatoric,
            result.epistemic,
        ]


def _base64(tensor: RequestTensor, index: int, text: bytes) -> bytes:
    try:
        return _from_base64(text)
    except (binascii.Error, ValueError) as exc:
        raise tensor.refuse(
            f"element {index} should be the base64 of an image file's bytes: {exc}"
        ) from exc


def _from_base64(text: bytes) -> bytes:
    # Whitespace is dropped first, as /predict does: base64 tools wrap lines at 76 characters.
    return base64.b64decode(b"".join(text.split()), validate=True)


def _element_name(index: int) -> str:
    """How a refusal names element ``index`` of the image tensor (the decoder's label)."""
    return f"element {index}"


_ELEMENT = re.compile(r"^element (\d+) ")


def _refusal(tensor: RequestTensor, detail: str, files: list[tuple[str, bytes]]) -> ProtocolError:
    """The decoder's refusal of one element, with a hint when binary data holds base64."""
    element = _ELEMENT.match(detail)
    if element is None:
        return tensor.refuse(detail)
    index = int(element[1])
    if tensor.binary and _is_base64(files[index][1]):
        detail += "; it looks like base64, but binary data carries the image file's own bytes"
    return tensor.refuse(detail)


def _is_base64(data: bytes) -> bool:
    try:
        _from_base64(data)
    except (binascii.Error, ValueError):
        return False
    return True


def _file_label(index: int, name: str) -> str:
    """How a refusal names a multipart file: ``files[3] 'cat.png'``."""
    return f"files[{index}] {name!r}"
