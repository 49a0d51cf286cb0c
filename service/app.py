"""The FastAPI application: ``uvicorn --factory service.app:create_app``.

A request's path is plain to see (:func:`service.routes.predict.predict`): the model's
task kind (:mod:`service.tasks`) decodes the body, the model's
:class:`~service.batcher.DynamicBatcher` batches it with concurrent requests, the
task's :class:`~service.predictor.Predictor` runs one vectorised pass over S posterior
draws and summarises, the batcher hands each request its rows, and the task encodes
the JSON answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute

from service.access_log import AccessLogMiddleware
from service.backend import BackendFactory
from service.body_limit import BodySizeLimitMiddleware
from service.collector import serving_collector
from service.disconnect import client_disconnected
from service.metrics import ServiceMetrics
from service.registry import ModelRegistry
from service.routes import operations, page, predict, v2
from service.settings import Settings

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, *, backends: BackendFactory | None = None
) -> FastAPI:
    """The app; ``backends`` runs the models elsewhere (:mod:`service.ray_app`), else here."""
    settings = settings or Settings()
    _configure_logging(settings.log_level)
    metrics = ServiceMetrics()
    registry = ModelRegistry(settings, metrics, backends=backends)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Verify and load before accepting traffic: a bad checkpoint stops start-up here.
        registry.open()
        # Everything loaded so far (modules, models) lives as long as the process, and requests
        # make no reference cycles: the collector is set to walk neither (service.collector).
        with serving_collector():
            warm_up = asyncio.create_task(registry.warm_up(), name="warm-up")
            yield
            if not warm_up.done():
                warm_up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await warm_up
            await registry.close()
            metrics.close()

    app = FastAPI(
        title="Bayesian uncertainty service",
        summary="Predictions with posterior uncertainty: mean, interval and its epistemic and "
        "aleatoric parts.",
        version="0.1.0",
        lifespan=lifespan,
        # Served by service.routes.page from vendored assets: FastAPI's load them from a CDN.
        docs_url=None,
        redoc_url=None,
        routes=_routes(),
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.registry = registry
    page.mount_static(app)
    app.add_exception_handler(ClientDisconnect, client_disconnected)
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(
        AccessLogMiddleware,
        metrics=metrics,
        route_templates=lambda: app.openapi()["paths"],
    )
    return app


def _routes() -> list[BaseRoute]:
    """Every route of the service, in one flat list, the predictions' first.

    Starlette tries routes in order. ``include_router`` would add each module's router as one
    entry that FastAPI (0.165) matches by scanning the router's routes, then scans again to
    hand the request on: from the app to the route's handler, ``/predict/wine`` behind the
    operations' routes took 17-19 µs of a request's CPU and a v2 ``infer`` 45 µs; flat and
    in this order, 3-4 and 15 µs (this project's CPU).
    """
    routers = (predict.router, v2.router, operations.router, page.router)
    return [route for router in routers for route in router.routes]


def _configure_logging(level: str) -> None:
    """Our loggers print beside uvicorn's, unless the host application configured them."""
    root = logging.getLogger("service")
    root.setLevel(level.upper())
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.propagate = False
