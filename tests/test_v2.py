"""The Open Inference Protocol routes (API.md, "Open Inference Protocol (KServe v2)"), driven by
Triton's own HTTP client (``tritonclient.http``), which we did not write.

Most tests talk to the real service in a uvicorn process (the session's ``live_server``:
every committed model, CIFAR at few samples) and compare its v2 answers with its own
``/predict`` answers for the same inputs. The tests that must hold the model back (a full
queue, a v2 and a ``/predict`` request in one model pass, a model still warming up) serve the
app from uvicorn on a thread of this process instead, so that they can put a gate in front of
its model, as ``test_api.py`` does, while the client still talks to it over a socket.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
import tritonclient.http.aio as triton_aio
import uvicorn
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

import service.tasks.image_classification
import service.tasks.tabular_regression
from bench import report
from service.app import create_app
from service.live_server import LiveServer, free_port
from service.protocol.tensors import encode_infer_response, parse_infer_request
from service.registry import ServedModel
from service.settings import Settings

T = TypeVar("T")

# Only there so that a broken service fails a test instead of hanging it; never a speed check.
HANG_GUARD_S = 30.0
POLL_S = 0.01
POLL_TRIES = 2000

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
WINE_ROWS = np.array(
    [
        (7.0, 0.27, 0.36, 20.7, 0.045, 45.0, 170.0, 1.001, 3.0, 0.45, 8.8),
        (6.3, 0.3, 0.34, 1.6, 0.049, 14.0, 132.0, 0.994, 3.3, 0.49, 9.5),
        (8.1, 0.28, 0.4, 6.9, 0.05, 30.0, 97.0, 0.9951, 3.26, 0.44, 10.1),
        (7.2, 0.23, 0.32, 8.5, 0.058, 47.0, 186.0, 0.9956, 3.19, 0.4, 9.9),
        (6.2, 0.32, 0.16, 7.0, 0.045, 30.0, 136.0, 0.9949, 3.18, 0.47, 9.6),
    ],
    dtype=np.float32,
)
# API.md's outputs, in its order.
REGRESSION_OUTPUTS = ("mean", "std", "lower", "upper", "epistemic_std", "aleatoric_std")
CLASSIFICATION_OUTPUTS = (
    "probabilities",
    "lower",
    "upper",
    "label",
    "class_index",
    "confidence",
    "entropy_total",
    "entropy_aleatoric",
    "entropy_epistemic",
)
CIFAR_MAX_SAMPLES = 8  # the session's live server: CIFAR_BCNN__MAX_SAMPLES
CIFAR_MAX_IMAGES = 64  # the image task's default max_instances
RTOL = 1e-6


# ---------------------------------------------------------------------------------------------
# Clients, bodies, expectations


def host_of(url: str) -> str:
    """tritonclient takes ``host:port``, without the scheme."""
    return url.removeprefix("http://")


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(host_of(live_server.url)) as client:
        yield client


@pytest.fixture(scope="module")
def listed(live_server: LiveServer) -> dict[str, dict[str, Any]]:
    """GET /models, by name: the versions, features and classes the metadata must repeat."""
    response = httpx.get(f"{live_server.url}/models")
    assert response.status_code == 200, response.text
    return {entry["name"]: entry for entry in response.json()["models"]}


def wine_input(rows: np.ndarray, *, binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("input", list(rows.shape), "FP32")
    return tensor.set_data_from_numpy(rows, binary_data=binary)


def image_input(files: list[bytes], *, binary: bool = True) -> triton.InferInput:
    """BYTES [N]: the files themselves as binary data, their base64 as JSON strings."""
    items = files if binary else [base64.b64encode(data) for data in files]
    array = np.empty(len(items), dtype=object)
    array[:] = items
    tensor = triton.InferInput("image", [len(items)], "BYTES")
    return tensor.set_data_from_numpy(array, binary_data=binary)


def pixels_input(pixels: np.ndarray) -> triton.InferInput:
    return triton.InferInput("image", list(pixels.shape), "UINT8").set_data_from_numpy(pixels)


def random_pixels(seed: int, height: int = 32, width: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def image_file(pixels: np.ndarray, image_format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format)
    return buffer.getvalue()


def predict(url: str, model: str, **kwargs: Any) -> dict[str, Any]:
    response = httpx.post(f"{url}/predict/{model}", timeout=HANG_GUARD_S, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def regression_columns(answer: dict[str, Any]) -> dict[str, np.ndarray]:
    """A /predict answer's numbers, per v2 output name."""
    predictions = answer["predictions"]
    columns = {
        "mean": [p["mean"] for p in predictions],
        "std": [p["std"] for p in predictions],
        "lower": [p["interval"]["lower"] for p in predictions],
        "upper": [p["interval"]["upper"] for p in predictions],
        "epistemic_std": [p["epistemic_std"] for p in predictions],
        "aleatoric_std": [p["aleatoric_std"] for p in predictions],
    }
    return {name: np.array(values) for name, values in columns.items() if None not in values}


