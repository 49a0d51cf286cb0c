"""POST /predict/cifar: decode → batch → predict → unbatch → encode."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from service.inputs import (
    check_content_type,
    cifar_images_from_json,
    cifar_images_from_multipart,
    decode_images,
    parse_json,
)
from service.predictors import ClassificationResult, Job
from service.registry import ServedModel
from service.routes.dependencies import (
    registry_of,
    resolve_samples,
    run_batched,
    settings_of,
)
from service.routes.responses import ERROR_RESPONSES, LEVEL_QUERY, SAMPLES_QUERY
from service.schemas import CifarJsonBody, CifarResponse

router = APIRouter(tags=["predict"])

MULTIPART = "multipart/form-data"
JSON = "application/json"


@router.post(
    "/predict/cifar",
    response_model=CifarResponse,
    response_model_exclude_none=True,
    responses=ERROR_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                MULTIPART: {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "files": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                            }
                        },
                        "required": ["files"],
                    }
                },
                JSON: {"schema": CifarJsonBody.model_json_schema()},
            },
        }
    },
    summary="Classify CIFAR-10 images with credible intervals and the entropy split",
)
async def predict_cifar(
    request: Request, samples: SAMPLES_QUERY = None, level: LEVEL_QUERY = 0.95
) -> JSONResponse:
    served = registry_of(request).get("cifar_bcnn")
    settings = settings_of(request)
    requested = resolve_samples(served, samples)
    limit = served.settings.max_instances
    media_type = check_content_type(request.headers.get("content-type"), (MULTIPART, JSON))
    if media_type == JSON:
        files = cifar_images_from_json(parse_json(await request.body()), max_images=limit)
    else:
        files = await cifar_images_from_multipart(
            request, max_images=limit, max_file_bytes=settings.max_body_bytes
        )
    # Decoding large images takes real time: keep it off the event loop.
    images = await run_in_threadpool(decode_images, files, max_pixels=settings.max_image_pixels)
    job = Job(images, requested, level)
    result: ClassificationResult = await run_batched(served, job)
    names = [name for name, _ in files] if media_type == MULTIPART else None
    return JSONResponse(encode(served, result, job, names))


def encode(
    served: ServedModel[Any], result: ClassificationResult, job: Job, names: list[str] | None
) -> dict[str, Any]:
    classes: tuple[str, ...] = served.model.classes  # type: ignore[assignment]
    predictions = []
    rows = zip(
        result.probabilities.tolist(),
        result.lower.tolist(),
        result.upper.tolist(),
        result.total.tolist(),
        result.aleatoric.tolist(),
        result.epistemic.tolist(),
        strict=True,
    )
    for i, (probs, lower, upper, total, aleatoric, epistemic) in enumerate(rows):
        best = max(range(len(classes)), key=probs.__getitem__)
        prediction: dict[str, Any] = {
            "label": classes[best],
            "class_index": best,
            "confidence": probs[best],
            "probabilities": dict(zip(classes, probs, strict=True)),
            "intervals": {
                c: {"lower": lo, "upper": hi}
                for c, lo, hi in zip(classes, lower, upper, strict=True)
            },
            "uncertainty": {"total": total, "aleatoric": aleatoric, "epistemic": epistemic},
        }
        if names is not None:
            prediction["filename"] = names[i]
        predictions.append(prediction)
    return {
        "model": {"name": served.name, "version": served.version},
        "samples": job.samples,
        "level": job.level,
        "predictions": predictions,
    }
