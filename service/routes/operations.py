"""Liveness, readiness, the model list and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from service.metrics import CONTENT_TYPE_LATEST
from service.registry import WARMING_UP_RETRY_S
from service.routes.dependencies import registry_of
from service.schemas import HealthResponse, ModelsResponse

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthResponse, summary="200 while the process runs")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=HealthResponse,
    responses={503: {"description": "Models still loading or warming up"}},
    summary="200 once every configured model is loaded and warmed up",
)
async def readyz(request: Request) -> JSONResponse:
    registry = registry_of(request)
    if registry.ready:
        return JSONResponse({"status": "ok"})
    waiting = [name for name, served in registry.models.items() if not served.ready]
    return JSONResponse(
        {"status": "loading", "waiting_for": waiting, "failed": registry.failures},
        status_code=503,
        headers={"Retry-After": str(int(WARMING_UP_RETRY_S))},
    )


@router.get(
    "/models",
    response_model=ModelsResponse,
    response_model_exclude_none=True,
    summary="The served models: task, inputs, classes, samples, test metrics, readiness",
)
async def models(request: Request) -> dict[str, list[dict[str, object]]]:
    registry = registry_of(request)
    return {"models": [served.describe() for served in registry.models.values()]}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
