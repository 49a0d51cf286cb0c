"""The request bodies the load generators send, written to files they can read.

Tabular: one instance, the example ``GET /models`` shows for the model (a single-row request
is the common case and the one batching exists for), for ``/predict`` and as the Open
Inference Protocol's inference request (the same row as an FP32 [1, F] tensor). CIFAR: a
multipart upload of real test-split JPEGs, the files the in-process reference decodes too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from models.checkpoint import load_checkpoint
from service.tasks import TASKS
from training.datasets.cifar import CIFAR10_CLASSES
from training.datasets.location import resolve_data_dir

BOUNDARY = "bench-boundary-7d1f0c2a9e"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


@dataclass(frozen=True)
class Body:
    path: Path
    content_type: str
    instances: int  # rows or images per request


def tabular_body(folder: Path, checkpoint: Path) -> Body:
    """One instance of the tabular model in ``checkpoint``, by feature name."""
    model = load_checkpoint(checkpoint)
    example = TASKS[model.task](model).describe()["input"]["example"]
    path = folder / f"{checkpoint.stem}.json"
    path.write_text(json.dumps(example))
    return Body(path, "application/json", 1)


def v2_tabular_body(folder: Path, checkpoint: Path, samples: int) -> Body:
    """The same instance as :func:`tabular_body`, as a v2 inference request (JSON tensors)."""
    model = load_checkpoint(checkpoint)
    task = TASKS[model.task](model)
    example = task.describe()["input"]["example"]
    (tensor,) = task.tensor_inputs()
    request = {
        "parameters": {"samples": samples},
        "inputs": [
            {
                "name": tensor.name,
                "datatype": tensor.datatype,
                "shape": [1, len(example)],
                "data": list(example.values()),
            }
        ],
    }
    path = folder / f"{checkpoint.stem}.v2.json"
    path.write_text(json.dumps(request))
    return Body(path, "application/json", 1)


def cifar_files(count: int, data_dir: Path | None = None) -> list[Path]:
    """``count`` test-split JPEGs, round-robin over the classes (0000.jpg of each first).

    The HTTP benchmark uploads the first few; the in-process reference decodes the same list.
    """
    root = resolve_data_dir(data_dir) / "cifar10" / "test"
    per_class = [sorted((root / name).glob("*.jpg")) for name in CIFAR10_CLASSES]
    files = [per_class[i % len(per_class)][i // len(per_class)] for i in range(count)]
    if not files:
        raise FileNotFoundError(f"no CIFAR-10 test JPEGs under {root}")
    return files


def cifar_body(folder: Path, files: list[Path]) -> Body:
    """multipart/form-data with one ``files`` part per image."""
    path = folder / "cifar.multipart"
    path.write_bytes(
        multipart([(f"{file.parent.name}-{file.name}", file.read_bytes()) for file in files])
    )
    return Body(path, MULTIPART, len(files))


def multipart(files: list[tuple[str, bytes]]) -> bytes:
    """A :data:`MULTIPART` body with one ``files`` part per ``(filename, data)``."""
    parts = []
    for name, data in files:
        head = (
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="files"; filename="{name}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