def classification_columns(answer: dict[str, Any]) -> dict[str, np.ndarray]:
    predictions = answer["predictions"]

    def per_class(get: Callable[[dict[str, Any], str], float]) -> np.ndarray:
        return np.array([[get(p, c) for c in CLASSES] for p in predictions])

    return {
        "probabilities": per_class(lambda p, c: p["probabilities"][c]),
        "lower": per_class(lambda p, c: p["intervals"][c]["lower"]),
        "upper": per_class(lambda p, c: p["intervals"][c]["upper"]),
        "label": np.array([p["label"].encode() for p in predictions], dtype=object),
        "class_index": np.array([p["class_index"] for p in predictions]),
        "confidence": np.array([p["confidence"] for p in predictions]),
        "entropy_total": np.array([p["uncertainty"]["total"] for p in predictions]),
        "entropy_aleatoric": np.array([p["uncertainty"]["aleatoric"] for p in predictions]),
        "entropy_epistemic": np.array([p["uncertainty"]["epistemic"] for p in predictions]),
    }


def assert_same_outputs(result: triton.InferResult, expected: dict[str, np.ndarray]) -> None:
    """Every output equal to /predict's numbers (relative 1e-6), and nothing else answered."""
    names = [output["name"] for output in result.get_response()["outputs"]]
    assert names == list(expected)
    for name, want in expected.items():
        got = result.as_numpy(name)
        assert got is not None, name
        assert got.shape == want.shape, name
        if want.dtype == object:
            assert got.tolist() == want.tolist(), name
        else:
            np.testing.assert_allclose(got, want, rtol=RTOL, err_msg=name)


def refused(call: Callable[[], object]) -> InferenceServerException:
    """The client's exception: it carries the status and the server's ``error`` message."""
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


# ---------------------------------------------------------------------------------------------
# Health and metadata


def test_server_is_live_ready_and_names_its_version_and_extensions(
    client: triton.InferenceServerClient, live_server: LiveServer
) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    openapi = httpx.get(f"{live_server.url}/openapi.json").json()
    assert metadata["name"] == "bayes-serve"
    assert metadata["version"] == openapi["info"]["version"]
    assert set(metadata["extensions"]) == {"binary_tensor_data", "parameters"}


def test_every_model_is_ready_at_its_name_and_at_its_version(
    client: triton.InferenceServerClient, listed: dict[str, dict[str, Any]]
) -> None:
    assert set(listed) == {"wine-bnn", "wine-gaussian", "cifar-bcnn"}
    for name, entry in listed.items():
        assert client.is_model_ready(name)
        assert client.is_model_ready(name, entry["version"])
        assert not client.is_model_ready(name, "000000000000")
    assert not client.is_model_ready("no-such-model")


@pytest.mark.parametrize("model", ["wine-bnn", "wine-gaussian"])
def test_tabular_metadata_lists_its_tensors_and_features(
    client: triton.InferenceServerClient, listed: dict[str, dict[str, Any]], model: str
) -> None:
    entry = listed[model]
    metadata = client.get_model_metadata(model)
    assert client.get_model_metadata(model, entry["version"]) == metadata
    assert metadata["name"] == model
    assert metadata["versions"] == [entry["version"]]
    assert metadata["platform"] == "pytorch_safetensors"
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 11]}]
    # A model without a distribution over networks has no epistemic part to answer.
    outputs = [o for o in REGRESSION_OUTPUTS if model == "wine-bnn" or o != "epistemic_std"]
    assert metadata["outputs"] == [
        {"name": name, "datatype": "FP32", "shape": [-1]} for name in outputs
    ]
    assert metadata["features"] == list(FEATURES) == entry["input"]["features"]
    assert metadata["target"] == "quality"
    assert metadata["parameters"] == {
        "task": "tabular-regression",
        "kind": entry["kind"],
        "default_samples": entry["default_samples"],
        "max_samples": entry["max_samples"],
        "max_instances": entry["max_instances"],
    }


def test_image_metadata_lists_its_tensors_and_classes(
    client: triton.InferenceServerClient, listed: dict[str, dict[str, Any]]
) -> None:
    metadata = client.get_model_metadata("cifar-bcnn")
    assert metadata["versions"] == [listed["cifar-bcnn"]["version"]]
    assert metadata["classes"] == list(CLASSES) == listed["cifar-bcnn"]["classes"]
    assert metadata["inputs"] == [
        {
            "name": "image",
            "datatype": "BYTES",
            "shape": [-1],
            "alternatives": [{"datatype": "UINT8", "shape": [-1, 32, 32, 3]}],
        }
    ]
    per_class = {"probabilities", "lower", "upper"}
    types = {"label": "BYTES", "class_index": "INT64"}
    assert metadata["outputs"] == [
        {
            "name": name,
            "datatype": types.get(name, "FP32"),
            "shape": [-1, 10] if name in per_class else [-1],
        }
        for name in CLASSIFICATION_OUTPUTS
    ]
    assert metadata["parameters"]["max_samples"] == CIFAR_MAX_SAMPLES


# ---------------------------------------------------------------------------------------------
# Inference: the same numbers as /predict


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("model", ["wine-bnn", "wine-gaussian"])
def test_tabular_infer_answers_as_predict_does(
    client: triton.InferenceServerClient,
    live_server: LiveServer,
    listed: dict[str, dict[str, Any]],
    model: str,
    binary: bool,
) -> None:
    parameters = {"samples": 37, "level": 0.8}
    answer = predict(
        live_server.url, model, json={"instances": WINE_ROWS.tolist()}, params=parameters
    )
    expected = regression_columns(answer)
    # Binary: the client's defaults (binary inputs; every output as binary data). JSON: asked
    # for output by output.
    outputs = (
        None if binary else [triton.InferRequestedOutput(n, binary_data=False) for n in expected]
    )
    result = client.infer(
        model,
        [wine_input(WINE_ROWS, binary=binary)],
        outputs=outputs,
        request_id="wine-42",
        parameters=parameters,
    )
    assert_same_outputs(result, expected)
    response = result.get_response()
    assert response["model_name"] == model
    assert response["model_version"] == listed[model]["version"]
    assert response["id"] == "wine-42"
    # The effective samples: a model without a posterior has its one network.
    assert response["parameters"] == {"samples": answer["samples"], "level": 0.8}
    assert answer["samples"] == (37 if model == "wine-bnn" else 1)
    for output in response["outputs"]:
        assert ("data" in output) is not binary
        assert ("parameters" in output) is binary


