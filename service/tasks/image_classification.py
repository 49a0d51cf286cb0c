"""Image classification: image files in, class probabilities with credible intervals out.

Body: ``multipart/form-data`` with one or more parts named ``files``, or JSON
``{"instances": [{"b64": ...}, ...]}``; any Pillow-readable image of any size, converted to RGB
and resized to the model's input. Answer per image: the mean class probabilities, their
argmax, each class's central interval across the posterior draws, and the entropy split
(total, aleatoric, epistemic = the mutual information), in nats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from torch import Tensor

from models.cnn import BayesianCNN
from models.images import to_model_input
from models.layers import Posterior
from models.predictive import class_probability_samples
from models.task import IMAGE_CLASSIFICATION
from service.inputs import (
    check_content_type,
    decode_images,
    image_files_from_json,
    image_files_from_multipart,
    parse_json,
)
from service.predictor import BatchResult, Job, Predictor
from service.schemas import ClassificationResponse, ImageJsonBody
from service.tasks.base import Decoded, Limits, Task
from uncertainty.classification import summarize_classification

__all__ = ["ClassificationPredictor", "ClassificationResult", "ImageClassification"]

MULTIPART = "multipart/form-data"
JSON = "application/json"
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WebP")


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
        JSON: {"schema": ImageJsonBody.model_json_schema()},
    }

    model: BayesianCNN

    def __init__(self, model: BayesianCNN) -> None:
        super().__init__(model)
        self.classes = model.classes
        self.size = model.image_size

    def describe(self) -> dict[str, Any]:
        return {
            "input": {"type": "image", "formats": list(FORMATS), "size": [self.size, self.size]},
            "classes": list(self.classes),
        }

    def warm_up_inputs(self) -> np.ndarray:
        return np.zeros((1, self.size, self.size, 3), dtype=np.uint8)

    def predictor(self, max_samples: int) -> ClassificationPredictor:
        return ClassificationPredictor(self.model, max_samples=max_samples)

    async def decode(self, request: Request, limits: Limits) -> Decoded[list[str] | None]:
        media_type = check_content_type(request.headers.get("content-type"), (MULTIPART, JSON))
        if media_type == JSON:
            files = image_files_from_json(
                parse_json(await request.body()), max_images=limits.max_instances
            )
        else:
            files = await image_files_from_multipart(
                request, max_images=limits.max_instances, max_file_bytes=limits.max_file_bytes
            )
        # Decoding large images takes real time: keep it off the event loop.
        images = await run_in_threadpool(
            decode_images, files, size=self.size, max_pixels=limits.max_image_pixels
        )
        names = [name for name, _ in files] if media_type == MULTIPART else None
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
