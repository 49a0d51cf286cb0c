"""The Open Inference Protocol (KServe v2), REST, for every model of the repository.

``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``GET /v2/models/{name}``,
``.../ready`` and ``POST .../infer``, each also under ``/versions/{version}`` (the model's
``version``). An inference request goes the way a ``/predict`` request goes: admitted to the
model's queue before its body is read, decoded by the model's task kind (its tensor form,
:meth:`~service.tasks.Task.decode_tensors`) into the same :class:`~service.predictor.Job`,
batched with whatever else is queued, ``/predict`` requests included, and answered as
tensors. Errors are the protocol's ``{"error": "..."}``: 400 for a bad request (where
``/predict`` says 415 or 422), 404 for an unknown model, version or route, 503 and 504 as
``/predict`` says them, with ``Retry-After``. The other routes keep FastAPI's
``{"detail": ...}``: only these routes render errors this way (:class:`ProtocolRoute`).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Final

from fastapi import APIRouter, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.routing import Match

from service.errors import InputError, ServiceError, ServiceUnavailable
from service.predictor import Job
from service.protocol import EXTENSIONS, PLATFORM, PREFIX, SERVER_NAME, ProtocolError
from service.protocol.schemas import (
    ErrorResponse,
    InferenceRequest,
    InferenceResponse,
    LiveResponse,
    ModelMetadataResponse,
    ModelReadyResponse,
    Parameters,
    ReadyResponse,
    ServerMetadataResponse,
)
from service.protocol.tensors import (
    DATATYPES,
    HEADER_LENGTH,
    encode_infer_response,
    parse_infer_request,
    select_outputs,
)
from service.registry import WARMING_UP_RETRY_S, ServedModel
from service.routes.dependencies import answer, registry_of
from service.routes.direct import DirectRoute
from service.routes.parameters import DEFAULT_LEVEL, check_level
from service.schemas import inline_schema

__all__ = ["ProtocolRoute", "router"]

JSON: Final = "application/json"
BINARY: Final = "application/octet-stream"
# /predict answers these with its own statuses; the protocol calls every bad request a 400.
_BAD_REQUEST: Final = 400
_AS_BAD_REQUEST: Final = frozenset({415, 422})

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class ProtocolRoute(DirectRoute):
    """A route that answers its errors as the protocol says: ``{"error": "..."}``.

    A route class rather than exception handlers, because those would be the whole app's: the
    other routes keep ``{"detail": ...}``.
    """

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except ProtocolError as exc:
                return error_response(_BAD_REQUEST, str(exc))
            except ServiceError as exc:
                status = _BAD_REQUEST if exc.status_code in _AS_BAD_REQUEST else exc.status_code
                return error_response(status, _message(exc.detail), exc.headers)
            except RequestValidationError as exc:
                return error_response(_BAD_REQUEST, _message(list(exc.errors())))

        return answer


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


router = APIRouter(prefix=PREFIX, tags=["open inference protocol"], route_class=ProtocolRoute)

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in (
        (400, "A bad request: the message names the tensor, dimension or parameter"),
        (404, "No such model, or no such version of it"),
        (503, "Queue full, or the model not loaded yet; see Retry-After. Not processed."),
        (504, "Waited longer than the configured deadline. Not processed."),
    )
}
NAME = Annotated[str, Path(description="The model's name, as GET /models lists it")]
VERSION = Annotated[str, Path(description="The model's version: 12 hex digits")]


# ---------------------------------------------------------------------------------------------
# Server


@router.get("", response_model=ServerMetadataResponse, summary="Server metadata")
async def server_metadata(request: Request) -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": request.app.version, "extensions": list(EXTENSIONS)}


@router.get("/health/live", response_model=LiveResponse, summary="200 while the process runs")
async def server_live() -> dict[str, bool]:
    return {"live": True}


@router.get(
    "/health/ready",
    response_model=ReadyResponse,
    responses={503: _ERRORS[503]},
    summary="200 once every model is loaded and warmed up; 503 before",
)
async def server_ready(request: Request) -> Response:
    registry = registry_of(request)
    if registry.ready:
        return JSONResponse({"ready": True})
    waiting = [name for name, served in registry.models.items() if not served.ready]
    problems = [f"waiting for {', '.join(waiting)}"] if waiting else []
    problems += [f"{name} failed: {reason}" for name, reason in registry.failures.items()]
    return JSONResponse(
        {"ready": False, "error": "; ".join(problems) or "the service is starting"},
        status_code=503,
        headers={"Retry-After": str(int(WARMING_UP_RETRY_S))},
    )


# ---------------------------------------------------------------------------------------------
# Models


def _served(request: Request, name: str, version: str | None, *, ready: bool) -> ServedModel:
    """The model (ready to serve, if ``ready``): 404 for an unknown name or version, else 503
    while it is not ready."""
    registry = registry_of(request)
    served = registry.models.get(name)
    if served is None:
        return registry.get(name)  # raises: not served (404), failed or starting (503)
    if version is not None and version != served.version:
        raise ServiceError(
            404,
            f"model {name} has no version {version!r}; it serves version {served.version} "
            "(the first 12 hex digits of its checkpoint's sha256)",
        )
    return registry.get(name) if ready else served


async def model_metadata(request: Request, name: str, version: str | None = None) -> Any:
    served = _served(request, name, version, ready=False)
    task = served.task
    forms: dict[str, list[dict[str, Any]]] = {}
    for spec in task.tensor_inputs():  # one entry per input; its other forms beside it
        forms.setdefault(spec.name, []).append(spec.describe())
    inputs = [
        {**first, **({"alternatives": others} if others else {})}
        for first, *others in forms.values()
    ]
    parameters: Parameters = {
        "task": task.name,
        "kind": task.model.kind,
        "default_samples": served.default_samples,
        "max_samples": served.max_samples,
        "max_instances": served.settings.max_instances,
    }
    return {
        "name": served.name,
        "versions": [served.version],
        "platform": PLATFORM,
        "inputs": inputs,
        "outputs": [spec.describe() for spec in task.tensor_outputs()],
        "parameters": parameters,
        **task.tensor_metadata(),
    }


async def model_ready(request: Request, name: str, version: str | None = None) -> Any:
    served = _served(request, name, version, ready=False)
    try:
        registry_of(request).get(name)
    except ServiceUnavailable as exc:
        return JSONResponse(
            {"name": served.name, "ready": False, "error": exc.detail},
            status_code=exc.status_code,
            headers=exc.headers,
        )
    return {"name": served.name, "ready": True}


async def infer(request: Request, name: str, version: str | None = None) -> Response:
    """read → decode → batch → predict → unbatch → encode, as ``/predict`` does, as tensors."""
    served = _served(request, name, version, ready=True)
    _check_encoding(request)
    task = served.task
    output_names = [spec.name for spec in task.tensor_outputs()]

    async def read() -> Any:
        return parse_infer_request(await request.body(), request.headers.get(HEADER_LENGTH))

    async def decode(inference: Any) -> tuple[Job, Any]:
        samples, level = _job_parameters(served, inference.parameters)
        selected = select_outputs(inference, output_names, served.name)  # checked before a pass
        decoded = await task.decode_tensors(inference.inputs, served.limits)
        return Job(decoded.inputs, samples, level), (decoded.context, inference.id, selected)

    job, result, (context, inference_id, selected) = await answer(request, served, read, decode)
    arrays = dict(zip(output_names, task.encode_tensors(job, result, context), strict=True))
    head: dict[str, Any] = {"model_name": served.name, "model_version": served.version}
    if inference_id is not None:
        head["id"] = inference_id
    head["parameters"] = {"samples": job.samples, "level": job.level}
    content, header_length = encode_infer_response(
        head, [(output, arrays[output], binary) for output, binary in selected]
    )
    if header_length is None:
        return Response(content, media_type=JSON)
    return Response(content, media_type=BINARY, headers={HEADER_LENGTH: str(header_length)})


def _job_parameters(served: ServedModel, parameters: Parameters) -> tuple[int, float]:
    """``samples`` and ``level`` as ``/predict`` checks its query parameters of those names."""
    samples = parameters.get("samples")
    if samples is not None and (
        isinstance(samples, bool) or not isinstance(samples, int) or samples < 1
    ):
        raise ProtocolError(
            f"parameters.samples should be an integer >= 1 (posterior draws), not {samples!r}"
        )
    level = parameters.get("level", DEFAULT_LEVEL)
    if isinstance(level, bool) or not isinstance(level, int | float):
        raise ProtocolError(f"parameters.level should be a number, 0 < level < 1, not {level!r}")
    try:
        job_samples = served.resolve_samples(samples)
    except InputError as exc:
        raise ProtocolError(f"parameters.samples: {_message(exc.detail, located=False)}") from exc
    try:
        job_level = check_level(float(level))
    except InputError as exc:
        raise ProtocolError(f"parameters.level: {_message(exc.detail, located=False)}") from exc
    return job_samples, job_level


def _check_encoding(request: Request) -> None:
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ProtocolError(
            f"Content-Encoding {encoding!r} is not supported; send the body uncompressed"
        )


def _message(detail: Any, *, located: bool = True) -> str:
    """An error's detail as one line: a FastAPI-shaped list becomes ``where: what; ...``."""
    if not isinstance(detail, list):
        return str(detail)
    parts = []
    for entry in detail:
        loc = [str(part) for part in entry.get("loc", ()) if part not in ("body", "query", "path")]
        where = ".".join(loc)
        parts.append(f"{where}: {entry['msg']}" if located and where else str(entry["msg"]))
    return "; ".join(parts)