@pytest.mark.parametrize("binary", [True, False], ids=["binary-files", "base64-json"])
def test_image_files_infer_answers_as_predict_does(
    client: triton.InferenceServerClient, live_server: LiveServer, binary: bool
) -> None:
    # A PNG at the model's size and a JPEG to be resized: both decoded as /predict decodes.
    files = [image_file(random_pixels(0), "PNG"), image_file(random_pixels(1, 40, 48), "JPEG")]
    parameters = {"samples": 6, "level": 0.9}
    parts = [
        ("files", (f"{i}.img", data, "application/octet-stream")) for i, data in enumerate(files)
    ]
    answer = predict(live_server.url, "cifar-bcnn", files=parts, params=parameters)
    result = client.infer("cifar-bcnn", [image_input(files, binary=binary)], parameters=parameters)
    assert_same_outputs(result, classification_columns(answer))
    assert result.get_response()["parameters"] == {"samples": 6, "level": 0.9}


def test_image_pixels_infer_answers_as_predict_does_for_their_files(
    client: triton.InferenceServerClient, live_server: LiveServer
) -> None:
    pixels = np.stack([random_pixels(seed) for seed in (2, 3, 4)])  # N × 32 × 32 × 3
    files = [
        ("files", (f"{i}.png", image_file(p, "PNG"), "image/png")) for i, p in enumerate(pixels)
    ]
    answer = predict(live_server.url, "cifar-bcnn", files=files)
    result = client.infer("cifar-bcnn", [pixels_input(pixels)])
    assert_same_outputs(result, classification_columns(answer))
    # Neither says samples or level: the model's defaults.
    assert result.get_response()["parameters"] == {"samples": answer["samples"], "level": 0.95}


def test_infer_answers_only_the_outputs_asked_for_each_in_its_form(
    client: triton.InferenceServerClient, live_server: LiveServer
) -> None:
    rows = WINE_ROWS[:2]
    expected = regression_columns(
        predict(live_server.url, "wine-bnn", json={"instances": rows.tolist()})
    )
    outputs = [
        triton.InferRequestedOutput("upper", binary_data=False),
        triton.InferRequestedOutput("mean", binary_data=True),
    ]
    result = client.infer("wine-bnn", [wine_input(rows)], outputs=outputs)
    assert_same_outputs(result, {"upper": expected["upper"], "mean": expected["mean"]})
    upper, mean = result.get_response()["outputs"]
    assert "data" in upper and "parameters" not in upper
    assert mean["parameters"] == {"binary_data_size": 2 * 4} and "data" not in mean


def test_image_infer_answers_only_the_outputs_asked_for_each_in_its_form(
    client: triton.InferenceServerClient, live_server: LiveServer
) -> None:
    pixels = np.stack([random_pixels(seed) for seed in (5, 6)])
    files = [
        ("files", (f"{i}.png", image_file(p, "PNG"), "image/png")) for i, p in enumerate(pixels)
    ]
    parameters = {"samples": 5, "level": 0.8}
    expected = classification_columns(
        predict(live_server.url, "cifar-bcnn", files=files, params=parameters)
    )
    asked = {"label": True, "upper": False, "class_index": True}  # name: as binary data
    outputs = [triton.InferRequestedOutput(n, binary_data=b) for n, b in asked.items()]
    result = client.infer(
        "cifar-bcnn", [pixels_input(pixels)], outputs=outputs, parameters=parameters
    )
    assert_same_outputs(result, {name: expected[name] for name in asked})
    response = result.get_response()
    assert response["parameters"] == {"samples": 5, "level": 0.8}
    label, upper, class_index = response["outputs"]
    assert (label["datatype"], label["shape"]) == ("BYTES", [2]) and "data" not in label
    assert (upper["datatype"], upper["shape"]) == ("FP32", [2, 10]) and "parameters" not in upper
    assert len(upper["data"]) == 2 * 10
    assert class_index["datatype"] == "INT64"
    assert class_index["parameters"] == {"binary_data_size": 2 * 8}


def test_a_plain_json_request_gets_a_plain_json_answer(live_server: LiveServer) -> None:
    """What a curl user sends (README): JSON in, JSON out, no binary part."""
    request = {
        "id": "curl-1",
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": [1, 11], "data": WINE_ROWS[0].tolist()}
        ],
        "outputs": [{"name": "lower"}, {"name": "upper"}],
        "parameters": {"level": 0.5},
    }
    response = httpx.post(f"{live_server.url}/v2/models/wine-bnn/infer", json=request)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in response.headers
    answer = response.json()
    assert answer["id"] == "curl-1"
    assert answer["parameters"] == {"samples": 100, "level": 0.5}
    expected = regression_columns(
        predict(live_server.url, "wine-bnn", json=WINE_ROWS[0].tolist(), params={"level": 0.5})
    )
    assert [(o["name"], o["datatype"], o["shape"]) for o in answer["outputs"]] == [
        ("lower", "FP32", [1]),
        ("upper", "FP32", [1]),
    ]
    for output in answer["outputs"]:
        np.testing.assert_allclose(output["data"], expected[output["name"]], rtol=RTOL)


