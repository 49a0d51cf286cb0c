"""The HTTP contract (``/work/shared/API.md``), in process.

Each app runs inside its real lifespan (checkpoints verified and loaded, warm-up in the
background) and is driven through ``httpx.ASGITransport``. All the apps of this module live
on one event loop (an ``asyncio.Runner``), so plain test functions can share a started app.
CIFAR is kept light here (at most 8 posterior samples); ``test_server.py`` runs it in full.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import io
import itertools
import json
import logging
import math
import re
import shutil
import statistics
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any, TypeVar

import httpx
import numpy as np
import pytest
import torch
from fastapi import FastAPI
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from torch import nn

import service.tasks.tabular_regression
from models.checkpoint import load_checkpoint
from models.device import resolve_device
from models.predictive import fixed_posterior, regression_samples
from service.app import create_app
from service.registry import ModelRegistry, ServedModel, StartupError
from service.settings import Settings
from service.tasks.tabular_regression import RegressionPredictor, TabularRegression

T = TypeVar("T")

# Only there so that a broken service fails a test instead of hanging it; never a speed check.
HANG_GUARD_S = 30.0
POLL_S = 0.01
POLL_TRIES = 2000

MAX_BODY_BYTES = 64 * 1024
# The contract's three networks; the repository's ensembles have tests of their own.
SINGLE_MODELS = ("wine-bnn", "wine-gaussian", "cifar-bcnn")
WINE_MAX_INSTANCES = 8
CIFAR_MAX_SAMPLES = 8
CIFAR_DEFAULT_SAMPLES = 4
CIFAR_MAX_IMAGES = 6

FEATURES = (
    "fixed_acidity",
    "volatile_acidity",
    "citric_acid",
    "residual_sugar",
    "chlorides",
    "free_sulfur_dioxide",
    "total_sulfur_dioxide",
    "density",
    "pH",
    "sulphates",
    "alcohol",
)
CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# White wines from the UCI table, in its column order.
WINE_ROWS: tuple[tuple[float, ...], ...] = (
    (7.0, 0.27, 0.36, 20.7, 0.045, 45.0, 170.0, 1.001, 3.0, 0.45, 8.8),
    (6.3, 0.3, 0.34, 1.6, 0.049, 14.0, 132.0, 0.994, 3.3, 0.49, 9.5),
    (8.1, 0.28, 0.4, 6.9, 0.05, 30.0, 97.0, 0.9951, 3.26, 0.44, 10.1),
    (7.2, 0.23, 0.32, 8.5, 0.058, 47.0, 186.0, 0.9956, 3.19, 0.4, 9.9),
    (6.2, 0.32, 0.16, 7.0, 0.045, 30.0, 136.0, 0.9949, 3.18, 0.47, 9.6),
    (8.1, 0.22, 0.43, 1.5, 0.044, 28.0, 129.0, 0.9938, 3.22, 0.45, 11.0),
)


def named(row: Sequence[float]) -> dict[str, float]:
    return dict(zip(FEATURES, row, strict=True))


def batch(*rows: Sequence[float]) -> dict[str, list[list[float]]]:
    return {"instances": [list(row) for row in rows]}


# ---------------------------------------------------------------------------------------------
# Driving an app in its lifespan


class Api:
    """A started app and an httpx client on it; each call runs on the module's event loop."""

    def __init__(self, runner: asyncio.Runner, app: FastAPI, client: httpx.AsyncClient) -> None:
        self.runner = runner
        self.app = app
        self.client = client

    @property
    def registry(self) -> ModelRegistry:
        return self.app.state.registry

    def served(self, key: str) -> ServedModel:
        return self.registry.models[key]

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(asyncio.wait_for(coroutine, HANG_GUARD_S))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.run(self.client.get(url, **kwargs))

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.run(self.client.post(url, **kwargs))

    def wine(self, body: object, **params: Any) -> httpx.Response:
        return self.post("/predict/wine", json=body, params=params)

    def wine_text(self, text: str, **params: Any) -> httpx.Response:
        """A body httpx would refuse to write itself, such as a bare ``NaN`` token."""
        headers = {"content-type": "application/json"}
        return self.post("/predict/wine", content=text, headers=headers, params=params)

    def wine_ok(self, body: object, **params: Any) -> dict[str, Any]:
        response = self.wine(body, **params)
        assert response.status_code == 200, response.text
        return response.json()

    def post_ok(self, url: str, body: object, **params: Any) -> dict[str, Any]:
        response = self.post(url, json=body, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def cifar_files(self, files: Sequence[tuple[str, bytes]], **params: Any) -> httpx.Response:
        parts = [("files", (name, data, "application/octet-stream")) for name, data in files]
        return self.post("/predict/cifar", files=parts, params=params)

    def metrics(self) -> Metrics:
        response = self.get("/metrics")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")  # Prometheus text
        return Metrics.parse(response.text)

    def wait_ready(self) -> None:
        self.run(eventually(self.is_ready, "/readyz to answer 200"))

    async def is_ready(self) -> bool:
        return (await self.client.get("/readyz")).status_code == 200


async def eventually(condition: Callable[[], Coroutine[Any, Any, bool]], what: str) -> None:
    """Poll ``condition`` a bounded number of times; fail saying what never happened."""
    for _ in range(POLL_TRIES):
        if await condition():
            return
        await asyncio.sleep(POLL_S)
    pytest.fail(f"gave up waiting for {what}")


@contextlib.contextmanager
def serving(
    runner: asyncio.Runner, settings: Settings, *, wait_ready: bool = True
) -> Iterator[Api]:
    """Run ``create_app(settings)`` in its lifespan for the duration of the block."""
    app = create_app(settings)
    stack = contextlib.AsyncExitStack()

    async def start() -> httpx.AsyncClient:
        await stack.enter_async_context(app.router.lifespan_context(app))
        transport = httpx.ASGITransport(app=app)
        return await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://test")
        )

    try:
        api = Api(runner, app, runner.run(start()))
        if wait_ready:
            api.wait_ready()
        yield api
    finally:
        runner.run(stack.aclose())


def make_settings(checkpoint_dir: Path, **overrides: Any) -> Settings:
    """Test settings: small limits, CIFAR at most 8 samples; per-model overrides are merged.

    A keyword named after a model (``wine_bnn={...}``) sets that model's settings."""
    fields: dict[str, Any] = {
        "model_repository": checkpoint_dir,
        "models": SINGLE_MODELS,
        "max_body_bytes": MAX_BODY_BYTES,
        "log_level": "warning",
    }
    per_model: dict[str, dict[str, Any]] = {
        "wine_bnn": {"max_instances": WINE_MAX_INSTANCES},
        "cifar_bcnn": {
            "max_samples": CIFAR_MAX_SAMPLES,
            "default_samples": CIFAR_DEFAULT_SAMPLES,
            "max_instances": CIFAR_MAX_IMAGES,
        },
    }
    for key, value in overrides.items():
        if key in Settings.model_fields:
            fields[key] = value
        else:
            per_model[key] = per_model.get(key, {}) | value
    return Settings(**fields, per_model=per_model)


