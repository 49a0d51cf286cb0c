"""A real server: ``uvicorn --factory service.app:create_app`` in a subprocess, over real HTTP.

Checks what only a running server shows: concurrent clients batched together and still
answered as if alone, and served numbers that agree with the offline evaluation of the same
checkpoints (wine test-set RMSE and coverage, CIFAR posterior predictive probabilities).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from models.checkpoint import load_checkpoint
from models.images import to_model_input
from models.predictive import class_probability_samples, fixed_posterior
from service.live_server import LiveServer
from training.datasets.cifar import CIFAR10_CLASSES, load_cifar10
from training.datasets.wine import WineSplit, load_wine

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# A bound so that a stuck server fails the test instead of hanging it; not a speed check.
HTTP_TIMEOUT_S = 120.0

CIFAR_SAMPLES = 32
CIFAR_PER_CLASS = 20
# Images per request (at most 64) and per offline pass: small passes run fastest on a CPU.
CIFAR_CHUNK = 25
WINE_REQUEST_ROWS = 256  # 735 test rows in three requests, within max_instances (1024)


@pytest.fixture(scope="module")
def server(checkpoint_dir: Path) -> Iterator[str]:
    """The base URL of a ready server serving the checkpoints under test."""
    env = {
        "MODEL_REPOSITORY": str(checkpoint_dir),
        "MODELS": '["wine-bnn", "wine-gaussian", "cifar-bcnn"]',
        "CIFAR_BCNN__MAX_SAMPLES": str(CIFAR_SAMPLES),
        "WINE_BNN__MAX_WAIT_MS": "20",  # more company per batch for the concurrency test
        "LOG_LEVEL": "warning",
    }
    # A server that never gets ready raises ServerStartError carrying its output.
    with LiveServer(env, cwd=PROJECT_ROOT) as live:
        yield live.url


@pytest.fixture(scope="module")
def wine(data_dir: Path) -> WineSplit:
    return load_wine(data_dir)


def metric_samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = httpx.get(f"{url}/metrics", timeout=HTTP_TIMEOUT_S)
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def batches_of_several_requests(url: str, model: str) -> float:
    """Model passes that held more than one request, from the batch-requests histogram."""
    samples = metric_samples(url)

    def value(name: str, **labels: str) -> float:
        return samples.get((name, frozenset({"model": model, **labels}.items())), 0.0)

    return value("bayes_batch_requests_count") - value("bayes_batch_requests_bucket", le="1.0")


def flat(prediction: dict[str, Any]) -> dict[str, float]:
    """A wine prediction's numbers, the interval's bounds among them."""
    numbers = {key: value for key, value in prediction.items() if key != "interval"}
    return numbers | {f"interval.{key}": value for key, value in prediction["interval"].items()}


def assert_same_numbers(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """Each prediction's numbers equal to float rounding (relative 1e-5)."""
    assert len(got["predictions"]) == len(expected["predictions"])
    for one, other in zip(got["predictions"], expected["predictions"], strict=True):
        assert flat(one) == pytest.approx(flat(other), rel=1e-5)


# ---------------------------------------------------------------------------------------------
# Wine


@dataclass(frozen=True)
class WineRequest:
    rows: list[list[float]]
    samples: int
    level: float

    @property
    def params(self) -> dict[str, Any]:
        return {"model": "bnn", "samples": self.samples, "level": self.level}

    @property
    def body(self) -> dict[str, Any]:
        return {"instances": self.rows}


def mixed_requests(x: np.ndarray, count: int) -> list[WineRequest]:
    """``count`` requests of 1 to 3 distinct rows each, with a mix of samples and levels."""
    samples, levels = (10, 50, 100, 400), (0.5, 0.8, 0.9, 0.95, 0.99)
    return [
        WineRequest(
            rows=x[3 * i : 3 * i + 1 + i % 3].tolist(),
            samples=samples[i % len(samples)],
            level=levels[i % len(levels)],
        )
        for i in range(count)
    ]


async def send_concurrently(url: str, requests: Sequence[WineRequest]) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=url, timeout=HTTP_TIMEOUT_S) as client:
        responses = await asyncio.gather(
            *(client.post("/predict/wine", json=r.body, params=r.params) for r in requests)
        )
    for response in responses:
        assert response.status_code == 200, response.text
    return [response.json() for response in responses]


def test_concurrent_wine_requests_are_batched_and_answered_as_if_alone(
    server: str, wine: WineSplit
) -> None:
    requests = mixed_requests(wine.x_test, 64)
    shared_before = batches_of_several_requests(server, "wine-bnn")

    together = asyncio.run(send_concurrently(server, requests))

    assert batches_of_several_requests(server, "wine-bnn") > shared_before
    with httpx.Client(base_url=server, timeout=HTTP_TIMEOUT_S) as client:
        for request, answer in zip(requests, together, strict=True):
            alone = client.post("/predict/wine", json=request.body, params=request.params)
            assert alone.status_code == 200, alone.text
            assert (answer["samples"], answer["level"]) == (request.samples, request.level)
            assert_same_numbers(answer, alone.json())


