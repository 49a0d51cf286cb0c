"""POST /predict/{name} for every model of the repository, and the /wine and /cifar families.

Every route runs :func:`predict`: look the model up, decode the body with its task kind,
batch, encode. ``/predict/wine?model=X`` is ``/predict/wine-X`` and ``/predict/cifar?model=X``
is ``/predict/cifar-X``, so every ``wine-*`` and ``cifar-*`` model is reachable there too.
A tabular model's answer may also carry its predictive density on a grid (``density=G``,
opt-in: without it nothing is computed and the answer is as API.md has it).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from models.task import IMAGE_CLASSIFICATION, TABULAR_REGRESSION
from service.errors import InputError
from service.json_response import NumpyJSONResponse
from service.predictor import Job
from service.routes.dependencies import answer, registry_of
from service.routes.direct import DirectRoute
from service.routes.parameters import DEFAULT_LEVEL, LEVEL_QUERY, SAMPLES_QUERY, check_level
from service.routes.responses import ERROR_RESPONSES
from service.schemas import (
    CIFAR_DEFAULT,
    CIFAR_FAMILY,
    WINE_DEFAULT,
    WINE_EXAMPLE_ROW,
    WINE_FAMILY,
    ClassificationResponse,
    RegressionResponse,
    family_model,
)
from service.tasks import TASKS, Task
from service.tasks.tabular_regression import (
    JSON,
    MAX_DENSITY_POINTS,
    MAX_DENSITY_ROWS,
    DensityJob,
    TabularRegression,
)

router = APIRouter(tags=["predict"], route_class=DirectRoute)


def _body(*tasks: str) -> dict[str, Any]:
    content: dict[str, Any] = {}
    for task in tasks:
        content |= TASKS[task].request_body
    return {"requestBody": {"required": True, "content": content}}


def _wine_body() -> dict[str, Any]:
    """The tabular body, with a wine for /docs to send: its generic schema would make up a
    row of other features."""
    body = _body(TABULAR_REGRESSION)
    body["requestBody"]["content"][JSON] = {
        **body["requestBody"]["content"][JSON],
        "example": {"instances": [list(WINE_EXAMPLE_ROW)]},
    }
    return body


DENSITY_QUERY = Annotated[
    int | None,
    Query(
        ge=2,
        le=MAX_DENSITY_POINTS,
        description="Tabular models: also answer each row's predictive density on a grid of "
        f"this many points (for at most {MAX_DENSITY_ROWS} rows); omitted: no density",
    ),
]


async def predict(
    request: Request, name: str, samples: int | None, level: float, density: int | None = None
) -> Response:
    """read → decode → batch → predict → unbatch → encode, for model ``name``.

    The query is checked before anything else; the request is then admitted (or refused with
    a 503) before its body is read (:func:`~service.routes.dependencies.answer`).
    """
    job_level = check_level(level)
    served = registry_of(request).get(name)
    job_samples = served.resolve_samples(samples)
    task = served.task
    _check_density(task, name, density)

    async def decode(body: Any) -> tuple[Job, Any]:
        decoded = await task.decode(body, served.limits)
        if density is None:
            return Job(decoded.inputs, job_samples, job_level), decoded.context
        if len(decoded.inputs) > MAX_DENSITY_ROWS:
            raise InputError.unprocessable(
                loc=("query", "density"),
                msg=f"The density is drawn for at most {MAX_DENSITY_ROWS} instances per "
                f"request; this one holds {len(decoded.inputs)}",
                type="less_than_equal",
                input=density,
            )
        job = DensityJob(decoded.inputs, job_samples, job_level, density_points=density)
        return job, decoded.context

    job, result, context = await answer(
        request, served, lambda: task.read(request, served.limits), decode
    )
    return NumpyJSONResponse(
        {
            "model": served.ref,
            "samples": job.samples,
            "level": job.level,
            "predictions": task.encode(job, result, context),
        }
    )


def _check_density(task: Task[Any, Any], name: str, density: int | None) -> None:
    """A 422 if the density is asked of a model that has none, before any work is done."""
    if density is not None and not isinstance(task, TabularRegression):
        raise InputError.unprocessable(
            loc=("query", "density"),
            msg=f"Model {name} is {task.name}: only tabular-regression models have a "
            "predictive density to draw",
            input=density,
        )


@router.post(
    f"/predict/{WINE_FAMILY}",
    response_model=RegressionResponse,
    responses=ERROR_RESPONSES,
    openapi_extra=_wine_body(),
    summary="Predict wine quality with an interval and the epistemic/aleatoric split",
)
async def predict_wine(
    request: Request,
    model: Annotated[
        str,
        Query(
            description="Serves model wine-MODEL: bnn (full Bayes-by-Backprop network), "
            "gaussian (Gaussian-head network), or any other wine-* model of GET /models"
        ),
    ] = WINE_DEFAULT,
    samples: SAMPLES_QUERY = None,
    level: LEVEL_QUERY = DEFAULT_LEVEL,
    density: DENSITY_QUERY = None,
) -> Response:
    return await predict(request, family_model(WINE_FAMILY, model), samples, level, density)


@router.post(
    f"/predict/{CIFAR_FAMILY}",
    response_model=ClassificationResponse,
    response_model_exclude_none=True,
    responses=ERROR_RESPONSES,
    openapi_extra=_body(IMAGE_CLASSIFICATION),
    summary="Classify CIFAR-10 images with credible intervals and the entropy split",
)
async def predict_cifar(
    request: Request,
    model: Annotated[
        str,
        Query(
            description="Serves model cifar-MODEL: bcnn (the Bayesian CNN), or any other "
            "cifar-* model of GET /models"
        ),
    ] = CIFAR_DEFAULT,
    samples: SAMPLES_QUERY = None,
    level: LEVEL_QUERY = DEFAULT_LEVEL,
) -> Response:
    return await predict(request, family_model(CIFAR_FAMILY, model), samples, level)


@router.post(
    "/predict/{name}",
    response_model=RegressionResponse | ClassificationResponse,
    response_model_exclude_none=True,
    responses=ERROR_RESPONSES,
    openapi_extra=_body(*TASKS),
    summary="Any model of the repository, by name: its body and answer follow its task kind",
)
async def predict_model(
    request: Request,
    name: Annotated[str, Path(description="The model's name, as GET /models lists it")],
    samples: SAMPLES_QUERY = None,
    level: LEVEL_QUERY = DEFAULT_LEVEL,
    density: DENSITY_QUERY = None,
) -> Response:
    return await predict(request, name, samples, level, density)
