"""The ceiling of HTTP + JSON here: ``/predict/wine`` parsed as the service does, no model.

It takes the same query parameters, checks the content type and parses the body with the
service's own ``parse_json`` and ``wine_rows``, then answers a canned JSON body of the same
shape and size as the service's (one prediction per instance). Service over bare is thus the
cost of the model, the batcher and the service's middleware, not of HTTP or JSON.

Run it: ``uvicorn --factory bench.bare_app:create_app``.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from service.errors import install_error_handlers
from service.inputs import check_content_type, parse_json, wine_rows
from service.routes.responses import LEVEL_QUERY, SAMPLES_QUERY
from service.routes.wine import WineModel
from service.settings import WineBNNSettings

MAX_INSTANCES = WineBNNSettings().max_instances
DEFAULT_SAMPLES = WineBNNSettings().default_samples

# float32 numbers widened to float, as the service's .tolist() gives: same digits, same bytes.
_MEAN, _STD, _LOWER, _UPPER, _EPISTEMIC, _ALEATORIC = np.array(
    [5.8731, 0.6954, 4.5117, 7.2409, 0.1843, 0.6712], dtype=np.float32
).tolist()
CANNED_PREDICTION: dict[str, Any] = {
    "mean": _MEAN,
    "std": _STD,
    "interval": {"lower": _LOWER, "upper": _UPPER},
    "epistemic_std": _EPISTEMIC,
    "aleatoric_std": _ALEATORIC,
}
# The committed checkpoint's name and version, so the answer is as long as the service's.
CANNED_MODEL = {"name": "wine-bnn", "version": "c2c50cca20b8"}


def canned_answer(instances: int, samples: int, level: float) -> dict[str, Any]:
    return {
        "model": CANNED_MODEL,
        "samples": samples,
        "level": level,
        "predictions": [CANNED_PREDICTION] * instances,
    }


def create_app() -> FastAPI:
    app = FastAPI(title="bare wine endpoint (benchmark ceiling)")
    install_error_handlers(app)

    @app.post("/predict/wine")
    async def predict_wine(
        request: Request,
        model: WineModel = WineModel.bnn,
        samples: SAMPLES_QUERY = None,
        level: LEVEL_QUERY = 0.95,
    ) -> JSONResponse:
        check_content_type(request.headers.get("content-type"), ("application/json",))
        rows = wine_rows(parse_json(await request.body()), max_instances=MAX_INSTANCES)
        return JSONResponse(canned_answer(len(rows), samples or DEFAULT_SAMPLES, level))

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    import uvicorn

    uvicorn.run(create_app(), host="127.0.0.1", port=args.port, access_log=False)


if __name__ == "__main__":
    main()