# ---------------------------------------------------------------------------------------------
# Errors: the protocol's {"error": ...}, saying which tensor, dimension or parameter


@pytest.mark.parametrize(
    ("model", "make_input"),
    [
        ("wine-bnn", lambda: wine_input(WINE_ROWS[:1])),
        ("cifar-bcnn", lambda: pixels_input(random_pixels(0)[None])),
    ],
    ids=["tabular", "image"],
)
def test_an_unknown_model_or_version_is_404_naming_what_is_served(
    client: triton.InferenceServerClient,
    listed: dict[str, dict[str, Any]],
    model: str,
    make_input: Callable[[], triton.InferInput],
) -> None:
    version = listed[model]["version"]
    for call in (
        lambda: client.infer("no-such-model", [make_input()]),
        lambda: client.get_model_metadata("no-such-model"),
    ):
        error = refused(call)
        assert error.status() == "404"
        assert "'no-such-model'" in error.message() and model in error.message()
    for call in (
        lambda: client.infer(model, [make_input()], model_version="0" * 12),
        lambda: client.get_model_metadata(model, "0" * 12),
    ):
        error = refused(call)
        assert error.status() == "404"
        assert "'000000000000'" in error.message() and version in error.message()


def _shaped(name: str, shape: list[int], datatype: str, array: np.ndarray) -> triton.InferInput:
    return triton.InferInput(name, shape, datatype).set_data_from_numpy(array)


@pytest.mark.parametrize(
    ("model", "make_input", "parameters", "outputs", "says"),
    [
        pytest.param(
            "wine-bnn",
            lambda: _shaped("features", [1, 11], "FP32", WINE_ROWS[:1]),
            None,
            None,
            ["one input, 'input' (FP32 [-1, 11])", "got 'features'"],
            id="wrong-name",
        ),
        pytest.param(
            "wine-bnn",
            lambda: _shaped("input", [1, 11], "FP64", WINE_ROWS[:1].astype(np.float64)),
            None,
            None,
            ["input 'input'", "datatype is FP64", "FP32 [-1, 11]"],
            id="wrong-datatype",
        ),
        pytest.param(
            "wine-bnn",
            lambda: _shaped("input", [1, 10], "FP32", WINE_ROWS[:1, :10]),
            None,
            None,
            ["input 'input'", "dimension 1", "features in order: fixed_acidity", "11, not 10"],
            id="wrong-feature-count",
        ),
        pytest.param(
            "wine-bnn",
            lambda: _shaped("input", [11], "FP32", WINE_ROWS[0]),
            None,
            None,
            ["input 'input'", "shape [11] has 1 dimensions", "[-1, 11]"],
            id="wrong-rank",
        ),
        pytest.param(
            "wine-bnn",
            lambda: _shaped(
                "input", [1, 11], "FP32", np.where(np.arange(11) == 3, np.inf, WINE_ROWS[0])[None]
            ),
            None,
            None,
            ["input 'input'", "element [0, 3] (residual_sugar) is inf", "finite"],
            id="infinite-feature",
        ),
        pytest.param(
            "wine-gaussian",
            lambda: wine_input(np.where(np.arange(11) == 0, 1e30, WINE_ROWS[0])[None]),
            None,
            None,
            ["input 'input'", "outside the range of the training data"],
            id="a-row-the-network-overflows-on",
        ),
        pytest.param(
            "cifar-bcnn",
            lambda: pixels_input(np.zeros((1, 16, 16, 3), np.uint8)),
            None,
            None,
            ["input 'image'", "dimension 1 (height in pixels) should be 32, not 16"],
            id="wrong-image-size",
        ),
        pytest.param(
            "cifar-bcnn",
            lambda: pixels_input(np.zeros((CIFAR_MAX_IMAGES + 1, 32, 32, 3), np.uint8)),
            None,
            None,
            ["input 'image'", f"dimension 0 (images) is {CIFAR_MAX_IMAGES + 1}", "limit is 64"],
            id="too-many-images",
        ),
        pytest.param(
            "cifar-bcnn",
            lambda: image_input([b"GIF89a but not really"]),
            None,
            None,
            ["input 'image'", "element 0 is not a decodable image"],
            id="not-an-image",
        ),
        pytest.param(
            "cifar-bcnn",
            lambda: image_input([base64.b64encode(image_file(random_pixels(0), "PNG"))]),
            None,
            None,
            ["element 0 is not a decodable image", "looks like base64"],
            id="base64-sent-as-binary",
        ),
        pytest.param(
            "wine-bnn",
            lambda: wine_input(WINE_ROWS[:1]),
            {"samples": 0},
            None,
            ["parameters.samples", "integer >= 1", "not 0"],
            id="samples-0",
        ),
        pytest.param(
            "cifar-bcnn",
            lambda: pixels_input(np.zeros((1, 32, 32, 3), np.uint8)),
            {"samples": CIFAR_MAX_SAMPLES + 1},
            None,
            ["parameters.samples", f"less than or equal to {CIFAR_MAX_SAMPLES}", "cifar-bcnn"],
            id="samples-above-the-maximum",
        ),
        pytest.param(
            "wine-bnn",
            lambda: wine_input(WINE_ROWS[:1]),
            {"samples": "10"},
            None,
            ["parameters.samples", "integer", "'10'"],
            id="samples-a-string",
        ),
        pytest.param(
            "wine-bnn",
            lambda: wine_input(WINE_ROWS[:1]),
            {"level": 1.0},
            None,
            ["parameters.level", "less than 1"],
            id="level-1",
        ),
        pytest.param(
            "wine-bnn",
            lambda: wine_input(WINE_ROWS[:1]),
            {"level": 0},
            None,
            ["parameters.level", "greater than 0"],
            id="level-0",
        ),
        pytest.param(
            "wine-gaussian",
            lambda: wine_input(WINE_ROWS[:1]),
            None,
            ["epistemic_std"],
            ["output 'epistemic_std' is not an output of model wine-gaussian", "aleatoric_std"],
            id="output-the-model-lacks",
        ),
    ],
)
def test_a_bad_request_is_400_saying_which_tensor_and_what_was_expected(
    client: triton.InferenceServerClient,
    model: str,
    make_input: Callable[[], triton.InferInput],
    parameters: dict[str, Any] | None,
    outputs: list[str] | None,
    says: list[str],
) -> None:
    requested = [triton.InferRequestedOutput(name) for name in outputs] if outputs else None
    error = refused(
        lambda: client.infer(model, [make_input()], outputs=requested, parameters=parameters)
    )
    assert error.status() == "400", error.message()
    for part in says:
        assert part in error.message()