def _infer_request_schema() -> dict[str, Any]:
    """:class:`InferenceRequest`'s schema with the protocol's datatypes listed: the envelope
    check refuses any other with a message that names them, so pydantic takes any string."""
    schema = inline_schema(InferenceRequest)
    schema["properties"]["inputs"]["items"]["properties"]["datatype"]["enum"] = list(DATATYPES)
    return schema


# Each model route, at the model's name and at its name and version.
_MODEL = "/models/{name}"
_VERSIONED = "/models/{name}/versions/{version}"
_INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {"schema": _infer_request_schema()},
            BINARY: {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "The JSON request, then the binary tensor data; the JSON's "
                    "length in the Inference-Header-Content-Length header",
                }
            },
        },
    }
}


def _add_model_routes() -> None:
    for path, versioned in ((_MODEL, False), (_VERSIONED, True)):
        at = " (a version of it)" if versioned else ""
        router.add_api_route(
            path,
            _with_version(model_metadata, versioned),
            methods=["GET"],
            response_model=ModelMetadataResponse,
            response_model_exclude_none=True,
            responses={404: _ERRORS[404], 503: _ERRORS[503]},
            summary=f"Model metadata{at}: its tensors, version, classes or features",
        )
        router.add_api_route(
            f"{path}/ready",
            _with_version(model_ready, versioned),
            methods=["GET"],
            response_model=ModelReadyResponse,
            responses={404: _ERRORS[404], 503: _ERRORS[503]},
            summary=f"Model ready{at}: 200 once it is warmed up; 503 before",
        )
        router.add_api_route(
            f"{path}/infer",
            _with_version(infer, versioned),
            methods=["POST"],
            response_model=InferenceResponse,
            response_model_exclude_none=True,
            responses=_ERRORS,
            openapi_extra=_INFER_BODY,
            summary=f"Inference{at}: outputs with posterior uncertainty, batched as /predict",
        )


