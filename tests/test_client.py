"""The Python client: against a real uvicorn process, and its retry rules on a mock transport."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from service.client import (
    AsyncClient,
    Client,
    ServiceError,
    ServiceUnavailableError,
    retry_after,
)
from service.live_server import LiveServer, free_port
from service.schemas import ClassificationResponse, ModelsResponse, RegressionResponse
from training.datasets.wine import WINE_FEATURES

ROOT = Path(__file__).resolve().parents[1]
# The first two white wines of the UCI file, in its column order.
FIRST_WINE = (7.0, 0.27, 0.36, 20.7, 0.045, 45.0, 170.0, 1.001, 3.0, 0.45, 8.8)
SECOND_WINE = (6.3, 0.3, 0.34, 1.6, 0.049, 14.0, 132.0, 0.994, 3.3, 0.49, 9.5)
SERVED = ["cifar-bcnn", "wine-bnn", "wine-gaussian"]  # conftest's live_server


@pytest.fixture(scope="module")
def server(live_server: LiveServer) -> LiveServer:
    return live_server


def _numbers(response: RegressionResponse) -> list[float]:
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


class Recording(httpx.BaseTransport):
    """A real transport that also keeps every request it sent, to count and read them."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


# ---------------------------------------------------------------------------------------------
# No torch: the client and the command line run where the networks are not installed.