INFER = "/v2/models/wine-bnn/infer"
ROW_JSON = json.dumps(
    {
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": [1, 11],
                "parameters": {"binary_data_size": 44},
            }
        ]
    }
).encode()


def row_body(index: int, value: object) -> bytes:
    """One wine row as a JSON tensor, element ``index`` replaced by ``value``."""
    data: list[object] = list(WINE_ROWS[0].tolist())
    data[index] = value
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, 11], "data": data}
    return json.dumps({"inputs": [tensor]}).encode()


@pytest.mark.parametrize(
    ("content", "headers", "says"),
    [
        pytest.param(b'{"inputs": [', {}, "not valid JSON", id="not-json"),
        pytest.param(b'{"inputs": []}', {}, "inputs", id="no-inputs"),
        pytest.param(
            b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, -11], "data": []}]}',
            {},
            "inputs[0] ('input').shape[1]",
            id="negative-dimension",
        ),
        pytest.param(
            b'{"inputs": [{"name": "input", "datatype": "FLOAT", "shape": [1, 11], "data": []}]}',
            {},
            "datatype 'FLOAT' is none of the protocol's",
            id="unknown-datatype",
        ),
        pytest.param(
            row_body(1, "0.3"),
            {},
            "data[1] is the string '0.3'; FP32 elements must be numbers",
            id="string-among-numbers",
        ),
        pytest.param(
            row_body(1, True),
            {},
            "data[1] is the boolean true; FP32 elements must be numbers",
            id="boolean-among-numbers",
        ),
        pytest.param(row_body(4, None), {}, "data[4] is null", id="null-among-numbers"),
        pytest.param(
            ROW_JSON + bytes(40),
            {"Inference-Header-Content-Length": str(len(ROW_JSON))},
            "binary_data_size is 44 bytes, but only 40 bytes of binary data are left",
            id="binary-data-cut-short",
        ),
        pytest.param(
            ROW_JSON + bytes(48),
            {"Inference-Header-Content-Length": str(len(ROW_JSON))},
            "4 bytes of binary data follow the JSON that no input's binary_data_size accounts",
            id="binary-data-left-over",
        ),
        pytest.param(
            ROW_JSON + bytes(44),
            {"Inference-Header-Content-Length": str(len(ROW_JSON) + 100)},
            "the body has only",
            id="header-length-past-the-body",
        ),
        pytest.param(
            ROW_JSON + bytes(44),
            {"Content-Encoding": "gzip"},
            "Content-Encoding 'gzip' is not supported",
            id="compressed",
        ),
    ],
)
def test_a_malformed_body_is_400_with_the_protocols_error_object(
    live_server: LiveServer, content: bytes, headers: dict[str, str], says: str
) -> None:
    response = httpx.post(f"{live_server.url}{INFER}", content=content, headers=headers)
    assert response.status_code == 400, response.text
    assert list(response.json()) == ["error"]
    assert says in response.json()["error"]


