"""The Python client: against a real uvicorn process, and its retry rules on a mock transport."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from models.wine import WINE_FEATURES
from service.client import (
    AsyncClient,
    Client,
    ServiceError,
    ServiceUnavailableError,
    retry_after,
)
from service.live_server import LiveServer, free_port
from service.schemas import WINE_EXAMPLE, CifarResponse, WineResponse

ROOT = Path(__file__).resolve().parents[1]
SECOND_WINE = (6.3, 0.3, 0.34, 1.6, 0.049, 14.0, 132.0, 0.994, 3.3, 0.49, 9.5)


@pytest.fixture(scope="module")
def server(live_server: LiveServer) -> LiveServer:
    return live_server


def _numbers(response: WineResponse) -> list[float]:
    """Every number of the predictions: the same to float rounding, whatever the batch."""
    return [
        value
        for p in response.predictions
        for value in (p.mean, p.std, p.interval.lower, p.interval.upper, p.aleatoric_std)
    ]


def _image(color: tuple[int, int, int], format: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buffer, format=format)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Against the real service.


def test_predict_wine_by_name_and_by_position(server: LiveServer) -> None:
    by_name = dict(zip(WINE_FEATURES, WINE_EXAMPLE, strict=True))
    with Client(server.url) as client:
        named = client.predict_wine([by_name, SECOND_WINE], samples=50, level=0.9)
        positional = client.predict_wine([WINE_EXAMPLE, SECOND_WINE], samples=50, level=0.9)
    assert isinstance(named, WineResponse)
    assert named == positional
    assert (named.model.name, named.samples, named.level) == ("wine-bnn", 50, 0.9)
    first = named.predictions[0]
    assert first.interval.lower < first.mean < first.interval.upper
    assert first.epistemic_std is not None and first.epistemic_std > 0


def test_predict_wine_splits_long_inputs_and_keeps_order(server: LiveServer) -> None:
    rows = np.array([WINE_EXAMPLE, SECOND_WINE] * 3, dtype=np.float32)  # NumPy rows are fine
    with Client(server.url) as client:
        whole = client.predict_wine(rows)
        chunked = client.predict_wine(rows, chunk_size=4)
    assert len(chunked.predictions) == 6
    assert _numbers(chunked) == pytest.approx(_numbers(whole), rel=1e-5)


def test_predict_wine_gaussian_has_no_epistemic_part(server: LiveServer) -> None:
    with Client(server.url) as client:
        result = client.predict_wine([WINE_EXAMPLE], model="gaussian")
    assert result.model.name == "wine-gaussian"
    assert result.predictions[0].epistemic_std is None


def test_predict_cifar_from_paths_and_bytes(server: LiveServer, tmp_path: Path) -> None:
    path = tmp_path / "red.png"
    path.write_bytes(_image((200, 30, 30), "PNG"))
    with Client(server.url) as client:
        result = client.predict_cifar([path, _image((30, 30, 200), "JPEG")], samples=2)
    assert isinstance(result, CifarResponse)
    assert result.samples == 2
    assert [p.filename for p in result.predictions] == ["red.png", "image-1"]
    for prediction in result.predictions:
        assert prediction.label in prediction.probabilities
        assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        split = prediction.uncertainty
        assert split.total == pytest.approx(split.aleatoric + split.epistemic, abs=1e-5)


def test_the_services_refusal_is_a_service_error(server: LiveServer) -> None:
    with Client(server.url) as client, pytest.raises(ServiceError) as raised:
        client.predict_wine([WINE_EXAMPLE[:10]])
    error = raised.value
    assert error.status_code == 422
    assert error.detail[0]["loc"] == ["body", "instances", 0]
    assert f"{server.url}/predict/wine answered 422: body.instances.0:" in str(error)


def test_async_client_gives_the_same_answers(server: LiveServer) -> None:
    async def ask() -> tuple[WineResponse, CifarResponse]:
        async with AsyncClient(server.url) as client:
            wine = await client.predict_wine([WINE_EXAMPLE], samples=50)
            cifar = await client.predict_cifar([_image((0, 200, 0), "PNG")], samples=2)
        return wine, cifar

    wine, cifar = asyncio.run(ask())
    with Client(server.url) as client:
        expected = client.predict_wine([WINE_EXAMPLE], samples=50)
    assert _numbers(wine) == pytest.approx(_numbers(expected), rel=1e-5)
    assert cifar.predictions[0].filename == "image-0"


def test_service_down_is_named_after_retrying() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    waits: list[float] = []
    with (
        Client(url, retries=2, sleep=waits.append) as client,
        pytest.raises(ServiceUnavailableError) as raised,
    ):
        client.predict_wine([WINE_EXAMPLE])
    assert raised.value.status_code is None
    assert str(raised.value).startswith(f"cannot reach the service at {url}/predict/wine: ")
    assert waits == [0.5, 1.0]  # backing off


# ---------------------------------------------------------------------------------------------
# Retries, on a mock transport: a 503 says when to come back; nothing else is retried.

WINE_ANSWER = {
    "model": {"name": "wine-bnn", "version": "c2c50cca20b8"},
    "samples": 100,
    "level": 0.95,
    "predictions": [
        {
            "mean": 5.9,
            "std": 0.7,
            "interval": {"lower": 4.5, "upper": 7.3},
            "epistemic_std": 0.1,
            "aleatoric_std": 0.7,
        }
    ],
}


def _busy(retry_after: str | None = "1") -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return httpx.Response(503, json={"detail": "model wine_bnn is at capacity"}, headers=headers)


class Script:
    """A transport that answers from a list, and counts the requests it got."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers.pop(0)