@pytest.fixture(scope="module", autouse=True)
def service_logging() -> Iterator[None]:
    """``create_app`` configures the ``service`` logger; give other modules theirs back."""
    logger = logging.getLogger("service")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    yield
    logger.setLevel(saved[0])
    logger.propagate = saved[1]
    logger.handlers[:] = saved[2]


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as runner:
        yield runner


@pytest.fixture(scope="module")
def api(runner: asyncio.Runner, checkpoint_dir: Path) -> Iterator[Api]:
    """All three models, ready; shared by the tests that don't change its settings."""
    with serving(runner, make_settings(checkpoint_dir)) as api:
        yield api


@pytest.fixture
def start_app(runner: asyncio.Runner) -> Iterator[Callable[..., Api]]:
    """Start an app with settings of the test's own; it stops when the test ends."""
    with contextlib.ExitStack() as stack:

        def start(settings: Settings, *, wait_ready: bool = True) -> Api:
            return stack.enter_context(serving(runner, settings, wait_ready=wait_ready))

        yield start


# ---------------------------------------------------------------------------------------------
# Holding the model back


class Gate:
    """Stands in for a function the service calls: each call waits until the gate opens.

    The arguments of every call are recorded, so a test can tell what reached the model.
    """

    def __init__(self, wrapped: Callable[..., Any]) -> None:
        self._wrapped = wrapped
        self._open = threading.Event()
        self._entered = threading.Event()
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(args)
        self._entered.set()
        if not self._open.wait(HANG_GUARD_S):
            raise TimeoutError("the test never opened the gate")
        return self._wrapped(*args, **kwargs)

    def open(self) -> None:
        self._open.set()

    async def entered(self) -> None:
        """Wait until a call is held at the gate."""
        entered = await asyncio.to_thread(self._entered.wait, HANG_GUARD_S)
        assert entered, "nothing reached the gate"

    @property
    def jobs_per_pass(self) -> list[int]:
        """For a batcher's predict: how many jobs (requests) each model pass held."""
        return [len(jobs) for (jobs,) in self.calls]


@pytest.fixture
def close_gate(
    monkeypatch: pytest.MonkeyPatch, start_app: Callable[..., Api]
) -> Iterator[Callable[[object, str], Gate]]:
    """``close_gate(obj, "name")`` puts a closed :class:`Gate` in front of ``obj.name``.

    Every gate opens when the test ends. This fixture asks for ``start_app`` so that it ends
    first: a stopping app waits for the model pass held at the gate.
    """
    gates: list[Gate] = []

    def close(target: object, name: str) -> Gate:
        gate = Gate(getattr(target, name))
        monkeypatch.setattr(target, name, gate)
        gates.append(gate)
        return gate

    yield close
    for gate in gates:
        gate.open()


def hold_model(close_gate: Callable[[object, str], Gate], served: ServedModel) -> Gate:
    """Make the model's passes wait: requests then stay in its batcher's queue."""
    assert served.batcher is not None
    return close_gate(served.batcher, "_predict")


async def queue_depth_reaches(served: ServedModel, depth: int) -> None:
    async def reached() -> bool:
        assert served.batcher is not None
        return served.batcher.queue_depth == depth

    await eventually(reached, f"{depth} requests queued for {served.name}")


# ---------------------------------------------------------------------------------------------
# Metrics, files, numbers


@dataclass(frozen=True)
class Metrics:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    @classmethod
    def parse(cls, text: str) -> Metrics:
        return cls(
            {
                (sample.name, frozenset(sample.labels.items())): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
            }
        )

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; 0 for a labelled series not seen yet."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def has(self, name: str, **labels: str) -> bool:
        return (name, frozenset(labels.items())) in self.samples

    def increase_since(self, before: Metrics, name: str, **labels: str) -> float:
        return self.value(name, **labels) - before.value(name, **labels)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_of(checkpoint_dir: Path, name: str) -> dict[str, Any]:
    return json.loads((checkpoint_dir / f"{name}.json").read_text())


def copy_checkpoints(source: Path, target: Path, *names: str) -> Path:
    for name in names:
        for suffix in (".safetensors", ".json"):
            shutil.copyfile(source / f"{name}{suffix}", target / f"{name}{suffix}")
    return target


def image_file(image_format: str, width: int = 32, height: int = 32, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format)
    return buffer.getvalue()


def leaves(answer: dict[str, Any]) -> list[tuple[str, Any]]:
    """Every value of a predict answer's predictions, by its path, in order."""

    def walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
        if isinstance(value, dict):
            for key, item in value.items():
                yield from walk(item, f"{path}.{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                yield from walk(item, f"{path}[{index}]")
        else:
            yield path, value

    return list(walk(answer["predictions"], "predictions"))


def assert_same_numbers(
    got: dict[str, Any], expected: dict[str, Any], *, abs_tolerance: float = 0.0
) -> None:
    """Equal to float rounding (relative 1e-5), as the contract's reproducibility rule says;
    ``abs_tolerance`` adds an absolute allowance for numbers of order one."""
    got_leaves, expected_leaves = leaves(got), leaves(expected)
    assert [path for path, _ in got_leaves] == [path for path, _ in expected_leaves]
    for (path, value), (_, wanted) in zip(got_leaves, expected_leaves, strict=True):
        if isinstance(wanted, float):
            assert value == pytest.approx(wanted, rel=1e-5, abs=abs_tolerance), path
        else:
            assert value == wanted, path


# A CIFAR pass runs in float32 through convolutions whose blocking depends on the batch, so
# an image's logits move by about 1e-6 of their size with the company it keeps; relative 1e-5
# is out of reach for small probabilities and for the mutual information (a difference of
# two close entropies). Probabilities and entropies (nats, order one) are compared to 1e-4,
# as test_server.py compares served and offline probabilities.
assert_same_classification = functools.partial(assert_same_numbers, abs_tolerance=1e-4)


def assert_coherent_classification(prediction: dict[str, Any]) -> None:
    """What API.md says of one CIFAR prediction, checked from the prediction's own numbers."""
    assert list(prediction["probabilities"]) == list(CLASSES)
    probabilities = [prediction["probabilities"][name] for name in CLASSES]
    assert math.fsum(probabilities) == pytest.approx(1.0, abs=1e-5)
    best = max(range(len(CLASSES)), key=probabilities.__getitem__)
    assert prediction["class_index"] == best
    assert prediction["label"] == CLASSES[best]
    assert prediction["confidence"] == probabilities[best]
    assert list(prediction["intervals"]) == list(CLASSES)
    for name, interval in prediction["intervals"].items():
        assert 0.0 <= interval["lower"] <= interval["upper"] <= 1.0, name
    uncertainty = prediction["uncertainty"]
    entropy_of_mean = -math.fsum(p * math.log(p) for p in probabilities if p > 0)
    assert uncertainty["total"] == pytest.approx(entropy_of_mean, abs=1e-4)
    total_split = uncertainty["aleatoric"] + uncertainty["epistemic"]
    assert uncertainty["total"] == pytest.approx(total_split, abs=1e-5)
    assert uncertainty["epistemic"] >= 0.0


def loc_of(response: httpx.Response) -> list[str | int]:
    """The location of the (first) error of a 422."""
    assert response.status_code == 422, response.text
    return response.json()["detail"][0]["loc"]


# ---------------------------------------------------------------------------------------------
# Service routes


def test_healthz_answers_ok(api: Api) -> None:
    response = api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_and_predict_are_503_with_retry_after_before_the_lifespan_has_run(
    checkpoint_dir: Path,
) -> None:
    app = create_app(make_settings(checkpoint_dir))

    async def ask() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            readyz = await client.get("/readyz")
            return [readyz, await client.post("/predict/wine", json=batch(WINE_ROWS[0]))]

    for response in asyncio.run(ask()):
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) >= 1


