"""Model level: the service's vectorised S-draw predictor against the notebook's way.

The reference notebook's ``compute_predictions`` takes one row at a time and runs S separate
forward passes, each drawing fresh weights (a Bayesian layer in eval mode without a
posterior). The service's predictor stacks a batch and runs S fixed draws in one vectorised
pass, summaries (mean, mixture interval, uncertainty split) included. Both run here, in one
process, on one device, with the same torch threads, each for a fixed time budget; the claim
is the ratio of their rows (or images) per second.

The notebook loop is given every advantage: inputs already on the device as tensors, no
DataLoader, ``torch.no_grad()`` (the notebook tracks gradients) and no summaries. The ratio
is therefore a lower bound.

Without the data sets (a lent GPU machine has no ../shared/data), inputs are synthetic:
wine rows drawn around the model's own standardisation, random images. Speed does not
depend on the values; the report says which inputs were used.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.bodies import cifar_files
from bench.checkpoints import DEFAULT_DIR, checkpoint_dir
from models.checkpoint import load_checkpoint
from models.device import resolve_device, use_exact_float32
from models.images import decode_image, to_model_input
from service.predictors import ClassificationPredictor, Job, Predictor, RegressionPredictor
from training.datasets.location import resolve_data_dir
from training.datasets.wine import load_wine

LEVEL = 0.95


@dataclass(frozen=True)
class Case:
    model: str  # checkpoint name without suffix
    samples: int


CASES = (Case("wine-bnn", 20), Case("wine-bnn", 100), Case("cifar-bcnn", 32))


@dataclass(frozen=True)
class ModelFigure:
    model: str
    samples: int
    batch: int  # rows per predictor call
    vectorised_per_s: float
    notebook_per_s: float
    notebook_rows: int  # rows the per-row loop got through in its budget
    ratio: float
    device: str
    threads: int


def per_second(step: Callable[[], int], budget_s: float) -> tuple[float, int]:
    """Rows/s of ``step`` (which returns the rows it did) over ``budget_s``, after a warm-up."""
    step()
    rows, start = 0, time.perf_counter()
    while True:
        rows += step()
        elapsed = time.perf_counter() - start
        if elapsed >= budget_s:
            return rows / elapsed, rows


def notebook_step(
    model: nn.Module, rows: list[torch.Tensor], samples: int, classify: bool
) -> Callable[[], int]:
    """One row (a batch of one) per call: S forward passes, each with fresh weights."""
    position = 0

    def step() -> int:
        nonlocal position
        x = rows[position % len(rows)]
        position += 1
        outputs = []
        with torch.no_grad():
            for _ in range(samples):
                if classify:
                    outputs.append(torch.softmax(model(x), dim=-1)[0].cpu().numpy())
                else:
                    mu, _ = model(x)
                    outputs.append(mu[0].item())
        return 1

    return step


def vectorised_step(
    predictor: Predictor[object], inputs: np.ndarray, samples: int
) -> Callable[[], int]:
    def step() -> int:
        predictor([Job(inputs, samples, LEVEL)])
        return len(inputs)

    return step


def has_data() -> bool:
    root = resolve_data_dir()
    return (root / "wine").is_dir() and (root / "cifar10" / "test").is_dir()


def wine_inputs(model: nn.Module, synthetic: bool) -> np.ndarray:
    """The wine test split (735 rows), or as many rows drawn around the training mean."""
    if not synthetic:
        return load_wine().x_test
    mean, scale = model.standardize.mean.cpu(), model.standardize.scale.cpu()
    generator = torch.Generator().manual_seed(0)
    return (mean + scale * torch.randn(735, len(mean), generator=generator)).numpy()


def cifar_inputs(count: int, synthetic: bool) -> np.ndarray:
    """The JPEGs the HTTP benchmark uploads and more, decoded as the service does; or noise."""
    if synthetic:
        return np.random.default_rng(0).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    return np.stack([decode_image(path.read_bytes()) for path in cifar_files(count)])


def measure(
    case: Case,
    folder: Path,
    device: torch.device,
    args: argparse.Namespace,
    synthetic: bool,
) -> ModelFigure:
    model = load_checkpoint(folder / f"{case.model}.safetensors", device)
    classify = case.model.startswith("cifar")
    if classify:
        inputs = cifar_inputs(args.cifar_batch, synthetic)
        predictor: Predictor[object] = ClassificationPredictor(model, max_samples=case.samples)
        rows = [to_model_input(image[None]).to(device) for image in inputs]
    else:
        inputs = wine_inputs(model, synthetic)
        predictor = RegressionPredictor(model, max_samples=case.samples)
        rows = [torch.from_numpy(row[None]).to(device) for row in inputs]
    fast, _ = per_second(vectorised_step(predictor, inputs, case.samples), args.duration)
    slow, done = per_second(notebook_step(model, rows, case.samples, classify), args.duration)
    return ModelFigure(
        case.model,
        case.samples,
        len(inputs),
        fast,
        slow,
        done,
        fast / slow,
        str(device),
        args.threads,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, for both ways")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--cifar-batch", type=int, default=64, help="images per predictor call")
    parser.add_argument("--checkpoint-dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--synthetic", action="store_true", help="random inputs, not the data")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[ModelFigure]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if device.type == "cuda":
        use_exact_float32()  # as the service does
    synthetic = args.synthetic or not has_data()
    checkpoints = checkpoint_dir(args.checkpoint_dir)
    figures = [measure(case, checkpoints, device, args, synthetic) for case in CASES]
    inputs = "test-split inputs"
    if synthetic:
        inputs = "synthetic inputs" + ("" if args.synthetic else " (no data sets found)")
    print(f"device {device}, torch threads {args.threads}, {args.duration:g} s per way, {inputs}")
    header = ("model", "S", "batch", "vectorised/s", "notebook/s", "ratio")
    print("{:<11} {:>4} {:>5} {:>13} {:>11} {:>8}".format(*header))
    for f in figures:
        print(
            f"{f.model:<11} {f.samples:>4} {f.batch:>5} {f.vectorised_per_s:>13,.0f} "
            f"{f.notebook_per_s:>11,.1f} {f.ratio:>7,.1f}×"
        )
    if args.json:
        report = {
            "figures": [asdict(f) for f in figures],
            "inputs": inputs,
        }
        if device.type == "cuda":
            report["card"] = torch.cuda.get_device_name(device)
        args.json.write_text(json.dumps(report, indent=2))
    return figures


if __name__ == "__main__":
    main()
