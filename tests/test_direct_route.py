"""DirectRoute: an endpoint called directly gets what FastAPI would have given it; whatever it
cannot read that way, FastAPI answers exactly as before.

The oracle is FastAPI itself: one endpoint, with the service's own query parameters, served
both by a plain ``APIRoute`` and by a ``DirectRoute``; every query of a corpus (valid, invalid,
odd encodings, repeated and unknown keys, random ones) must get the same status and body from
both. A spy on FastAPI's dependency solving shows which requests took the direct path, so the
comparison cannot pass by falling back every time.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import fastapi.routing
import pytest
from fastapi import Depends, FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

import service.routes.direct
from service.app import create_app
from service.routes.direct import DirectRoute, plain_parameters
from service.routes.parameters import DEFAULT_LEVEL, LEVEL_QUERY, SAMPLES_QUERY
from service.routes.predict import DENSITY_QUERY
from service.settings import Settings

ECHO = "/echo/{name}"


async def echo(
    request: Request,
    name: str,
    model: str = "bnn",
    samples: SAMPLES_QUERY = None,
    level: LEVEL_QUERY = DEFAULT_LEVEL,
    density: DENSITY_QUERY = None,
) -> Response:
    """Each argument with its type: ``1`` and ``1.0`` must not pass for each other."""
    arguments = {
        "name": name,
        "model": model,
        "samples": samples,
        "level": level,
        "density": density,
    }
    return JSONResponse(
        {key: [repr(value), type(value).__name__] for key, value in arguments.items()}
    )


def echo_app(route_class: type[APIRoute]) -> FastAPI:
    app = FastAPI()
    app.router.routes.append(route_class(ECHO, echo, methods=["POST"]))
    return app


@pytest.fixture(scope="module")
def clients() -> Iterator[tuple[TestClient, TestClient]]:
    with TestClient(echo_app(APIRoute)) as plain, TestClient(echo_app(DirectRoute)) as direct:
        yield plain, direct


@pytest.fixture
def solved(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths whose parameters FastAPI solved (the requests that did not go direct)."""
    calls: list[str] = []
    solve = fastapi.routing.solve_dependencies

    async def spy(*, request: Request, **kwargs: Any) -> Any:
        calls.append(request.url.path)
        return await solve(request=request, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", spy)
    return calls


VALUES = [
    "", "0", "1", "2", "100", "007", "+5", "-1", " 5", "5 ", "1_000", "1e3", "1.0", "0.5",
    ".5", "5.", "1e-3", "0.95", "0.999999999999999999", "nan", "NaN", "inf", "-inf", "0x10",
    "abc", "\uff11\uff12", "9" * 30, "true", "1000", "1001", "%31%30", "1+2", "a&b", "é",
]  # fmt: skip
KEYS = ["model", "samples", "level", "density"]


def corpus() -> list[str]:
    queries = ["", "&", "&&", "samples", "samples&level", "=5", "unknown=1", "Samples=5"]
    queries += [f"{key}={quote(value)}" for key in KEYS for value in VALUES]
    queries += [f"{key}={value}" for key in KEYS for value in ("1+2", "a%26b", "%2B5", "%00")]
    queries += [
        "samples=5&samples=7",  # FastAPI keeps the last
        "samples=x&samples=7",
        "samples=7&samples=x",
        "level=0.5&level=2",
        "model=gaussian&samples=10&level=0.8&density=50",
        "samples=10&unknown=x&level=0.5",
        "sam%70les=12",  # a percent-encoded key
        "samples=10;level=0.5",  # not a separator
        "samples=10&level=",
        "density=1&samples=0",  # two errors
    ]
    rng = random.Random(20261206)
    for _ in range(300):
        keys = rng.choices([*KEYS, "other"], k=rng.randint(1, 5))
        queries.append("&".join(f"{key}={quote(rng.choice(VALUES))}" for key in keys))
    return queries


def test_every_query_gets_what_fastapi_gives(
    clients: tuple[TestClient, TestClient], solved: list[str]
) -> None:
    plain, direct = clients
    went_direct = 0
    for query in corpus():
        path = f"/echo/wine-bnn?{query}"
        expected = plain.post(path)
        solved.clear()
        got = direct.post(path)
        assert (got.status_code, got.json()) == (expected.status_code, expected.json()), query
        went_direct += not solved
        # Valid queries go direct; FastAPI answers every error itself.
        assert bool(solved) == (expected.status_code != 200), query
    assert went_direct > 100  # the direct path was taken, not only the fallback


@pytest.mark.parametrize("name", ["wine-bnn", "a%20b", "%C3%BCn%C3%AF", "x.y", "-"])
def test_path_parameters_read_as_fastapi_reads_them(
    clients: tuple[TestClient, TestClient], solved: list[str], name: str
) -> None:
    plain, direct = clients
    expected = plain.post(f"/echo/{name}?samples=3")
    solved.clear()
    got = direct.post(f"/echo/{name}?samples=3")
    assert (got.status_code, got.json()) == (expected.status_code, expected.json())
    assert solved == [] and got.status_code == 200


def test_a_scope_without_a_query_string_reads_as_an_empty_query() -> None:
    """ASGI lets a server leave ``query_string`` out; Starlette reads that as no query."""
    route = DirectRoute(ECHO, echo, methods=["POST"])
    parameters = plain_parameters(route.dependant)
    assert parameters is not None
    request = Request({"type": "http", "path_params": {"name": "x"}, "headers": []})
    assert parameters.read(request) == {
        "name": "x",
        "model": "bnn",
        "samples": None,
        "level": DEFAULT_LEVEL,
        "density": None,
    }


def test_a_traced_request_goes_through_fastapi(
    clients: tuple[TestClient, TestClient], solved: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """FastAPI's telemetry records the parameters of a traced request: it must see them."""
    _, direct = clients
    assert direct.post("/echo/a?samples=3").status_code == 200 and solved == []
    monkeypatch.setattr(service.routes.direct, "get_telemetry_data", lambda: object())
    assert direct.post("/echo/a?samples=3").json()["samples"] == ["3", "int"]
    assert solved == ["/echo/a"]


def _returns_dict(request: Request) -> dict[str, int]:
    return {}


async def _returns_dict_async(request: Request) -> dict[str, int]:
    return {}


async def _with_header(request: Request, x_token: Annotated[str, Header()]) -> Response:
    return Response()


async def _with_dependency(request: Request, n: Annotated[int, Depends(lambda: 1)]) -> Response:
    return Response()


async def _with_list(request: Request, ids: Annotated[list[int], fastapi.Query()]) -> Response:
    return Response()


async def _with_body(request: Request, body: dict[str, int]) -> Response:
    return Response()


async def _with_mutable_default(request: Request, tags: str | list[str] = "a") -> Response:
    return Response()


async def _without_request(samples: int = 1) -> Response:
    return Response()


@pytest.mark.parametrize(
    "endpoint",
    [
        _returns_dict,
        _returns_dict_async,
        _with_header,
        _with_dependency,
        _with_list,
        _with_body,
        _with_mutable_default,
        _without_request,
    ],
)
def test_what_fastapi_must_prepare_is_left_to_it(endpoint: Any) -> None:
    route = DirectRoute("/x", endpoint, methods=["POST"])
    assert plain_parameters(route.dependant) is None


def test_a_route_left_to_fastapi_answers_as_before() -> None:
    app = FastAPI()
    app.router.routes.append(DirectRoute("/h", _with_header, methods=["POST"]))
    with TestClient(app) as client:
        assert client.post("/h", headers={"x-token": "t"}).status_code == 200
        missing = client.post("/h")
        assert missing.status_code == 422
        assert missing.json()["detail"][0]["loc"] == ["header", "x-token"]


def test_the_service_calls_its_predict_routes_directly(checkpoint_dir: Path) -> None:
    """The routes a prediction takes must not lose the direct path to a change of their
    signatures."""
    app = create_app(Settings(model_repository=checkpoint_dir, models=["wine-bnn"]))
    hot = {
        route.path: route
        for route in app.routes
        if isinstance(route, APIRoute)
        and (route.path.startswith("/predict/") or route.path.endswith("/infer"))
    }
    assert set(hot) == {
        "/predict/wine",
        "/predict/cifar",
        "/predict/{name}",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    }
    for path, route in hot.items():
        assert isinstance(route, DirectRoute), path
        assert plain_parameters(route.dependant) is not None, path