def test_readyz_turns_200_only_once_warm_up_has_finished(
    checkpoint_dir: Path, start_app: Callable[..., Api], close_gate: Callable[[object, str], Gate]
) -> None:
    warm_up = close_gate(service.tasks.tabular_regression, "RegressionPredictor")
    api = start_app(make_settings(checkpoint_dir, models=("wine-gaussian",)), wait_ready=False)
    api.run(warm_up.entered())

    waiting = api.get("/readyz")
    assert waiting.status_code == 503
    assert int(waiting.headers["retry-after"]) >= 1
    assert api.wine(batch(WINE_ROWS[0]), model="gaussian").status_code == 503

    warm_up.open()
    api.wait_ready()
    assert api.get("/readyz").json() == {"status": "ok"}


def test_models_lists_names_versions_from_the_file_hash_and_manifest_metrics(
    api: Api, checkpoint_dir: Path
) -> None:
    response = api.get("/models")
    assert response.status_code == 200
    listed = {entry["name"]: entry for entry in response.json()["models"]}
    assert set(listed) == {"wine-bnn", "wine-gaussian", "cifar-bcnn"}
    for name, entry in listed.items():
        assert entry["version"] == sha256_of(checkpoint_dir / f"{name}.safetensors")[:12]
        assert entry["test_metrics"] == manifest_of(checkpoint_dir, name)["test_metrics"]
    wine, cifar = listed["wine-bnn"], listed["cifar-bcnn"]
    assert (wine["task"], wine["kind"], wine["members"]) == ("tabular-regression", "tabular-bnn", 1)
    assert wine["input"]["features"] == list(FEATURES)
    assert wine["input"]["target"] == "quality"
    assert list(wine["input"]["example"]) == list(FEATURES)
    assert (wine["default_samples"], wine["max_samples"]) == (100, 1000)
    assert wine["max_instances"] == WINE_MAX_INSTANCES
    assert "classes" not in wine
    gaussian = listed["wine-gaussian"]
    assert (gaussian["default_samples"], gaussian["max_samples"]) == (1, 1)  # one network
    assert gaussian["test_metrics"]["mean_epistemic_std"] is None
    assert (cifar["task"], cifar["kind"]) == ("image-classification", "bayesian-cnn")
    assert cifar["classes"] == list(CLASSES)
    assert cifar["input"]["size"] == [32, 32]
    assert (listed["cifar-bcnn"]["default_samples"], listed["cifar-bcnn"]["max_samples"]) == (
        CIFAR_DEFAULT_SAMPLES,
        CIFAR_MAX_SAMPLES,
    )


def test_metrics_count_requests_by_route_and_status(api: Api) -> None:
    before = api.metrics()
    api.wine_ok(batch(WINE_ROWS[0]))
    api.wine_ok(WINE_ROWS[1])
    assert api.wine(batch(WINE_ROWS[0][:5])).status_code == 422
    assert api.get("/healthz").status_code == 200
    after = api.metrics()

    def answered(method: str, route: str, status: str) -> float:
        labels = {"method": method, "route": route, "status": status}
        return after.increase_since(before, "bayes_http_requests_total", **labels)

    assert answered("POST", "/predict/wine", "200") == 2
    assert answered("POST", "/predict/wine", "422") == 1
    assert answered("GET", "/healthz", "200") == 1
    latencies = "bayes_http_request_duration_seconds_count"
    assert after.increase_since(before, latencies, route="/predict/wine") == 3


def test_metrics_report_batch_sizes_queue_depth_and_inference_time(api: Api) -> None:
    before = api.metrics()
    for rows in (1, 2, 3):  # one after the other: one model pass each
        api.wine_ok(batch(*WINE_ROWS[:rows]))
    after = api.metrics()

    def added(name: str) -> float:
        return after.increase_since(before, name, model="wine-bnn")

    assert added("bayes_batch_requests_count") == 3
    assert added("bayes_batch_requests_sum") == 3
    assert added("bayes_batch_rows_count") == 3
    assert added("bayes_batch_rows_sum") == 1 + 2 + 3
    assert added("bayes_inference_seconds_count") == 3
    assert added("bayes_inference_seconds_sum") > 0
    assert after.has("bayes_queue_depth", model="wine-bnn")
    assert after.value("bayes_queue_depth", model="wine-bnn") == 0


def test_openapi_describes_both_predict_routes(api: Api) -> None:
    response = api.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for route in ("/predict/wine", "/predict/cifar", "/predict/{name}"):
        parameters = {parameter["name"] for parameter in paths[route]["post"]["parameters"]}
        assert {"samples", "level"} <= parameters
    # Every schema reference resolves within the document (a model's own $defs do not).
    assert "#/$defs/" not in json.dumps(response.json())
    any_model = paths["/predict/{name}"]["post"]["requestBody"]["content"]
    assert set(any_model) == {"application/json", "multipart/form-data"}
    assert "model" in {p["name"] for p in paths["/predict/wine"]["post"]["parameters"]}
    for route in ("/healthz", "/readyz", "/models", "/metrics"):
        assert "get" in paths[route]


def test_the_documents_wine_examples_are_answered_as_sent(api: Api) -> None:
    """What /docs sends when asked to try the wine routes: a prediction, not a 422."""
    paths = api.get("/openapi.json").json()["paths"]
    wine = paths["/predict/wine"]["post"]["requestBody"]["content"]["application/json"]
    response = api.wine(wine["example"])
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 1
    infer = paths["/v2/models/{name}/infer"]["post"]["requestBody"]["content"]["application/json"]
    response = api.post("/v2/models/wine-bnn/infer", json=infer["schema"]["examples"][0])
    assert response.status_code == 200, response.text
    assert [output["name"] for output in response.json()["outputs"]] == ["mean", "lower", "upper"]


def test_docs_serve_the_interactive_openapi_page(api: Api) -> None:
    response = api.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in response.text


# ---------------------------------------------------------------------------------------------
# Wine


def test_wine_accepts_named_objects_arrays_and_a_bare_instance(api: Api) -> None:
    row = WINE_ROWS[0]
    reference = api.wine_ok({"instances": [named(row)]})
    for body in ({"instances": [list(row)]}, named(row), list(row)):
        assert_same_numbers(api.wine_ok(body), reference)


