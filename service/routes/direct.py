"""Routes that call their endpoint directly when its parameters are plain.

FastAPI prepares every call of an endpoint the same way, whatever the endpoint declares: it
inspects each parameter's annotation again (is it a sequence, a model, which aliases), builds
the query's multidict, opens its telemetry operations and only then validates. For the predict
routes (the request, a few scalar query and path parameters, a :class:`Response` returned)
that preparation was nearly a third of what a wine request cost the event loop: 59 of 201 µs,
driven in process through the app's ASGI interface, 32 requests at a time.

A :class:`DirectRoute` looks at its endpoint once. If the endpoint takes nothing FastAPI would
have to resolve (no dependencies, body, headers or cookies; scalar query and path parameters),
each request's parameters are read the way Starlette reads them, validated by the very
validators FastAPI made for them (the endpoint's model fields), and the endpoint is called.
Whatever that cannot take (an invalid or missing parameter, a request FastAPI's telemetry
traces) goes through FastAPI's handler as before, so errors, their shape and the traces are
FastAPI's own.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.telemetry import get_telemetry_data

__all__ = ["DirectRoute", "PlainParameters", "plain_parameters"]

Handler = Callable[[Request], Coroutine[Any, Any, Response]]

# Defaults FastAPI would deep-copy for each request; these need no copy.
_IMMUTABLE: Final = (type(None), bool, int, float, str, bytes)
# The dependant's slots for things FastAPI injects other than the request.
_INJECTED: Final = (
    "websocket_param_name",
    "http_connection_param_name",
    "response_param_name",
    "background_tasks_param_name",
    "security_scopes_param_name",
)


class DirectRoute(APIRoute):
    """An :class:`APIRoute` whose endpoint is called without FastAPI's per-request preparation
    when :func:`plain_parameters` can read its parameters; FastAPI's handler otherwise."""

    def get_route_handler(self) -> Handler:
        prepared = super().get_route_handler()
        parameters = plain_parameters(self.dependant)
        if parameters is None:
            return prepared
        endpoint = self.dependant.call
        request_name = self.dependant.request_param_name
        assert endpoint is not None and request_name is not None  # plain_parameters checked

        async def handler(request: Request) -> Response:
            values = parameters.read(request)
            if values is None or get_telemetry_data() is not None:
                return await prepared(request)
            values[request_name] = request
            return await endpoint(**values)

        return handler


@dataclass(frozen=True)
class _Parameter:
    name: str  # the endpoint's argument
    alias: str  # the key in the query or path
    field: Any  # FastAPI's ModelField: its validator
    loc: tuple[str, str]
    default: Any
    required: bool


@dataclass(frozen=True)
class PlainParameters:
    """An endpoint's query and path parameters, read and validated as FastAPI would."""

    query: Sequence[_Parameter]
    path: Sequence[_Parameter]

    def read(self, request: Request) -> dict[str, Any] | None:
        """The endpoint's arguments from ``request`` (all but the request itself), or None
        where FastAPI would answer an error: a parameter missing or invalid."""
        values: dict[str, Any] = {}
        if self.query:
            raw = request.scope.get("query_string", b"")
            # As Starlette's QueryParams parses it; a repeated key keeps its last value.
            given = dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True)) if raw else {}
            if not _validate(self.query, given, values):
                return None
        if self.path and not _validate(self.path, request.path_params, values):
            return None
        return values


def _validate(
    parameters: Sequence[_Parameter], given: Mapping[str, Any], values: dict[str, Any]
) -> bool:
    for parameter in parameters:
        raw = given.get(parameter.alias)
        if raw is None:
            if parameter.required:
                return False
            values[parameter.name] = parameter.default
            continue
        value, errors = parameter.field.validate(raw, values, loc=parameter.loc)
        if errors:
            return False
        values[parameter.name] = value
    return True


def plain_parameters(dependant: Dependant) -> PlainParameters | None:
    """How to read ``dependant``'s parameters directly, or None where FastAPI must: the
    endpoint is not a coroutine function returning a Response, takes anything beyond the
    request and scalar query and path parameters, or a parameter has a default that FastAPI
    would copy or validate, or an alias of its own for validation."""
    call = dependant.call
    if call is None or not inspect.iscoroutinefunction(call) or not _returns_response(call):
        return None
    if dependant.request_param_name is None or any(
        getattr(dependant, slot) is not None for slot in _INJECTED
    ):
        return None
    if dependant.dependencies or dependant.body_params:
        return None
    if dependant.header_params or dependant.cookie_params:
        return None
    query = _plain_all(dependant.query_params, "query")
    path = _plain_all(dependant.path_params, "path")
    if query is None or path is None:
        return None
    return PlainParameters(query=query, path=path)


def _plain_all(fields: Sequence[Any], location: str) -> list[_Parameter] | None:
    parameters = [_plain(field, location) for field in fields]
    plain = [parameter for parameter in parameters if parameter is not None]
    return plain if len(plain) == len(parameters) else None


def _plain(field: Any, location: str) -> _Parameter | None:
    info = field.field_info
    if info.validation_alias is not None or _is_collection(info.annotation):
        return None
    required = info.is_required()
    default = None if required else info.get_default(call_default_factory=True)
    if not required and (info.validate_default or not isinstance(default, _IMMUTABLE)):
        return None
    return _Parameter(field.name, field.alias, field, (location, field.alias), default, required)


def _is_collection(annotation: Any) -> bool:
    """A list, set, tuple or dict anywhere in the annotation: FastAPI reads those as repeated
    keys or JSON."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Annotated, typing.Union, types.UnionType):
        return any(_is_collection(arg) for arg in typing.get_args(annotation))
    target = origin or annotation
    return isinstance(target, type) and issubclass(target, (list, set, frozenset, tuple, dict))


def _returns_response(call: Callable[..., Any]) -> bool:
    try:
        returned = typing.get_type_hints(call).get("return")
    except Exception:  # an annotation that does not resolve: leave the call to FastAPI
        return False
    return isinstance(returned, type) and issubclass(returned, Response)