def test_a_body_over_the_size_limit_is_413_in_the_protocols_shape(
    live_server: LiveServer,
) -> None:
    # Refused from its Content-Length before routing: the route's own rendering never runs.
    body = b" " * (8 * 1024 * 1024 + 1)
    response = httpx.post(
        f"{live_server.url}{INFER}", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert list(response.json()) == ["error"]
    assert "the limit is 8388608 bytes" in response.json()["error"]


def test_routes_the_server_lacks_answer_in_the_protocols_shape(
    client: triton.InferenceServerClient, live_server: LiveServer
) -> None:
    error = refused(lambda: client.get_inference_statistics("wine-bnn"))
    assert error.status() == "404"
    assert "/v2/models/wine-bnn/stats is not a route" in error.message()
    wrong_method = httpx.get(f"{live_server.url}{INFER}")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"
    assert list(wrong_method.json()) == ["error"]
    # The other routes keep FastAPI's shape.
    other = httpx.post(f"{live_server.url}/predict/no-such-model", json={})
    assert other.status_code == 404 and list(other.json()) == ["detail"]


# ---------------------------------------------------------------------------------------------
# Metrics and the access log


def metric_samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"{url}/metrics").text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_and_access_log_show_the_v2_routes_by_template(
    client: triton.InferenceServerClient, live_server: LiveServer, listed: dict[str, dict[str, Any]]
) -> None:
    version = listed["wine-gaussian"]["version"]
    rows = WINE_ROWS[:1]
    before = metric_samples(live_server.url)
    # Request ids of our own, to find each request's line in the access log.
    client.infer("wine-bnn", [wine_input(rows)], headers={"X-Request-Id": "v2-log-1"})
    client.infer(
        "wine-gaussian",
        [wine_input(rows)],
        model_version=version,
        headers={"X-Request-Id": "v2-log-2"},
    )
    refused(
        lambda: client.infer(
            "wine-bnn", [wine_input(rows[:, :3])], headers={"X-Request-Id": "v2-log-3"}
        )
    )
    client.get_model_metadata("cifar-bcnn", headers={"X-Request-Id": "v2-log-4"})
    after = metric_samples(live_server.url)

    def added(route: str, status: str, method: str = "POST") -> float:
        key = (
            "bayes_http_requests_total",
            frozenset({"method": method, "route": route, "status": status}.items()),
        )
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert added("/v2/models/{name}/infer", "200") == 1
    assert added("/v2/models/{name}/versions/{version}/infer", "200") == 1
    assert added("/v2/models/{name}/infer", "400") == 1
    assert added("/v2/models/{name}", "200", method="GET") == 1
    log = live_server.output()
    for line in (
        "v2-log-1 POST /v2/models/wine-bnn/infer 200 ",
        f"v2-log-2 POST /v2/models/wine-gaussian/versions/{version}/infer 200 ",
        "v2-log-3 POST /v2/models/wine-bnn/infer 400 ",
        "v2-log-4 GET /v2/models/cifar-bcnn 200 ",
    ):
        assert line in log


# ---------------------------------------------------------------------------------------------
# Holding the model back: the app on a thread of this process


class Gate:
    """Stands in for a function the service calls: each call waits until the gate opens."""

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
        assert await asyncio.to_thread(self._entered.wait, HANG_GUARD_S), "nothing reached the gate"