def test_wine_answers_each_of_many_instances_in_order(api: Api) -> None:
    together = api.wine_ok({"instances": [named(WINE_ROWS[0]), *map(list, WINE_ROWS[1:])]})
    assert len(together["predictions"]) == len(WINE_ROWS)
    for index, row in enumerate(WINE_ROWS):
        alone = api.wine_ok(batch(row))
        assert_same_numbers({"predictions": [together["predictions"][index]]}, alone)


def test_wine_answer_names_model_version_and_echoes_samples_and_level(
    api: Api, checkpoint_dir: Path
) -> None:
    version = sha256_of(checkpoint_dir / "wine-bnn.safetensors")[:12]
    defaults = api.wine_ok(batch(WINE_ROWS[0]))
    assert defaults["model"] == {"name": "wine-bnn", "version": version}
    assert (defaults["samples"], defaults["level"]) == (100, 0.95)
    chosen = api.wine_ok(batch(WINE_ROWS[0]), model="bnn", samples=37, level=0.8)
    assert (chosen["samples"], chosen["level"]) == (37, 0.8)


def test_gaussian_model_has_no_epistemic_std_and_ignores_samples(
    api: Api, checkpoint_dir: Path
) -> None:
    answer = api.wine_ok(batch(*WINE_ROWS[:2]), model="gaussian")
    version = sha256_of(checkpoint_dir / "wine-gaussian.safetensors")[:12]
    assert answer["model"] == {"name": "wine-gaussian", "version": version}
    for prediction in answer["predictions"]:
        assert prediction["epistemic_std"] is None
        assert prediction["std"] == pytest.approx(prediction["aleatoric_std"], rel=1e-6)
    # One deterministic network: asking for more samples cannot change its answer.
    assert_same_numbers(api.wine_ok(batch(*WINE_ROWS[:2]), model="gaussian", samples=50), answer)


def test_wine_std_splits_into_epistemic_and_aleatoric(api: Api) -> None:
    for prediction in api.wine_ok(batch(*WINE_ROWS))["predictions"]:
        split = prediction["epistemic_std"] ** 2 + prediction["aleatoric_std"] ** 2
        assert prediction["std"] ** 2 == pytest.approx(split, rel=1e-5)
        assert prediction["epistemic_std"] > 0


@pytest.fixture(scope="module")
def wine_bnn(checkpoint_dir: Path) -> nn.Module:
    """The BNN as the checkpoint file describes it, loaded apart from the service."""
    return load_checkpoint(checkpoint_dir / "wine-bnn.safetensors")


def posterior_draws(
    model: nn.Module, rows: Sequence[Sequence[float]], samples: int
) -> list[tuple[list[float], list[float]]]:
    """Per row: (mu_s, sigma_s) over the model's first ``samples`` fixed posterior draws."""
    x = torch.tensor(rows, dtype=torch.float32)
    mu, sigma = regression_samples(model, x, fixed_posterior(model, samples))
    return list(zip(mu.double().T.tolist(), sigma.double().T.tolist(), strict=True))


def mixture_cdf(x: float, mus: Sequence[float], sigmas: Sequence[float]) -> float:
    """P(Y <= x) for Y ~ (1/S) sum_s N(mu_s, sigma_s^2)."""
    return math.fsum(NormalDist(m, s).cdf(x) for m, s in zip(mus, sigmas, strict=True)) / len(mus)


def test_wine_moments_match_the_posterior_draws(api: Api, wine_bnn: nn.Module) -> None:
    samples = 40
    answer = api.wine_ok(batch(*WINE_ROWS), samples=samples)
    draws = posterior_draws(wine_bnn, WINE_ROWS, samples)
    for prediction, (mus, sigmas) in zip(answer["predictions"], draws, strict=True):
        assert prediction["mean"] == pytest.approx(statistics.fmean(mus), rel=1e-5)
        assert prediction["epistemic_std"] == pytest.approx(statistics.pstdev(mus), rel=1e-4)
        aleatoric = math.sqrt(statistics.fmean(s * s for s in sigmas))
        assert prediction["aleatoric_std"] == pytest.approx(aleatoric, rel=1e-5)


@pytest.mark.parametrize(("samples", "level"), [(100, 0.95), (7, 0.5), (250, 0.99), (1, 0.9)])
def test_wine_interval_holds_the_exact_quantiles_of_the_predictive_mixture(
    api: Api, wine_bnn: nn.Module, samples: int, level: float
) -> None:
    answer = api.wine_ok(batch(*WINE_ROWS), samples=samples, level=level)
    draws = posterior_draws(wine_bnn, WINE_ROWS, samples)
    for prediction, (mus, sigmas) in zip(answer["predictions"], draws, strict=True):
        interval = prediction["interval"]
        assert mixture_cdf(interval["lower"], mus, sigmas) == pytest.approx(
            (1 - level) / 2, abs=1e-4
        )
        assert mixture_cdf(interval["upper"], mus, sigmas) == pytest.approx(
            (1 + level) / 2, abs=1e-4
        )


def test_wine_intervals_nest_as_the_level_grows(api: Api) -> None:
    levels = (0.5, 0.8, 0.9, 0.95, 0.99)
    answers = [api.wine_ok(batch(*WINE_ROWS), level=level) for level in levels]
    for narrower, wider in itertools.pairwise(answers):
        for inner, outer in zip(narrower["predictions"], wider["predictions"], strict=True):
            assert outer["interval"]["lower"] < inner["interval"]["lower"]
            assert inner["interval"]["upper"] < outer["interval"]["upper"]
            assert inner["mean"] == pytest.approx(outer["mean"], rel=1e-5)


Send = Callable[[], Coroutine[Any, Any, httpx.Response]]


def send_in_one_pass(
    api: Api, close_gate: Callable[[object, str], Gate], name: str, sends: Sequence[Send]
) -> list[httpx.Response]:
    """Send the burst while the model is busy, so that it queues and then shares one pass."""
    served = api.served(name)
    gate = hold_model(close_gate, served)

    async def burst() -> list[httpx.Response]:
        plug = asyncio.create_task(sends[0]())
        await gate.entered()  # the model is busy: the burst has to queue behind it
        sent = [asyncio.create_task(send()) for send in sends]
        await queue_depth_reaches(served, len(sends))
        gate.open()
        await plug
        return await asyncio.gather(*sent)

    together = api.run(burst())
    assert len(sends) in gate.jobs_per_pass  # the whole burst shared one model pass
    return together


def assert_same_alone_and_in_one_batch(
    api: Api,
    close_gate: Callable[[object, str], Gate],
    key: str,
    sends: Sequence[Send],
    assert_same: Callable[[dict[str, Any], dict[str, Any]], None] = assert_same_numbers,
) -> None:
    """Each request answers the same alone as when the whole burst shares one model pass."""
    alone = [api.run(send()) for send in sends]
    together = send_in_one_pass(api, close_gate, key, sends)
    for one, other in zip(together, alone, strict=True):
        assert one.status_code == other.status_code == 200, one.text
        assert_same(one.json(), other.json())


