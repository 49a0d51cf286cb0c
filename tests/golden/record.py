"""Record the service's answers for fixed inputs: ``python -m tests.golden.record``.

The answers of the service as it was before the model repository (50 wine test rows for both
wine models, 20 CIFAR-10 test images) were recorded with this script and committed beside it;
``tests/test_golden.py`` checks that the service still gives the same numbers. It talks HTTP
only, to a real server started on a free port, so it runs unchanged against any version of the
service that speaks ``../shared/API.md``. Rerun it only when a change of the numbers is meant.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import httpx

from service.live_server import LiveServer
from training.datasets.cifar import CIFAR10_CLASSES
from training.datasets.location import resolve_data_dir

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parents[1]
IMAGES = HERE / "images"
ANSWERS = HERE / "answers.json"
WINE_ROWS = 50
IMAGES_PER_CLASS = 2
# (route, query) pairs; each is sent as one request holding every input.
WINE_QUERIES: tuple[dict[str, Any], ...] = (
    {"model": "bnn"},
    {"model": "bnn", "samples": 7, "level": 0.5},
    {"model": "gaussian"},
)
CIFAR_QUERIES: tuple[dict[str, Any], ...] = ({}, {"samples": 8, "level": 0.8})


def wine_test_rows() -> list[list[float]]:
    """The first test rows of the notebook's split, as float32 values written as JSON floats."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    folder = resolve_data_dir() / "wine"
    x = np.load(folder / "X_data.npy").astype(np.float32)
    y = np.load(folder / "y_data.npy").astype(np.float32).reshape(-1)
    _, x_test, _, _ = train_test_split(x, y, test_size=0.15, random_state=42)
    return [[float(v) for v in row] for row in x_test[:WINE_ROWS]]


def copy_images() -> list[Path]:
    IMAGES.mkdir(exist_ok=True)
    paths = []
    source = resolve_data_dir() / "cifar10" / "test"
    for name in CIFAR10_CLASSES:
        for index in range(IMAGES_PER_CLASS):
            target = IMAGES / f"{name}-{index:04d}.jpg"
            shutil.copyfile(source / name / f"{index:04d}.jpg", target)
            paths.append(target)
    return paths


def main() -> None:
    rows = wine_test_rows()
    images = copy_images()
    answers: dict[str, Any] = {"wine_rows": rows, "images": [p.name for p in images], "wine": []}
    answers["cifar_multipart"], answers["cifar_json"] = [], []
    with LiveServer(cwd=PROJECT_ROOT) as server, httpx.Client(base_url=server.url) as client:
        for query in WINE_QUERIES:
            response = client.post("/predict/wine", params=query, json={"instances": rows})
            response.raise_for_status()
            answers["wine"].append({"query": query, "response": response.json()})
        for query in CIFAR_QUERIES:
            files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in images]
            response = client.post("/predict/cifar", params=query, files=files)
            response.raise_for_status()
            answers["cifar_multipart"].append({"query": query, "response": response.json()})
            encoded = [base64.b64encode(p.read_bytes()).decode() for p in images]
            body = {"instances": [{"b64": b64} for b64 in encoded]}
            response = client.post("/predict/cifar", params=query, json=body)
            response.raise_for_status()
            answers["cifar_json"].append({"query": query, "response": response.json()})
    ANSWERS.write_text(json.dumps(answers, indent=1) + "\n")
    print(f"wrote {ANSWERS.relative_to(PROJECT_ROOT)} and {len(images)} images")


if __name__ == "__main__":
    main()