class ThreadServer:
    """``create_app(settings)`` served by uvicorn on a thread, on a free port of this host."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        port = free_port()
        self.host = f"127.0.0.1:{port}"
        self.url = f"http://{self.host}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="v2-test-server", daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        poll(lambda: self.server.started, "the server to listen")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(HANG_GUARD_S)

    def served(self, name: str) -> ServedModel:
        return self.app.state.registry.models[name]

    def ready(self) -> bool:
        return httpx.get(f"{self.url}/v2/health/ready").status_code == 200


def poll(condition: Callable[[], bool], what: str) -> None:
    for _ in range(POLL_TRIES):
        if condition():
            return
        time.sleep(POLL_S)
    pytest.fail(f"gave up waiting for {what}")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coroutine, HANG_GUARD_S))


async def queued(served: ServedModel, depth: int) -> None:
    for _ in range(POLL_TRIES):
        assert served.batcher is not None
        if served.batcher.queue_depth == depth:
            return
        await asyncio.sleep(POLL_S)
    pytest.fail(f"gave up waiting for {depth} requests queued for {served.name}")


@pytest.fixture(scope="module", autouse=True)
def service_logging() -> Iterator[None]:
    """``create_app`` configures the ``service`` logger; give other modules theirs back."""
    logger = logging.getLogger("service")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    yield
    logger.setLevel(saved[0])
    logger.propagate = saved[1]
    logger.handlers[:] = saved[2]


# Two requests may wait for the model; a third is refused.
QUEUE = 2
# CIFAR as the live server runs it: few samples, so that its warm-up is quick.
CIFAR_FEW_SAMPLES = {"default_samples": 4, "max_samples": CIFAR_MAX_SAMPLES}


@pytest.fixture(scope="module")
def held(checkpoint_dir: Path) -> Iterator[ThreadServer]:
    settings = Settings(
        model_repository=checkpoint_dir,
        models=("wine-bnn", "cifar-bcnn"),
        log_level="warning",
        per_model={
            "wine_bnn": {"max_queue_size": QUEUE},
            "cifar_bcnn": {"max_queue_size": QUEUE, **CIFAR_FEW_SAMPLES},
        },
    )
    with ThreadServer(settings) as server:
        poll(server.ready, "wine-bnn and cifar-bcnn to warm up")
        yield server


@pytest.fixture
def gate(
    held: ThreadServer, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Gate]:
    """The model's passes (wine-bnn's, unless parametrized with another name) wait at the gate
    until the test opens it (or ends)."""
    batcher = held.served(getattr(request, "param", "wine-bnn")).batcher
    assert batcher is not None
    closed = Gate(batcher._predict)
    monkeypatch.setattr(batcher, "_predict", closed)
    yield closed
    closed.open()


def test_a_v2_and_a_predict_request_share_one_model_pass_and_answer_alike(
    held: ThreadServer, gate: Gate
) -> None:
    served = held.served("wine-bnn")
    parameters = {"samples": 20, "level": 0.9}
    row = WINE_ROWS[1:2]

    async def together() -> tuple[httpx.Response, triton.InferResult, httpx.Response]:
        async with (
            httpx.AsyncClient(base_url=held.url, timeout=HANG_GUARD_S) as http,
            triton_aio.InferenceServerClient(held.host) as client,
        ):
            plug = asyncio.create_task(http.post("/predict/wine", json=WINE_ROWS[0].tolist()))
            await gate.entered()  # the model is busy: the next two queue behind it
            v2 = asyncio.create_task(
                client.infer("wine-bnn", [wine_input(row)], parameters=parameters)
            )
            rest = asyncio.create_task(
                http.post("/predict/wine", json={"instances": row.tolist()}, params=parameters)
            )
            await queued(served, 2)
            gate.open()
            return await plug, await v2, await rest

    plug, v2, rest = run(together())
    assert plug.status_code == rest.status_code == 200, rest.text
    assert [len(jobs) for (jobs,) in gate.calls] == [1, 2]  # v2 and /predict: one pass
    first, second = gate.calls[1][0]
    np.testing.assert_array_equal(first.inputs, second.inputs)  # the very same Job
    assert (first.samples, first.level) == (second.samples, second.level) == (20, 0.9)
    assert_same_outputs(v2, regression_columns(rest.json()))


# Per model: the i-th of four single-instance inputs, the same four as an array, an output.
IMAGES = np.stack([random_pixels(seed) for seed in range(10, 14)])
SINGLE_INPUTS: dict[str, tuple[Callable[[int], triton.InferInput], np.ndarray, str]] = {
    "wine-bnn": (lambda i: wine_input(WINE_ROWS[i : i + 1]), WINE_ROWS[:4], "mean"),
    "cifar-bcnn": (lambda i: pixels_input(IMAGES[i : i + 1]), IMAGES, "confidence"),
}


@pytest.mark.parametrize(
    ("gate", "model"),
    [("wine-bnn", "wine-bnn"), ("cifar-bcnn", "cifar-bcnn")],
    ids=["tabular", "image"],
    indirect=["gate"],
)
def test_a_full_queue_is_503_with_retry_after_and_runs_nothing_of_the_refused(
    held: ThreadServer, gate: Gate, model: str
) -> None:
    served = held.served(model)
    single, instances, output = SINGLE_INPUTS[model]
    body, json_size = triton.InferenceServerClient.generate_request_body([single(3)])

    async def overload() -> tuple[list[Any], InferenceServerException, httpx.Response]:
        async with (
            httpx.AsyncClient(base_url=held.url, timeout=HANG_GUARD_S) as http,
            triton_aio.InferenceServerClient(held.host) as client,
        ):
            first = asyncio.create_task(client.infer(model, [single(0)]))
            await gate.entered()
            waiting = [asyncio.create_task(client.infer(model, [single(i)])) for i in (1, 2)]
            await queued(served, QUEUE)
            with pytest.raises(InferenceServerException) as caught:
                await client.infer(model, [single(3)])
            raw = await http.post(
                f"/v2/models/{model}/infer",
                content=body,
                headers={"Inference-Header-Content-Length": str(json_size)},
            )
            gate.open()
            return [await first, *[await w for w in waiting]], caught.value, raw

    answered, error, raw = run(overload())
    assert error.status() == "503"
    assert "capacity" in error.message()
    assert raw.status_code == 503
    assert int(raw.headers["retry-after"]) >= 1
    assert list(raw.json()) == ["error"]
    assert all(result.as_numpy(output).shape == (1,) for result in answered)
    processed = np.concatenate([job.inputs for (jobs,) in gate.calls for job in jobs])
    np.testing.assert_array_equal(processed, instances[:3])  # the refused one never ran


# Per task kind: its module, the predictor class its warm-up builds, a model, settings, one
# JSON input tensor and an output.
WARMING_UP: dict[str, tuple[Any, str, str, dict[str, Any], dict[str, Any], str]] = {
    "tabular": (
        service.tasks.tabular_regression,
        "RegressionPredictor",
        "wine-gaussian",
        {},
        {"name": "input", "datatype": "FP32", "shape": [1, 11], "data": WINE_ROWS[0].tolist()},
        "mean",
    ),
    "image": (
        service.tasks.image_classification,
        "ClassificationPredictor",
        "cifar-bcnn",
        {"cifar_bcnn": CIFAR_FEW_SAMPLES},
        {
            "name": "image",
            "datatype": "UINT8",
            "shape": [1, 32, 32, 3],
            "data": random_pixels(7).ravel().tolist(),
        },
        "confidence",
    ),
}


@pytest.mark.parametrize("kind", list(WARMING_UP))
def test_a_model_warming_up_is_503_with_retry_after_until_it_is_ready(
    checkpoint_dir: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    module, predictor, model, per_model, tensor, output = WARMING_UP[kind]
    warm_up = Gate(getattr(module, predictor))
    monkeypatch.setattr(module, predictor, warm_up)
    settings = Settings(
        model_repository=checkpoint_dir, models=(model,), log_level="warning", per_model=per_model
    )
    body = {"inputs": [tensor]}
    single = triton.InferInput(tensor["name"], tensor["shape"], tensor["datatype"])
    single.set_data_from_numpy(
        np.array(tensor["data"], dtype=np.float32 if kind == "tabular" else np.uint8).reshape(
            tensor["shape"]
        )
    )
    try:
        with ThreadServer(settings) as server, triton.InferenceServerClient(server.host) as client:
            poll(lambda: bool(warm_up.calls), "the warm-up to reach the gate")
            assert client.is_server_live()
            assert not client.is_server_ready()
            assert not client.is_model_ready(model)
            assert client.get_model_metadata(model)["name"] == model
            error = refused(lambda: client.infer(model, [single]))
            assert error.status() == "503" and "not loaded yet" in error.message()
            for method, path, keys in (
                ("GET", "/v2/health/ready", ["ready", "error"]),
                ("GET", f"/v2/models/{model}/ready", ["name", "ready", "error"]),
                ("POST", f"/v2/models/{model}/infer", ["error"]),
            ):
                response = httpx.request(
                    method, f"{server.url}{path}", json=body if method == "POST" else None
                )
                assert response.status_code == 503, path
                assert int(response.headers["retry-after"]) >= 1, path
                assert list(response.json()) == keys, path
            warm_up.open()
            poll(server.ready, f"{model} to warm up")
            assert client.is_model_ready(model)
            assert client.infer(model, [single]).as_numpy(output).shape == (1,)
    finally:
        warm_up.open()


# ---------------------------------------------------------------------------------------------
# The benchmark's row


def _point(route: str, throughput: float) -> dict[str, Any]:
    return {
        "server": "service",
        "route": route,
        "connections": 32,
        "rate": None,
        "requests": 1000,
        "duration_s": 5.0,
        "throughput": throughput,
        "p50_ms": 10.0,
        "p95_ms": 12.0,
        "p99_ms": 15.0,
        "errors": 0,
        "late": 0,
        "late_max_ms": 0.0,
        "cpu_ms_per_request": 0.5,
        "loop_ms_per_request": 0.3,
    }


@pytest.mark.parametrize(("v2", "verdict"), [(950.0, "pass"), (850.0, "MISS")])
def test_the_benchmark_compares_v2_infer_with_predict_wine_at_c32(v2: float, verdict: str) -> None:
    memory = {"peak_bytes": 2**20, "current_bytes": 2**20}
    # The comparison is of the alternating slices (the c=32 /predict point is not in it), each
    # route's the mean of its slices: v2 (v2 + 50, v2 - 50) against 1000 (990, 1010).
    slices = [("wine-vs-v2", 990.0), ("v2", v2 + 50), ("v2", v2 - 50), ("wine-vs-v2", 1010.0)]
    http = {
        "samples": 100,
        "models": ["wine-bnn"],
        "wine_max_wait_ms": 2.0,
        "points": [_point("wine", 2000.0), *(_point(route, t) for route, t in slices)],
        "memory": {"ready": memory, "after_load": memory},
    }
    rows = report.http_rows(http, {"figures": []}, "H")
    (ratio,) = [row for row in rows if "v2 infer /" in row.figure]
    assert ratio.figure.startswith("HTTP wine S=100 c=32: v2 infer / /predict/wine req/s (2 ")
    assert ratio.measured == f"{v2:,.0f} / 1,000 = {v2 / 1000:.2f}"
    assert (ratio.target, ratio.verdict) == ("≥ 0.9", verdict)
    assert any(row.figure == "HTTP v2 infer wine S=100 c=32: service" for row in rows)


# ---------------------------------------------------------------------------------------------
# The tensors themselves, against the reference client's own encoder and decoder


def _tensor(name: str, array: np.ndarray, datatype: str, binary: bool) -> triton.InferInput:
    return triton.InferInput(name, list(array.shape), datatype).set_data_from_numpy(
        array, binary_data=binary
    )


def _strings(*items: bytes) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


TENSORS = (
    ("fp32", np.arange(6, dtype=np.float32).reshape(2, 3) / 7, "FP32"),
    ("uint8", np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3) * 20, "UINT8"),
    ("int64", np.array([-(2**40), 0, 2**40], dtype=np.int64), "INT64"),
    ("bool", np.array([True, False]), "BOOL"),
    ("bytes", _strings(b"cat", b"", "caf\u00e9".encode()), "BYTES"),
)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_inputs_the_client_writes_read_back_as_the_arrays_it_was_given(binary: bool) -> None:
    inputs = [_tensor(name, array, datatype, binary) for name, array, datatype in TENSORS]
    body, json_size = triton.InferenceServerClient.generate_request_body(
        inputs, request_id="r", parameters={"samples": 3}
    )
    request = parse_infer_request(body, None if json_size is None else str(json_size))
    assert (request.id, request.parameters) == ("r", {"samples": 3, "binary_data_output": True})
    assert [tensor.binary for tensor in request.inputs] == [binary] * len(TENSORS)
    for tensor, (name, array, datatype) in zip(request.inputs, TENSORS, strict=True):
        assert (tensor.name, tensor.datatype, tensor.shape) == (name, datatype, array.shape)
        got = tensor.array()
        assert got.shape == array.shape
        assert got.tolist() == array.tolist()


def test_outputs_read_back_with_the_clients_decoder_in_either_form() -> None:
    head = {"model_name": "m", "model_version": "0" * 12, "parameters": {"samples": 2}}
    outputs = [(name, array, index % 2 == 0) for index, (name, array, _) in enumerate(TENSORS)]
    body, header_length = encode_infer_response(head, outputs)
    assert header_length is not None
    result = triton.InferResult.from_response_body(body, header_length=header_length)
    response = result.get_response()
    assert response["parameters"] == {"samples": 2}
    for output, (name, array, binary) in zip(response["outputs"], outputs, strict=True):
        assert output["name"] == name
        assert ("parameters" in output) is binary
        got = result.as_numpy(name)
        expected = array if array.dtype != object or binary else array.astype(str)
        assert got.tolist() == expected.tolist(), name
    json_only, none = encode_infer_response(head, [(n, a, False) for n, a, _ in outputs])
    assert none is None
    assert json.loads(json_only)["outputs"][0]["data"] == pytest.approx(
        TENSORS[0][1].ravel().tolist(), rel=RTOL
    )