def test_wine_answers_are_the_same_alone_and_inside_a_concurrent_batch(
    api: Api, close_gate: Callable[[object, str], Gate]
) -> None:
    requests = [  # (rows, samples, level)
        (WINE_ROWS[:1], 100, 0.95),
        (WINE_ROWS[1:4], 10, 0.5),
        (WINE_ROWS[2:3], 1000, 0.99),
        (WINE_ROWS[3:6], 1, 0.8),
        (WINE_ROWS, 250, 0.9),
        (WINE_ROWS[:1], 100, 0.95),
    ]
    sends = [
        functools.partial(
            api.client.post,
            "/predict/wine",
            json=batch(*rows),
            params={"samples": samples, "level": level},
        )
        for rows, samples, level in requests
    ]
    assert_same_alone_and_in_one_batch(api, close_gate, "wine-bnn", sends)


# ---------------------------------------------------------------------------------------------
# Wine input errors: 422 naming the field and index


def test_a_request_the_maths_fails_on_fails_alone_and_its_batch_is_answered(
    api: Api, close_gate: Callable[[object, str], Gate], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poisoned request (here: one the network's forward pass refuses) gets its own 422;
    the others of its batch are answered with the numbers they get alone."""
    poison = 12345.0
    forward = RegressionPredictor.forward

    def refusing(self: RegressionPredictor, inputs: torch.Tensor, posterior: Any) -> Any:
        if bool((inputs == poison).any()):
            raise ValueError("cannot take the square root of a negative variance")
        return forward(self, inputs, posterior)

    monkeypatch.setattr(RegressionPredictor, "forward", refusing)
    rows = [list(WINE_ROWS[i % len(WINE_ROWS)]) for i in range(7)]
    rows[3][10] = poison
    sends = [functools.partial(api.client.post, "/predict/wine", json=batch(r)) for r in rows]
    alone = [api.run(send()) for send in sends]
    together = send_in_one_pass(api, close_gate, "wine-bnn", sends)  # poison and all
    for index, (one, other) in enumerate(zip(together, alone, strict=True)):
        if index == 3:
            assert one.status_code == other.status_code == 422
            (entry,) = one.json()["detail"]
            assert "cannot compute an answer for this input" in entry["msg"]
            assert "negative variance" in entry["msg"]
        else:
            assert one.status_code == 200, one.text
            assert_same_numbers(one.json(), other.json())


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        pytest.param(
            {
                "instances": [
                    named(WINE_ROWS[0]),
                    {k: v for k, v in named(WINE_ROWS[1]).items() if k != "pH"},
                ]
            },
            ["body", "instances", 1, "pH"],
            id="missing-feature",
        ),
        pytest.param(
            {"instances": [{**named(WINE_ROWS[0]), "colour": 1.0}]},
            ["body", "instances", 0, "colour"],
            id="extra-feature",
        ),
        pytest.param(
            {k: v for k, v in named(WINE_ROWS[0]).items() if k != "alcohol"},
            ["body", "alcohol"],
            id="missing-feature-bare-instance",
        ),
        pytest.param(
            batch(WINE_ROWS[0], WINE_ROWS[1][:10]), ["body", "instances", 1], id="10-values"
        ),
        pytest.param(
            batch(WINE_ROWS[0], (*WINE_ROWS[1], 1.0)), ["body", "instances", 1], id="12-values"
        ),
        pytest.param(
            batch(WINE_ROWS[0], (*WINE_ROWS[1][:8], "NaN", *WINE_ROWS[1][9:])),
            ["body", "instances", 1, 8],
            id="NaN-string",
        ),
        pytest.param(
            {"instances": [{**named(WINE_ROWS[0]), "pH": "Infinity"}]},
            ["body", "instances", 0, "pH"],
            id="Infinity-string",
        ),
        pytest.param(
            {"instances": [{**named(WINE_ROWS[0]), "density": "heavy"}]},
            ["body", "instances", 0, "density"],
            id="non-numeric-string",
        ),
        pytest.param(
            {"instances": [{**named(WINE_ROWS[0]), "sulphates": True}]},
            ["body", "instances", 0, "sulphates"],
            id="boolean",
        ),
        pytest.param(
            {"instances": [{**named(WINE_ROWS[0]), "chlorides": None}]},
            ["body", "instances", 0, "chlorides"],
            id="null",
        ),
        pytest.param({"instances": []}, ["body", "instances"], id="no-instances"),
    ],
)
def test_wine_rejects_an_invalid_instance_naming_field_and_index(
    api: Api, body: object, loc: list[str | int]
) -> None:
    assert loc_of(api.wine(body)) == loc


TOKEN = "<token>"  # where a test writes a bare JSON token into the body


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (batch(WINE_ROWS[1], (*WINE_ROWS[0][:3], TOKEN, *WINE_ROWS[0][4:])), [1, 3]),
        ({"instances": [{**named(WINE_ROWS[0]), "pH": TOKEN}]}, [0, "pH"]),
    ],
    ids=["array", "object"],
)
def test_wine_rejects_non_finite_number_tokens(
    api: Api, token: str, body: object, loc: list[str | int]
) -> None:
    response = api.wine_text(json.dumps(body).replace(f'"{TOKEN}"', token))
    assert loc_of(response) == ["body", "instances", *loc]
    assert token.lstrip("-") in response.json()["detail"][0]["msg"]


@pytest.mark.parametrize("model", ["bnn", "gaussian"])
def test_wine_feature_the_network_overflows_on_is_no_server_error(api: Api, model: str) -> None:
    async def post() -> httpx.Response:
        # The client sees what a real server sends: a 500, not the exception.
        transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            body = {**named(WINE_ROWS[0]), "fixed_acidity": 1e30}
            return await client.post("/predict/wine", json=body, params={"model": model})

    response = api.run(post())
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body"]
    assert "outside the range of the training data" in response.json()["detail"][0]["msg"]


def test_wine_rejects_more_instances_than_the_limit(api: Api) -> None:
    response = api.wine(batch(*[WINE_ROWS[0]] * (WINE_MAX_INSTANCES + 1)))
    assert loc_of(response) == ["body", "instances"]
    message = response.json()["detail"][0]["msg"]
    assert str(WINE_MAX_INSTANCES + 1) in message
    assert str(WINE_MAX_INSTANCES) in message


@pytest.mark.parametrize(
    ("route", "params", "loc"),
    [
        ("/predict/wine", {"samples": 0}, ["query", "samples"]),
        ("/predict/wine", {"samples": 1001}, ["query", "samples"]),
        ("/predict/wine", {"level": 0}, ["query", "level"]),
        ("/predict/wine", {"level": 1}, ["query", "level"]),
        ("/predict/wine", {"samples": "many"}, ["query", "samples"]),
        ("/predict/wine", {"level": 0.9999999999999999}, ["query", "level"]),
        ("/predict/wine", {"level": "nan"}, ["query", "level"]),
        ("/predict/cifar", {"samples": 0}, ["query", "samples"]),
        ("/predict/cifar", {"samples": CIFAR_MAX_SAMPLES + 1}, ["query", "samples"]),
        ("/predict/cifar", {"level": 0}, ["query", "level"]),
        ("/predict/cifar", {"level": 1}, ["query", "level"]),
    ],
)
def test_predict_rejects_a_query_parameter_out_of_range(
    api: Api, route: str, params: dict[str, Any], loc: list[str]
) -> None:
    if route == "/predict/wine":
        response = api.post(route, json=batch(WINE_ROWS[0]), params=params)
    else:
        response = api.cifar_files([("cat.png", image_file("PNG"))], **params)
    assert loc_of(response) == loc


@pytest.mark.parametrize(
    ("route", "params", "name"),
    [
        ("/predict/wine", {"model": "forest"}, "wine-forest"),
        ("/predict/cifar", {"model": "resnet"}, "cifar-resnet"),
        ("/predict/resnet", {}, "resnet"),
    ],
)
def test_a_model_the_repository_lacks_is_404_listing_those_it_has(
    api: Api, route: str, params: dict[str, Any], name: str
) -> None:
    response = api.post(route, json=batch(WINE_ROWS[0]), params=params)
    assert response.status_code == 404
    assert response.json() == {
        "detail": f"no model named {name!r} is served; "
        "the models are: cifar-bcnn, wine-bnn, wine-gaussian"
    }


def test_every_model_answers_at_its_own_name_as_at_its_family_route(api: Api) -> None:
    wine = api.wine_ok(batch(*WINE_ROWS[:2]), samples=9)
    assert_same_numbers(api.post_ok("/predict/wine-bnn", batch(*WINE_ROWS[:2]), samples=9), wine)
    gaussian = api.wine_ok(batch(WINE_ROWS[0]), model="gaussian")
    assert_same_numbers(api.post_ok("/predict/wine-gaussian", batch(WINE_ROWS[0])), gaussian)
    files = [("cat.png", image_file("PNG"))]
    by_family = api.cifar_files(files, model="bcnn")
    by_name = api.post("/predict/cifar-bcnn", files=[("files", (*files[0], "image/png"))])
    assert by_family.status_code == by_name.status_code == 200
    assert_same_classification(by_name.json(), by_family.json())


def test_a_tabular_body_sent_to_an_image_model_is_refused_by_that_models_rules(api: Api) -> None:
    response = api.post("/predict/cifar-bcnn", json=batch(WINE_ROWS[0]))
    assert loc_of(response) == ["body", "instances", 0]  # an image is {"b64": ...}
    response = api.post("/predict/wine-bnn", files=[("files", ("a.png", b"x", "image/png"))])
    assert response.status_code == 415


# ---------------------------------------------------------------------------------------------
# 413, 415


async def in_chunks(data: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_bodies_held_at_once_are_bounded_and_the_rest_refused_on_arrival(
    checkpoint_dir: Path, start_app: Callable[..., Api]
) -> None:
    body = json.dumps(batch(*WINE_ROWS[:4])).encode()
    # Room for one body (counted at the per-body limit while it arrives chunked), not two.
    api = start_app(make_settings(checkpoint_dir, max_inflight_body_bytes=MAX_BODY_BYTES + 10))
    go_on = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield body[:10]
        await go_on.wait()  # the first request holds its budget while its body trickles in
        yield body[10:]

    async def first_body_held() -> bool:
        return api.registry.bodies.held > 0

    async def both() -> tuple[httpx.Response, httpx.Response]:
        headers = {"content-type": "application/json"}
        first = asyncio.create_task(
            api.client.post("/predict/wine", content=slow_body(), headers=headers)
        )
        await eventually(first_body_held, "the first body to be held")
        second = await api.client.post("/predict/wine", content=body, headers=headers)
        go_on.set()
        return await first, second

    first, second = api.run(both())
    assert first.status_code == 200, first.text
    assert second.status_code == 503 and int(second.headers["retry-after"]) >= 1
    assert "MAX_INFLIGHT_BODY_BYTES" in second.json()["detail"]
    assert api.registry.bodies.held == 0  # given back once decoded, or refused
    api.wine_ok(batch(WINE_ROWS[0]))  # and the service takes bodies again


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_body_over_the_limit_is_413(api: Api, framing: str) -> None:
    body = json.dumps(batch(*[WINE_ROWS[0]] * 1000)).encode()
    assert len(body) > MAX_BODY_BYTES
    content = body if framing == "content-length" else in_chunks(body)
    response = api.post(
        "/predict/wine", content=content, headers={"content-type": "application/json"}
    )
    assert ("content-length" in response.request.headers) == (framing == "content-length")
    assert response.status_code == 413
    assert str(MAX_BODY_BYTES) in response.json()["detail"]


def test_a_413_before_routing_is_counted_under_the_route_it_was_for(api: Api) -> None:
    before = api.metrics()
    body = b" " * (MAX_BODY_BYTES + 1)  # refused from its Content-Length, never routed
    for url in ("/predict/wine-bnn", "/predict/wine"):
        response = api.post(url, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 413
    after = api.metrics()
    for route in ("/predict/{name}", "/predict/wine"):
        labels = {"method": "POST", "route": route, "status": "413"}
        assert after.increase_since(before, "bayes_http_requests_total", **labels) == 1, route
    labels = {"method": "POST", "route": "unmatched", "status": "413"}
    assert after.increase_since(before, "bayes_http_requests_total", **labels) == 0


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [("order-17:retry/2", True), ("\xff\xfe<script>", False), ("a" * 65, False), ("", False)],
)
def test_a_clients_request_id_is_echoed_only_if_tame(api: Api, sent: str, echoed: bool) -> None:
    headers = {"x-request-id": sent.encode("latin-1")} if sent else {}
    response = api.get("/healthz", headers=headers)
    given = response.headers["x-request-id"]
    assert (given == sent) == echoed
    assert given.isprintable() and 0 < len(given) <= 64


def test_multipart_body_over_the_limit_is_413(api: Api) -> None:
    large = image_file("BMP", width=200, height=200)
    assert len(large) > MAX_BODY_BYTES
    response = api.cifar_files([("large.bmp", large)])
    assert response.status_code == 413
    assert str(MAX_BODY_BYTES) in response.json()["detail"]


@pytest.mark.parametrize("route", ["/predict/wine", "/predict/cifar"])
def test_wrong_content_type_is_415(api: Api, route: str) -> None:
    body = json.dumps(batch(WINE_ROWS[0]))
    response = api.post(route, content=body, headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert "text/plain" in response.json()["detail"]


def test_cifar_bytes_that_are_no_image_are_415_naming_the_file(api: Api) -> None:
    files = [("cat.png", image_file("PNG")), ("notes.txt", b"not an image at all")]
    response = api.cifar_files(files)
    assert response.status_code == 415
    assert "files[1] 'notes.txt'" in response.json()["detail"]


def test_cifar_b64_that_is_no_image_is_415_naming_the_instance(api: Api) -> None:
    instances = [{"b64": base64.b64encode(data).decode()} for data in (image_file("PNG"), b"??")]
    response = api.post("/predict/cifar", json={"instances": instances})
    assert response.status_code == 415
    assert "instances[1]" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"instances": [{"b64": "###"}]}, ["body", "instances", 0, "b64"]),
        ({"instances": [{"b64": "AAAA", "name": "x"}]}, ["body", "instances", 0, "name"]),
        ({"instances": [{"b64": "AAAA"}] * (CIFAR_MAX_IMAGES + 1)}, ["body", "instances"]),
    ],
    ids=["bad-base64", "extra-field", "too-many-images"],
)
def test_cifar_rejects_an_invalid_json_body_naming_field_and_index(
    api: Api, body: object, loc: list[str | int]
) -> None:
    assert loc_of(api.post("/predict/cifar", json=body)) == loc


def test_cifar_rejects_more_files_than_the_limit(api: Api) -> None:
    files = [(f"{i}.png", image_file("PNG", seed=i)) for i in range(CIFAR_MAX_IMAGES + 1)]
    assert loc_of(api.cifar_files(files)) == ["body", "files"]


# ---------------------------------------------------------------------------------------------
# 503, 504 and start-up


def test_optional_model_that_fails_to_load_answers_503_while_the_others_serve(
    checkpoint_dir: Path, tmp_path: Path, start_app: Callable[..., Api]
) -> None:
    folder = copy_checkpoints(checkpoint_dir, tmp_path, "wine-bnn", "wine-gaussian")
    (folder / "cifar-bcnn.safetensors").write_bytes(b"torn")  # and no manifest beside it
    api = start_app(make_settings(folder, cifar_bcnn={"optional": True}))

    response = api.cifar_files([("cat.png", image_file("PNG"))])
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    assert str(folder / "cifar-bcnn.json") in response.json()["detail"]
    api.wine_ok(batch(WINE_ROWS[0]))
    api.wine_ok(batch(WINE_ROWS[0]), model="gaussian")
    listed = [entry["name"] for entry in api.get("/models").json()["models"]]
    assert listed == ["wine-bnn", "wine-gaussian"]
    assert api.get("/readyz").status_code == 200  # an optional model does not hold it back


def test_full_queue_answers_503_with_retry_after_and_runs_nothing_of_it(
    checkpoint_dir: Path, start_app: Callable[..., Api], close_gate: Callable[[object, str], Gate]
) -> None:
    limits = {"max_queue_size": 1, "max_batch_size": 1}
    api = start_app(make_settings(checkpoint_dir, models=("wine-bnn",), wine_bnn=limits))
    served = api.served("wine-bnn")
    gate = hold_model(close_gate, served)
    running, queued, refused = (batch(row) for row in WINE_ROWS[:3])

    async def overload() -> tuple[httpx.Response, ...]:
        first = asyncio.create_task(api.client.post("/predict/wine", json=running))
        await gate.entered()
        second = asyncio.create_task(api.client.post("/predict/wine", json=queued))
        await queue_depth_reaches(served, 1)
        depth = Metrics.parse((await api.client.get("/metrics")).text)
        assert depth.value("bayes_queue_depth", model="wine-bnn") == 1
        third = await api.client.post("/predict/wine", json=refused)
        gate.open()
        return (await first, await second, third)

    first, second, third = api.run(overload())
    assert third.status_code == 503
    assert int(third.headers["retry-after"]) >= 1
    assert "capacity" in third.json()["detail"]
    assert first.status_code == second.status_code == 200
    processed = np.concatenate([job.inputs for (jobs,) in gate.calls for job in jobs])
    np.testing.assert_array_equal(processed, np.float32(WINE_ROWS[:2]))


def test_request_waiting_past_its_deadline_answers_504_and_is_not_run(
    checkpoint_dir: Path, start_app: Callable[..., Api], close_gate: Callable[[object, str], Gate]
) -> None:
    deadline = {"timeout_s": 0.2, "max_batch_size": 1}
    api = start_app(make_settings(checkpoint_dir, models=("wine-bnn",), wine_bnn=deadline))
    gate = hold_model(close_gate, api.served("wine-bnn"))

    async def wait_too_long() -> tuple[httpx.Response, httpx.Response]:
        first = asyncio.create_task(api.client.post("/predict/wine", json=batch(WINE_ROWS[0])))
        await gate.entered()
        late = await api.client.post("/predict/wine", json=batch(WINE_ROWS[1]))
        gate.open()
        return await first, late

    first, late = api.run(wait_too_long())
    assert late.status_code == 504
    assert "deadline" in late.json()["detail"]
    # The deadline covers the whole request: the first one's pass outlasted it too, and its
    # client gets a 504 rather than an answer too late to use.
    assert first.status_code == 504
    assert gate.jobs_per_pass == [1]  # only the first request reached the model


def test_models_naming_a_model_the_repository_lacks_stops_start_up(
    checkpoint_dir: Path, tmp_path: Path, start_app: Callable[..., Api]
) -> None:
    folder = copy_checkpoints(checkpoint_dir, tmp_path, "wine-gaussian")
    with pytest.raises(StartupError, match=r"MODELS names \['wine-bnn'\].*holds: wine-gaussian"):
        start_app(make_settings(folder, models=("wine-bnn", "wine-gaussian")))


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("tpu9", "tpu9"),
        pytest.param(
            "cuda",
            "no CUDA device",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA"),
        ),
    ],
)
def test_a_models_unusable_device_stops_start_up_naming_the_model(
    checkpoint_dir: Path, start_app: Callable[..., Api], device: str, message: str
) -> None:
    settings = make_settings(
        checkpoint_dir, models=("wine-bnn", "wine-gaussian"), wine_gaussian={"device": device}
    )
    with pytest.raises(StartupError, match=rf"cannot serve wine-gaussian: .*{message}"):
        start_app(settings)


def test_a_model_can_run_on_a_device_of_its_own(
    checkpoint_dir: Path, start_app: Callable[..., Api]
) -> None:
    settings = make_settings(
        checkpoint_dir, models=("wine-bnn", "wine-gaussian"), wine_bnn={"device": "cpu"}
    )
    api = start_app(settings)
    devices = {m["name"]: m["device"] for m in api.get("/models").json()["models"]}
    # On a GPU machine the other model is on CUDA (DEVICE=auto); here both are on the CPU.
    assert devices == {"wine-bnn": "cpu", "wine-gaussian": str(resolve_device(settings.device))}


def test_models_say_how_their_batches_run(
    checkpoint_dir: Path, start_app: Callable[..., Api], caplog: pytest.LogCaptureFixture
) -> None:
    """Tabular regressors replay CUDA graphs on CUDA unless told not to; the rest is eager."""
    settings = make_settings(
        checkpoint_dir,
        models=("wine-bnn", "wine-gaussian"),
        log_level="info",
        wine_gaussian={"cuda_graphs": False},
    )
    service_log = logging.getLogger("service")  # it prints itself, not through the root's
    service_log.addHandler(caplog.handler)
    try:
        api = start_app(settings)
    finally:
        service_log.removeHandler(caplog.handler)
    models = {m["name"]: m for m in api.get("/models").json()["models"]}
    on_cuda = resolve_device(settings.device).type == "cuda"
    assert models["wine-bnn"]["execution"] == ("cuda-graphs" if on_cuda else "eager")
    assert models["wine-gaussian"]["execution"] == "eager"
    device = models["wine-bnn"]["device"]
    assert f"wine-bnn is ready ({models['wine-bnn']['execution']} on {device})" in caplog.text


def test_corrupt_checkpoint_stops_start_up_naming_the_file(
    checkpoint_dir: Path, tmp_path: Path, start_app: Callable[..., Api]
) -> None:
    folder = copy_checkpoints(checkpoint_dir, tmp_path, "wine-bnn")
    path = folder / "wine-bnn.safetensors"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # one weight changed: the file still parses, its hash does not match
    path.write_bytes(bytes(data))
    with pytest.raises(StartupError, match=re.escape(str(path))):
        start_app(make_settings(folder, models=("wine-bnn",)))


@pytest.fixture
def gaussian_failing_warm_up(
    checkpoint_dir: Path, start_app: Callable[..., Api], monkeypatch: pytest.MonkeyPatch
) -> Api:
    """wine-bnn serves; wine-gaussian failed its warm-up (say, out of device memory)."""
    build = TabularRegression.predictor

    def build_or_fail(task: TabularRegression, max_samples: int) -> Any:
        if task.model.kind == "tabular-gaussian":
            raise RuntimeError("out of device memory")
        return build(task, max_samples)

    monkeypatch.setattr(TabularRegression, "predictor", build_or_fail)
    api = start_app(
        make_settings(checkpoint_dir, models=("wine-bnn", "wine-gaussian")), wait_ready=False
    )

    async def warm_up_over() -> bool:
        registry = api.registry
        return "wine-gaussian" in registry.failures and registry.models["wine-bnn"].ready

    api.run(eventually(warm_up_over, "the warm-up to finish"))
    return api


def test_model_that_failed_warm_up_answers_503_while_the_others_serve(
    gaussian_failing_warm_up: Api,
) -> None:
    api = gaussian_failing_warm_up
    response = api.wine(batch(WINE_ROWS[0]), model="gaussian")
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    assert "out of device memory" in response.json()["detail"]
    api.wine_ok(batch(WINE_ROWS[0]), model="bnn")


def test_readyz_stays_503_when_a_model_failed_to_warm_up(gaussian_failing_warm_up: Api) -> None:
    response = gaussian_failing_warm_up.get("/readyz")
    assert response.status_code == 503
    assert "wine-gaussian" in response.json()["failed"]


# ---------------------------------------------------------------------------------------------
# CIFAR


CIFAR_FILES = (  # every format API.md names, and one image that is not 32×32
    ("square.png", image_file("PNG", seed=1)),
    ("photo.jpg", image_file("JPEG", seed=2)),
    ("wide.png", image_file("PNG", width=64, height=48, seed=3)),
    ("bitmap.bmp", image_file("BMP", seed=4)),
    ("icon.gif", image_file("GIF", seed=5)),
    ("picture.webp", image_file("WEBP", width=20, height=40, seed=6)),
)


def test_cifar_multipart_answers_each_file_by_its_filename(api: Api, checkpoint_dir: Path) -> None:
    response = api.cifar_files(CIFAR_FILES)
    assert response.status_code == 200, response.text
    answer = response.json()
    version = sha256_of(checkpoint_dir / "cifar-bcnn.safetensors")[:12]
    assert answer["model"] == {"name": "cifar-bcnn", "version": version}
    assert (answer["samples"], answer["level"]) == (CIFAR_DEFAULT_SAMPLES, 0.95)
    assert [p["filename"] for p in answer["predictions"]] == [name for name, _ in CIFAR_FILES]
    for prediction in answer["predictions"]:
        assert_coherent_classification(prediction)


def test_cifar_json_b64_answers_as_multipart_does_without_filenames(api: Api) -> None:
    params = {"samples": CIFAR_MAX_SAMPLES, "level": 0.8}
    instances = [{"b64": base64.b64encode(data).decode()} for _, data in CIFAR_FILES]
    response = api.post("/predict/cifar", json={"instances": instances}, params=params)
    assert response.status_code == 200, response.text
    from_json = response.json()
    assert (from_json["samples"], from_json["level"]) == (CIFAR_MAX_SAMPLES, 0.8)
    assert all("filename" not in prediction for prediction in from_json["predictions"])
    for prediction in from_json["predictions"]:
        assert_coherent_classification(prediction)

    from_multipart = api.cifar_files(CIFAR_FILES, **params).json()
    for prediction in from_multipart["predictions"]:
        del prediction["filename"]
    assert_same_classification(from_json, from_multipart)


def test_the_committed_cifar_ensemble_answers_from_its_four_members(
    checkpoint_dir: Path, start_app: Callable[..., Api]
) -> None:
    """``cifar-bcnn-ensemble`` (API.md, Ensembles) at /predict/cifar?model=bcnn-ensemble."""
    settings = make_settings(
        checkpoint_dir,
        models=("cifar-bcnn-ensemble",),
        cifar_bcnn_ensemble={"max_samples": 8, "default_samples": 8},
    )
    api = start_app(settings)
    (entry,) = api.get("/models").json()["models"]
    assert (entry["task"], entry["members"]) == ("image-classification", 4)
    response = api.cifar_files(CIFAR_FILES[:3], model="bcnn-ensemble")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["model"]["name"], answer["samples"]) == ("cifar-bcnn-ensemble", 8)
    for prediction in answer["predictions"]:
        assert_coherent_classification(prediction)


def test_cifar_intervals_widen_with_the_level(api: Api) -> None:
    files = CIFAR_FILES[:1]
    narrow = api.cifar_files(files, samples=CIFAR_MAX_SAMPLES, level=0.5).json()["predictions"][0]
    wide = api.cifar_files(files, samples=CIFAR_MAX_SAMPLES, level=0.99).json()["predictions"][0]
    for name in CLASSES:
        inner, outer = narrow["intervals"][name], wide["intervals"][name]
        assert outer["lower"] <= inner["lower"] <= inner["upper"] <= outer["upper"]
    assert narrow["probabilities"] == pytest.approx(wide["probabilities"], rel=1e-5)


def test_cifar_answers_are_the_same_alone_and_inside_a_concurrent_batch(
    api: Api, close_gate: Callable[[object, str], Gate]
) -> None:
    requests = [  # (files, samples, level)
        (CIFAR_FILES[:1], CIFAR_MAX_SAMPLES, 0.95),
        (CIFAR_FILES[1:4], 2, 0.5),
        (CIFAR_FILES, CIFAR_DEFAULT_SAMPLES, 0.9),
        (CIFAR_FILES[:1], 1, 0.8),
    ]
    sends = [
        functools.partial(
            api.client.post,
            "/predict/cifar",
            files=[("files", file) for file in files],
            params={"samples": samples, "level": level},
        )
        for files, samples, level in requests
    ]
    assert_same_alone_and_in_one_batch(
        api, close_gate, "cifar-bcnn", sends, assert_same_classification
    )


def test_the_service_imports_none_of_the_offline_tooling() -> None:
    """Metrics, plots and Ray are for training, the report and scale-out: a serving process
    that imported them would carry ~100 MB and a second of start-up for nothing."""
    check = (
        "import sys, service.app\n"
        "heavy = ('torchmetrics', 'matplotlib', 'scipy', 'sklearn', 'ray')\n"
        "bad = sorted(m for m in heavy if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", check],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