def test_wine_test_set_over_http_meets_the_targets_and_the_manifest(
    server: str, wine: WineSplit, checkpoint_dir: Path
) -> None:
    predictions: list[dict[str, Any]] = []
    with httpx.Client(base_url=server, timeout=HTTP_TIMEOUT_S) as client:
        for start in range(0, len(wine.x_test), WINE_REQUEST_ROWS):
            rows = wine.x_test[start : start + WINE_REQUEST_ROWS].tolist()
            response = client.post(
                "/predict/wine", json={"instances": rows}, params={"model": "bnn"}
            )
            assert response.status_code == 200, response.text
            predictions.extend(response.json()["predictions"])
    assert len(predictions) == len(wine.y_test) == 735

    target = wine.y_test.astype(np.float64)
    mean = np.array([p["mean"] for p in predictions])
    lower = np.array([p["interval"]["lower"] for p in predictions])
    upper = np.array([p["interval"]["upper"] for p in predictions])
    rmse = float(np.sqrt(np.mean((mean - target) ** 2)))
    coverage = float(np.mean((lower <= target) & (target <= upper)))

    assert rmse <= 0.70
    assert 0.93 <= coverage <= 0.97
    recorded = json.loads((checkpoint_dir / "wine-bnn.json").read_text())["test_metrics"]
    assert rmse == pytest.approx(recorded["rmse"], abs=1e-4)
    assert coverage == pytest.approx(recorded["picp_95"], abs=1e-4)


# ---------------------------------------------------------------------------------------------
# CIFAR


def cifar_test_files(data_dir: Path) -> list[Path]:
    """The first images of each class, as ``load_cifar10(per_class=...)`` picks them."""
    folder = data_dir / "cifar10" / "test"
    return [
        path
        for name in CIFAR10_CLASSES
        for path in sorted((folder / name).glob("*.jpg"))[:CIFAR_PER_CLASS]
    ]


def served_cifar_predictions(url: str, files: Sequence[Path]) -> list[dict[str, Any]]:
    predictions: list[dict[str, Any]] = []
    with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_S) as client:
        for start in range(0, len(files), CIFAR_CHUNK):
            chunk = files[start : start + CIFAR_CHUNK]
            parts = [
                ("files", (f"{path.parent.name}-{path.name}", path.read_bytes(), "image/jpeg"))
                for path in chunk
            ]
            response = client.post("/predict/cifar", files=parts, params={"samples": CIFAR_SAMPLES})
            assert response.status_code == 200, response.text
            assert response.json()["samples"] == CIFAR_SAMPLES
            predictions.extend(response.json()["predictions"])
    assert [p["filename"] for p in predictions] == [f"{p.parent.name}-{p.name}" for p in files]
    return predictions


def offline_cifar_probabilities(checkpoint: Path, images: np.ndarray) -> np.ndarray:
    """The posterior predictive mean, as ``training.evaluate.evaluate_cifar`` computes it."""
    model = load_checkpoint(checkpoint)
    posterior = fixed_posterior(model, CIFAR_SAMPLES)
    return torch.cat(
        [
            class_probability_samples(model, to_model_input(chunk), posterior).mean(dim=0)
            for chunk in np.split(images, range(CIFAR_CHUNK, len(images), CIFAR_CHUNK))
        ]
    ).numpy()


def test_cifar_over_http_agrees_with_the_offline_posterior_predictive(
    server: str, data_dir: Path, checkpoint_dir: Path
) -> None:
    files = cifar_test_files(data_dir)
    test = load_cifar10("test", data_dir, per_class=CIFAR_PER_CLASS)
    assert test.labels.tolist() == [CIFAR10_CLASSES.index(path.parent.name) for path in files]
    # The server works on its answers while this process computes its own.
    with ThreadPoolExecutor(max_workers=1) as client:
        answers = client.submit(served_cifar_predictions, server, files)
        offline = offline_cifar_probabilities(
            checkpoint_dir / "cifar-bcnn.safetensors", test.images
        )
        served = answers.result()
    served_probabilities = np.array(
        [[p["probabilities"][c] for c in CIFAR10_CLASSES] for p in served]
    )
    served_labels = np.array([p["class_index"] for p in served])

    np.testing.assert_allclose(served_probabilities, offline, rtol=0, atol=1e-4)
    served_accuracy = float(np.mean(served_labels == test.labels))
    offline_accuracy = float(np.mean(offline.argmax(axis=1) == test.labels))
    assert served_accuracy == offline_accuracy