def test_503_is_retried_after_retry_after() -> None:
    script = Script(_busy("1"), httpx.Response(200, json=WINE_ANSWER))
    waits: list[float] = []
    transport = httpx.MockTransport(script)
    with Client("http://service", transport=transport, sleep=waits.append) as client:
        result = client.predict_wine([WINE_EXAMPLE])
    assert result == WineResponse.model_validate(WINE_ANSWER)
    assert len(script.requests) == 2
    assert waits and waits[0] >= 1.0
    assert json.loads(script.requests[1].content) == {"instances": [list(WINE_EXAMPLE)]}


def test_503_until_retries_run_out_is_service_unavailable() -> None:
    script = Script(*[_busy("1")] * 4)
    waits: list[float] = []
    transport = httpx.MockTransport(script)
    with (
        Client("http://service", retries=3, transport=transport, sleep=waits.append) as client,
        pytest.raises(ServiceUnavailableError) as raised,
    ):
        client.predict_wine([WINE_EXAMPLE])
    assert waits == [1.0, 1.0, 1.0]
    assert len(script.requests) == 4
    assert raised.value.status_code == 503
    assert raised.value.detail == "model wine_bnn is at capacity"
    assert "http://service/predict/wine answered 503" in str(raised.value)


def test_a_retry_after_beyond_the_wait_budget_gives_up_at_once() -> None:
    script = Script(_busy("60"))
    waits: list[float] = []
    transport = httpx.MockTransport(script)
    with (
        Client("http://service", max_retry_wait=30, transport=transport, sleep=waits.append) as c,
        pytest.raises(ServiceUnavailableError),
    ):
        c.predict_wine([WINE_EXAMPLE])
    assert waits == []


def test_503_without_retry_after_backs_off() -> None:
    script = Script(_busy(None), _busy(None), httpx.Response(200, json=WINE_ANSWER))
    waits: list[float] = []
    transport = httpx.MockTransport(script)
    with Client("http://service", transport=transport, sleep=waits.append) as client:
        client.predict_wine([WINE_EXAMPLE])
    assert waits == [0.5, 1.0]


def test_client_errors_are_never_retried() -> None:
    script = Script(httpx.Response(413, json={"detail": "request body is too large"}))
    waits: list[float] = []
    transport = httpx.MockTransport(script)
    with (
        Client("http://service", transport=transport, sleep=waits.append) as client,
        pytest.raises(ServiceError) as raised,
    ):
        client.predict_wine([WINE_EXAMPLE])
    assert not isinstance(raised.value, ServiceUnavailableError)
    assert (raised.value.status_code, len(script.requests), waits) == (413, 1, [])


def test_async_client_retries_503_too() -> None:
    script = Script(_busy("2"), httpx.Response(200, json=WINE_ANSWER))
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def ask() -> WineResponse:
        transport = httpx.MockTransport(script)
        async with AsyncClient("http://service", transport=transport, sleep=sleep) as client:
            return await client.predict_wine([WINE_EXAMPLE])

    assert asyncio.run(ask()) == WineResponse.model_validate(WINE_ANSWER)
    assert waits == [2.0]


@pytest.mark.parametrize(
    ("header", "expected"),
    [("3", 3.0), ("1.5", 1.5), ("-4", 0.0), ("soon", None), ("nan", None), (None, None)],
)
def test_retry_after_values(header: str | None, expected: float | None) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    assert retry_after(httpx.Response(503, headers=headers)) == expected


def test_retry_after_as_an_http_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    seconds = retry_after(httpx.Response(503, headers={"Retry-After": when}))
    assert seconds is not None and 0 < seconds <= 30
