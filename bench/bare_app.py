"""The ceiling of HTTP + JSON here: ``/predict/wine`` decoded as the service does, no model run.

It takes the same query parameters and decodes the body with the service's own decoder for
the model ``/predict/wine`` serves (its task kind's: content type, JSON, one row per instance,
validated against that model's features and instance limit), then answers a canned body of
the same shape and size as the service's (one prediction per instance), with the service's
JSON encoder. It is a plain FastAPI endpoint, as the issue that set the targets defines it:
its query goes through FastAPI's handler, which the service's predict routes skip when their
parameters are valid (:mod:`service.routes.direct`). Service over bare is thus the cost of the
model, the batcher and the service's middleware, less what the direct route saves, not of HTTP
or JSON (``make bench`` also compares the service with this endpoint behind the direct
route).

Run it: ``uvicorn --factory bench.bare_app:create_app`` (``MODEL_REPOSITORY`` as for the
service); ``create_direct_app`` is the same endpoint behind the service's direct route.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.routing import APIRoute

from bench.checkpoints import WINE_MODEL
from models.checkpoint import load_checkpoint, verify_checkpoint
from service.errors import ModelNotFound
from service.image_decoding import ImageDecoder
from service.json_response import NumpyJSONResponse
from service.repository import CHECKPOINT_SUFFIX
from service.routes.direct import DirectRoute
from service.routes.parameters import LEVEL_QUERY, SAMPLES_QUERY, check_level
from service.schemas import WINE_DEFAULT, WINE_FAMILY, family_model
from service.settings import Settings
from service.tasks import TASKS, Limits

# float32 numbers of as many digits as the service's summaries have: as many bytes of JSON.
_MEAN, _STD, _LOWER, _UPPER, _EPISTEMIC, _ALEATORIC = np.array(
    [5.8731432, 0.6954127, 4.5117354, 7.2409125, 0.1843062, 0.6712309], dtype=np.float32
)
CANNED_PREDICTION: dict[str, Any] = {
    "mean": _MEAN,
    "std": _STD,
    "interval": {"lower": _LOWER, "upper": _UPPER},
    "epistemic_std": _EPISTEMIC,
    "aleatoric_std": _ALEATORIC,
}


def canned_answer(
    model: dict[str, str], instances: int, samples: int, level: float
) -> dict[str, Any]:
    return {
        "model": model,
        "samples": samples,
        "level": level,
        "predictions": [CANNED_PREDICTION] * instances,
    }


def create_app(
    settings: Settings | None = None, *, route_class: type[APIRoute] = APIRoute
) -> FastAPI:
    """The bare endpoint for ``settings``' repository (default: the environment's, as the
    service reads it), served by ``route_class``."""
    settings = settings or Settings()
    checkpoint = settings.model_repository / f"{WINE_MODEL}{CHECKPOINT_SUFFIX}"
    network = load_checkpoint(checkpoint)
    task = TASKS[network.task](network)
    model_settings = settings.model_settings(WINE_MODEL, task.defaults)
    # A tabular body decodes no image; the decoder is there because every Limits has one.
    limits = Limits(
        max_instances=model_settings.max_instances,
        max_file_bytes=settings.max_body_bytes,
        image_decoder=ImageDecoder(
            workers=1,
            max_image_pixels=settings.max_image_pixels,
            max_request_pixels=settings.max_request_pixels,
            max_inflight_pixels=settings.max_decoding_pixels,
        ),
    )
    # The service's name and version, so the answer is as long as the service's.
    ref = {"name": WINE_MODEL, "version": verify_checkpoint(checkpoint)[:12]}

    # The service's errors are HTTPExceptions: FastAPI's own handlers answer them, as there.
    app = FastAPI(title="bare wine endpoint (benchmark ceiling)")

    async def predict_wine(
        request: Request,
        model: str = WINE_DEFAULT,
        samples: SAMPLES_QUERY = None,
        level: LEVEL_QUERY = 0.95,
    ) -> NumpyJSONResponse:
        name = family_model(WINE_FAMILY, model)
        if name != WINE_MODEL:
            raise ModelNotFound(name, [WINE_MODEL])
        check_level(level)
        decoded = await task.decode(await task.read(request, limits), limits)
        answer = canned_answer(
            ref, len(decoded.inputs), samples or model_settings.default_samples, level
        )
        return NumpyJSONResponse(answer)

    app.router.add_api_route(
        "/predict/wine", predict_wine, methods=["POST"], route_class_override=route_class
    )

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def create_direct_app(settings: Settings | None = None) -> FastAPI:
    """The bare endpoint called as the service calls its predict routes
    (:class:`~service.routes.direct.DirectRoute`): what the same work costs without FastAPI's
    per-request preparation of the endpoint, which the plain one keeps."""
    return create_app(settings, route_class=DirectRoute)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    import uvicorn

    uvicorn.run(create_app(), host="127.0.0.1", port=args.port, access_log=False)


if __name__ == "__main__":
    main()