@pytest.mark.parametrize(
    "code",
    [
        "import service.client",
        "import service.cli",
        # --help builds every subcommand's parser, and must still need nothing heavy.
        "from service.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
    ],
)
def test_client_and_cli_import_no_torch_and_no_service_internals(code: str) -> None:
    check = (
        "import sys\n"
        f"{code}\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', "
        "'models.', 'service.settings', 'service.registry')) and m != 'models.task')\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------------------
# Against the real service.


def test_models_lists_what_is_served(server: LiveServer) -> None:
    with Client(server.url) as client:
        models = client.models()
    assert isinstance(models, ModelsResponse)
    by_name = {m.name: m for m in models.models}
    assert sorted(by_name) == SERVED
    assert by_name["wine-bnn"].task == "tabular-regression"
    assert by_name["wine-bnn"].input["features"] == list(WINE_FEATURES)
    assert by_name["cifar-bcnn"].task == "image-classification"
    assert all(m.ready for m in models.models)


def test_predict_by_name_follows_the_models_task(server: LiveServer) -> None:
    with Client(server.url) as client:
        tabular = client.predict("wine-gaussian", [FIRST_WINE])
        image = client.predict("cifar-bcnn", [_image((200, 30, 30), "PNG")], samples=2)
        shortcut = client.predict_wine([FIRST_WINE], model="gaussian")
    assert isinstance(tabular, RegressionResponse)
    assert tabular.model.name == "wine-gaussian"
    assert _numbers(tabular) == pytest.approx(_numbers(shortcut), rel=1e-5)
    assert isinstance(image, ClassificationResponse)
    assert (image.model.name, image.samples) == ("cifar-bcnn", 2)


def test_predict_wine_by_name_and_by_position(server: LiveServer) -> None:
    by_name = dict(zip(WINE_FEATURES, FIRST_WINE, strict=True))
    with Client(server.url) as client:
        named = client.predict_wine([by_name, SECOND_WINE], samples=50, level=0.9)
        positional = client.predict_wine([FIRST_WINE, SECOND_WINE], samples=50, level=0.9)
    assert isinstance(named, RegressionResponse)
    assert named == positional
    assert (named.model.name, named.samples, named.level) == ("wine-bnn", 50, 0.9)
    first = named.predictions[0]
    assert first.interval.lower < first.mean < first.interval.upper
    assert first.epistemic_std is not None and first.epistemic_std > 0


def test_predict_wine_splits_long_inputs_and_keeps_order(server: LiveServer) -> None:
    rows = np.array([FIRST_WINE, SECOND_WINE] * 3, dtype=np.float32)  # NumPy rows are fine
    with Client(server.url) as client:
        whole = client.predict_wine(rows)
        chunked = client.predict_wine(rows, chunk_size=4)
    assert len(chunked.predictions) == 6
    assert _numbers(chunked) == pytest.approx(_numbers(whole), rel=1e-5)


def test_long_inputs_are_split_by_the_servers_max_instances(checkpoint_dir: Path) -> None:
    env = {
        "MODEL_REPOSITORY": str(checkpoint_dir),
        "MODELS": '["wine-bnn"]',
        "WINE_BNN__MAX_INSTANCES": "2",
    }
    rows = [FIRST_WINE, SECOND_WINE, SECOND_WINE, FIRST_WINE, SECOND_WINE]
    with LiveServer(env, cwd=ROOT) as small:
        # The limit is real: three rows in one request are refused.
        refused = httpx.post(f"{small.url}/predict/wine-bnn", json={"instances": rows[:3]})
        transport = Recording()
        with Client(small.url, transport=transport) as client:
            joined = client.predict_wine(rows, samples=20)
            one_by_one = [client.predict_wine([row], samples=20) for row in rows]
    assert refused.status_code == 422
    sent = [
        len(json.loads(r.content)["instances"]) for r in transport.requests if r.method == "POST"
    ]
    assert sent == [2, 2, 1, *[1] * len(rows)]
    assert [r.url.path for r in transport.requests].count("/models") == 1  # asked once
    expected = [n for answer in one_by_one for n in _numbers(answer)]
    assert _numbers(joined) == pytest.approx(expected, rel=1e-5)


def test_predict_wine_gaussian_has_no_epistemic_part(server: LiveServer) -> None:
    with Client(server.url) as client:
        result = client.predict_wine([FIRST_WINE], model="gaussian")
    assert result.model.name == "wine-gaussian"
    assert result.predictions[0].epistemic_std is None


def test_predict_cifar_from_paths_and_bytes(server: LiveServer, tmp_path: Path) -> None:
    path = tmp_path / "red.png"
    path.write_bytes(_image((200, 30, 30), "PNG"))
    with Client(server.url) as client:
        result = client.predict_cifar([path, _image((30, 30, 200), "JPEG")], samples=2)
    assert isinstance(result, ClassificationResponse)
    assert result.samples == 2
    assert [p.filename for p in result.predictions] == ["red.png", "image-1"]
    for prediction in result.predictions:
        assert prediction.label in prediction.probabilities
        assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        split = prediction.uncertainty
        assert split.total == pytest.approx(split.aleatoric + split.epistemic, abs=1e-5)


def test_an_unknown_model_is_the_servers_404(server: LiveServer) -> None:
    with Client(server.url) as client:
        with pytest.raises(ServiceError) as raised:
            client.predict("no-such-model", [FIRST_WINE])
        with pytest.raises(ServiceError) as shortcut:
            client.predict_wine([FIRST_WINE], model="nope")
    for error, name in ((raised.value, "no-such-model"), (shortcut.value, "wine-nope")):
        assert not isinstance(error, ServiceUnavailableError)
        assert error.status_code == 404
        assert error.detail == (
            f"no model named {name!r} is served; the models are: {', '.join(SERVED)}"
        )
        assert str(error).startswith(f"{server.url}/predict/{name} answered 404: no model named")


def test_the_services_refusal_is_a_service_error(server: LiveServer) -> None:
    with Client(server.url) as client, pytest.raises(ServiceError) as raised:
        client.predict_wine([FIRST_WINE[:10]])
    error = raised.value
    assert error.status_code == 422
    assert error.detail[0]["loc"] == ["body", "instances", 0]
    assert f"{server.url}/predict/wine-bnn answered 422: body.instances.0:" in str(error)


def test_async_client_gives_the_same_answers(server: LiveServer) -> None:
    async def ask() -> tuple[RegressionResponse, ClassificationResponse, ModelsResponse]:
        async with AsyncClient(server.url) as client:
            wine = await client.predict_wine([FIRST_WINE], samples=50)
            cifar = await client.predict_cifar([_image((0, 200, 0), "PNG")], samples=2)
            return wine, cifar, await client.models()

    wine, cifar, models = asyncio.run(ask())
    with Client(server.url) as client:
        expected = client.predict_wine([FIRST_WINE], samples=50)
        assert models == client.models()
    assert _numbers(wine) == pytest.approx(_numbers(expected), rel=1e-5)
    assert cifar.predictions[0].filename == "image-0"


def test_async_client_unknown_model_is_the_servers_404(server: LiveServer) -> None:
    async def ask() -> None:
        async with AsyncClient(server.url) as client:
            await client.predict("no-such-model", [FIRST_WINE])

    with pytest.raises(ServiceError) as raised:
        asyncio.run(ask())
    assert raised.value.status_code == 404


def test_service_down_is_named_after_retrying() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    waits: list[float] = []
    with (
        Client(url, retries=2, sleep=waits.append) as client,
        pytest.raises(ServiceUnavailableError) as raised,
    ):
        client.predict_wine([FIRST_WINE])
    assert raised.value.status_code is None
    assert str(raised.value).startswith(f"cannot reach the service at {url}/models: ")
    assert waits == [0.5, 1.0]  # backing off


# ---------------------------------------------------------------------------------------------
# On a mock transport: GET /models, chunking, and the retry rules (a 503 says when to come
# back; nothing else is retried).


def _model_entry(name: str, task_kind: str, max_instances: int) -> dict[str, Any]:
    if task_kind == "tabular-regression":
        model_input: dict[str, Any] = {"type": "features", "features": list(WINE_FEATURES)}
    else:
        model_input = {"type": "image", "formats": ["PNG"], "size": [32, 32]}
    return {
        "name": name,
        "task": task_kind,
        "kind": "tabular-bnn",
        "version": "c2c50cca20b8",
        "device": "cpu",
        "execution": "eager",
        "default_samples": 100,
        "max_samples": 1000,
        "max_instances": max_instances,
        "input": model_input,
        "members": 1,
        "test_metrics": {},
        "ready": True,
    }


MODELS_ANSWER = {
    "models": [
        _model_entry("wine-bnn", "tabular-regression", 1024),
        _model_entry("wine-small", "tabular-regression", 2),
        _model_entry("wine-pictures", "image-classification", 64),
    ]
}
PREDICTION = {
    "mean": 5.9,
    "std": 0.7,
    "interval": {"lower": 4.5, "upper": 7.3},
    "epistemic_std": 0.1,
    "aleatoric_std": 0.7,
}


def _wine_answer(rows: int = 1, first_mean: float = 5.9) -> dict[str, Any]:
    """A regression answer; each prediction's mean numbers it, to check the order."""
    return {
        "model": {"name": "wine-bnn", "version": "c2c50cca20b8"},
        "samples": 100,
        "level": 0.95,
        "predictions": [{**PREDICTION, "mean": first_mean + i} for i in range(rows)],
    }


WINE_ANSWER = _wine_answer()


def _busy(retry_after: str | None = "1") -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return httpx.Response(503, json={"detail": "model wine_bnn is at capacity"}, headers=headers)


class Script:
    """A service that lists MODELS_ANSWER and answers predictions from a list, counting both."""

    def __init__(self, *answers: httpx.Response | Callable[[httpx.Request], httpx.Response]):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.listings = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/models":
            self.listings += 1
            return httpx.Response(200, json=MODELS_ANSWER)
        self.requests.append(request)
        answer = self.answers.pop(0)
        return answer(request) if callable(answer) else answer


def _echo(request: httpx.Request) -> httpx.Response:
    """One prediction per instance sent, numbered from the first instance's first value."""
    instances = json.loads(request.content)["instances"]
    return httpx.Response(200, json=_wine_answer(len(instances), first_mean=instances[0][0]))


def test_models_are_asked_for_once_per_client() -> None:
    script = Script(*[httpx.Response(200, json=WINE_ANSWER)] * 3)
    with Client("http://service", transport=httpx.MockTransport(script)) as client:
        client.predict_wine([FIRST_WINE])
        client.predict("wine-bnn", [FIRST_WINE])
        assert client.models() == ModelsResponse.model_validate(MODELS_ANSWER)
        assert script.listings == 1
        client.models(refresh=True)
    assert script.listings == 2
    assert [r.url.path for r in script.requests] == ["/predict/wine-bnn"] * 2


def test_chunks_follow_max_instances_unless_chunk_size_is_given() -> None:
    rows = [[float(i), *FIRST_WINE[1:]] for i in range(5)]
    script = Script(*[_echo] * 5)
    with Client("http://service", transport=httpx.MockTransport(script)) as client:
        by_limit = client.predict("wine-small", rows)  # max_instances 2
        by_argument = client.predict("wine-small", rows, chunk_size=3)
    sizes = [len(json.loads(r.content)["instances"]) for r in script.requests]
    assert sizes == [2, 2, 1, 3, 2]
    for joined in (by_limit, by_argument):
        assert [p.mean for p in joined.predictions] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_the_shortcuts_refuse_a_model_of_another_task() -> None:
    with (
        Client("http://service", transport=httpx.MockTransport(Script())) as client,
        pytest.raises(
            ValueError, match="wine-pictures is for image-classification, not tabular-regression"
        ),
    ):
        client.predict_wine([FIRST_WINE], model="pictures")


def test_a_single_row_must_be_wrapped_in_a_list() -> None:
    with (
        Client("http://service", transport=httpx.MockTransport(Script())) as client,
        pytest.raises(TypeError, match="wrap a single one in a list"),
    ):
        client.predict("wine-bnn", dict(zip(WINE_FEATURES, FIRST_WINE, strict=True)))


def test_503_is_retried_after_retry_after() -> None:
    script = Script(_busy("1"), httpx.Response(200, json=WINE_ANSWER))
    waits: list[float] = []
    transport = httpx.MockTransport(script)
    with Client("http://service", transport=transport, sleep=waits.append) as client:
        result = client.predict_wine([FIRST_WINE])
    assert result == RegressionResponse.model_validate(WINE_ANSWER)
    assert len(script.requests) == 2
    assert waits and waits[0] >= 1.0
    assert json.loads(script.requests[1].content) == {"instances": [list(FIRST_WINE)]}


def test_503_until_retries_run_out_is_service_unavailable() -> None:
    script = Script(*[_busy("1")] * 4)
    waits: list[float] = []
    transport = httpx.MockTransport(script)
    with (
        Client("http://service", retries=3, transport=transport, sleep=waits.append) as client,
        pytest.raises(ServiceUnavailableError) as raised,
    ):
        client.predict_wine([FIRST_WINE])
    assert waits == [1.0, 1.0, 1.0]
    assert len(script.requests) == 4
    assert raised.value.status_code == 503
    assert raised.value.detail == "model wine_bnn is at capacity"
    assert "http://service/predict/wine-bnn answered 503" in str(raised.value)


def test_a_busy_model_list_is_retried_too() -> None:
    listings = [_busy("2"), httpx.Response(200, json=MODELS_ANSWER)]
    waits: list[float] = []

    def service(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/models":
            return listings.pop(0)
        return httpx.Response(200, json=WINE_ANSWER)

    transport = httpx.MockTransport(service)
    with Client("http://service", transport=transport, sleep=waits.append) as client:
        client.predict_wine([FIRST_WINE])
    assert waits == [2.0]


def test_a_retry_after_beyond_the_wait_budget_gives_up_at_once() -> None:
    script = Script(_busy("60"))
    waits: list[float] = []
    transport = httpx.MockTransport(script)
    with (
        Client("http://service", max_retry_wait=30, transport=transport, sleep=waits.append) as c,
        pytest.raises(ServiceUnavailableError),
    ):
        c.predict_wine([FIRST_WINE])
    assert waits == []


def test_503_without_retry_after_backs_off() -> None:
    script = Script(_busy(None), _busy(None), httpx.Response(200, json=WINE_ANSWER))
    waits: list[float] = []
    transport = httpx.MockTransport(script)
    with Client("http://service", transport=transport, sleep=waits.append) as client:
        client.predict_wine([FIRST_WINE])
    assert waits == [0.5, 1.0]


def test_client_errors_are_never_retried() -> None:
    script = Script(httpx.Response(413, json={"detail": "request body is too large"}))
    waits: list[float] = []
    transport = httpx.MockTransport(script)
    with (
        Client("http://service", transport=transport, sleep=waits.append) as client,
        pytest.raises(ServiceError) as raised,
    ):
        client.predict_wine([FIRST_WINE])
    assert not isinstance(raised.value, ServiceUnavailableError)
    assert (raised.value.status_code, len(script.requests), waits) == (413, 1, [])


def test_async_client_retries_503_too() -> None:
    script = Script(_busy("2"), httpx.Response(200, json=WINE_ANSWER))
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def ask() -> RegressionResponse:
        transport = httpx.MockTransport(script)
        async with AsyncClient("http://service", transport=transport, sleep=sleep) as client:
            return await client.predict_wine([FIRST_WINE])

    assert asyncio.run(ask()) == RegressionResponse.model_validate(WINE_ANSWER)
    assert waits == [2.0]


def test_async_client_asks_for_the_models_once_and_chunks_alike() -> None:
    rows = [[float(i), *FIRST_WINE[1:]] for i in range(5)]
    script = Script(*[_echo] * 9)

    async def ask() -> list[RegressionResponse]:
        async with AsyncClient("http://service", transport=httpx.MockTransport(script)) as c:
            first_calls = [c.predict_wine([FIRST_WINE]) for _ in range(3)]
            return [*await asyncio.gather(*first_calls), await c.predict("wine-small", rows)]

    *singles, joined = asyncio.run(ask())
    assert script.listings == 1  # concurrent first calls share one GET /models
    assert [p.mean for p in joined.predictions] == [0.0, 1.0, 2.0, 3.0, 4.0]
    sizes = [len(json.loads(r.content)["instances"]) for r in script.requests]
    assert sizes == [1, 1, 1, 2, 2, 1]
    assert all(len(single.predictions) == 1 for single in singles)


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
