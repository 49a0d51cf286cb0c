"""POST /predict/wine: decode → batch → predict → unbatch → encode."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from service.errors import InputError, error_entry
from service.inputs import check_content_type, parse_json, wine_rows
from service.predictors import Job, RegressionResult
from service.registry import ServedModel
from service.routes.dependencies import registry_of, resolve_samples, run_batched
from service.routes.responses import ERROR_RESPONSES, LEVEL_QUERY, SAMPLES_QUERY
from service.schemas import WineResponse, wine_body_adapter

router = APIRouter(tags=["predict"])


class WineModel(StrEnum):
    bnn = "bnn"
    gaussian = "gaussian"


# Query value → the model's settings name.
_MODEL_KEYS = {WineModel.bnn: "wine_bnn", WineModel.gaussian: "wine_gaussian"}


@router.post(
    "/predict/wine",
    response_model=WineResponse,
    responses=ERROR_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": wine_body_adapter.json_schema()}},
        }
    },
    summary="Predict wine quality with an interval and the epistemic/aleatoric split",
)
async def predict_wine(
    request: Request,
    model: Annotated[
        WineModel,
        Query(description="bnn: full Bayes-by-Backprop network; gaussian: Gaussian-head network"),
    ] = WineModel.bnn,
    samples: SAMPLES_QUERY = None,
    level: LEVEL_QUERY = 0.95,
) -> JSONResponse:
    served = registry_of(request).get(_MODEL_KEYS[model])
    requested = resolve_samples(served, samples)
    check_content_type(request.headers.get("content-type"), ("application/json",))
    payload = parse_json(await request.body())
    rows = wine_rows(payload, max_instances=served.settings.max_instances)
    job = Job(rows, requested, level)
    result: RegressionResult = await run_batched(served, job)
    _check_finite(result, batched=isinstance(payload, dict) and "instances" in payload)
    return JSONResponse(encode(served, result, job))


def _check_finite(result: RegressionResult, *, batched: bool) -> None:
    """Inputs far outside the training data can overflow the network: say so, per instance."""
    if result.finite.all():
        return
    overflowed = np.flatnonzero(~result.finite)
    raise InputError.from_entries(
        [
            error_entry(
                loc=("body", "instances", int(i)) if batched else ("body",),
                msg="The model's prediction overflows for this input: its values lie far "
                "outside the range of the training data",
            )
            for i in overflowed
        ]
    )


def encode(served: ServedModel[Any], result: RegressionResult, job: Job) -> dict[str, Any]:
    assert served.predictor is not None
    epistemic = (
        result.epistemic_std.tolist()
        if result.epistemic_std is not None
        else [None] * len(result.mean)
    )
    columns = zip(
        result.mean.tolist(),
        result.std.tolist(),
        result.lower.tolist(),
        result.upper.tolist(),
        epistemic,
        result.aleatoric_std.tolist(),
        strict=True,
    )
    return {
        "model": {"name": served.name, "version": served.version},
        "samples": served.predictor.effective_samples(job.samples),
        "level": job.level,
        "predictions": [
            {
                "mean": mean,
                "std": std,
                "interval": {"lower": lower, "upper": upper},
                "epistemic_std": epistemic_std,
                "aleatoric_std": aleatoric_std,
            }
            for mean, std, lower, upper, epistemic_std, aleatoric_std in columns
        ],
    }