def _with_version(endpoint: Callable[..., Any], versioned: bool) -> Callable[..., Any]:
    """The endpoint with the path parameters of its route: ``name``, and ``version``."""
    if versioned:

        async def at_version(request: Request, name: NAME, version: VERSION) -> Any:
            return await endpoint(request, name, version)

        at_version.__name__ = f"{endpoint.__name__}_version"
        return _returning_as(endpoint, at_version)

    async def at_name(request: Request, name: NAME) -> Any:
        return await endpoint(request, name)

    at_name.__name__ = endpoint.__name__
    return _returning_as(endpoint, at_name)


def _returning_as(endpoint: Callable[..., Any], wrapper: Callable[..., Any]) -> Callable[..., Any]:
    """``wrapper`` annotated with ``endpoint``'s return: an endpoint that returns a Response
    is then called directly (:class:`~service.routes.direct.DirectRoute`)."""
    wrapper.__annotations__["return"] = endpoint.__annotations__.get("return", Any)
    return wrapper


_add_model_routes()


@router.api_route(
    "/{path:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
    include_in_schema=False,
)
async def not_a_route(request: Request, path: str) -> Response:
    """The protocol's routes this server lacks (statistics, repository, shared memory, ...)
    answer in the protocol's shape, so its clients can say what went wrong."""
    allowed = [
        method
        for route in router.routes
        if isinstance(route, APIRoute)
        and route.endpoint is not not_a_route
        and route.matches(request.scope)[0] is Match.PARTIAL
        for method in sorted(route.methods)
    ]
    if allowed:
        return error_response(
            405,
            f"{request.url.path} takes {', '.join(allowed)}, not {request.method}",
            {"Allow": ", ".join(allowed)},
        )
    return error_response(
        404,
        f"{request.method} {request.url.path} is not a route of this server: it serves the "
        "Open Inference Protocol's health, metadata and inference routes (GET /v2, "
        "/v2/health/live, /v2/health/ready, /v2/models/NAME[/versions/VERSION][/ready], "
        "POST /v2/models/NAME[/versions/VERSION]/infer)",
    )
