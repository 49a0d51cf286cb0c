"""Model level: the service's vectorised S-draw predictor against the notebook's way.

The reference notebook's ``compute_predictions`` takes one row at a time and runs S separate
forward passes, each drawing fresh weights (a Bayesian layer in eval mode without a
posterior). The service's predictor stacks a batch and runs S fixed draws in one vectorised
pass, summaries (mean, mixture interval, uncertainty split) included. Both run here, in one
process, on one device, with the same torch threads and the service's malloc thresholds
(:mod:`service.allocator`), each for a fixed time budget; the claim
is the ratio of their rows (or images) per second.

The notebook loop is given every advantage: inputs already on the device as tensors, no
DataLoader, ``torch.no_grad()`` (the notebook tracks gradients) and no summaries. The ratio
is therefore a lower bound.

Every model of the repository with a posterior is timed (``--models`` picks some), at its
task kind's default S and, for a tabular model, also at S=20, where the target is stated; a
deterministic ensemble of K networks at no more than its K draws. An ensemble runs its S
draws in one vectorised pass as one network does, and the notebook's way for it runs draw s
on member s mod K. Each ensemble of :data:`bench.report.ENSEMBLE_PAIRS` is then timed again
against its single network, the two in alternating slices (:func:`measure_pair`). On CUDA
the wine model's predictor is also timed with its CUDA graphs against without
(:func:`measure_graphs`).
Inputs are the data a model takes: the wine test split for a model of the wine features,
CIFAR-10 test JPEGs for a classifier of its classes. Without the data sets (a lent GPU machine
has no ../shared/data), or for a model of other data, they are synthetic: rows drawn around
the model's own standardisation, random images. Speed does not depend on the values; each
figure says which inputs it used.
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
from bench.checkpoints import DEFAULT_DIR, WINE_MODEL, repository
from bench.report import ENSEMBLE_PAIRS, MODEL_TARGET_SAMPLES, EnsemblePair
from models.checkpoint import ServableModel, load_checkpoint
from models.cnn import BayesianCNN
from models.device import resolve_device, use_exact_float32
from models.ensemble import Ensemble
from models.images import decode_image, to_model_input
from models.predictive import draws_available, network_count
from models.tabular import TabularRegressor
from models.task import IMAGE_CLASSIFICATION, TABULAR_REGRESSION
from service.allocator import retain_freed_memory
from service.predictor import Job, Predictor
from service.tasks import TASKS
from training.datasets.cifar import CIFAR10_CLASSES
from training.datasets.location import resolve_data_dir
from training.datasets.wine import WINE_FEATURES, load_wine

LEVEL = 0.95
SYNTHETIC = "synthetic"
# An ensemble and its single network are timed in this many alternating slices each.
PAIR_ROUNDS = 5
# On CUDA, the wine model with and without graphs: a lone request's batch, and a c=32 one.
GRAPH_BATCHES = (1, 32)
IMAGE_BATCH = TASKS[IMAGE_CLASSIFICATION].defaults["max_batch_size"]


@dataclass(frozen=True)
class Case:
    model: str  # the model's name in the repository
    samples: int


@dataclass(frozen=True)
class PairFigure:
    """An ensemble's vectorised rows/s against its single network's, at equal S."""

    single: str
    ensemble: str
    task: str
    samples: int
    batch: int
    inputs: str
    single_per_s: float
    ensemble_per_s: float
    ratio: float  # ensemble over single
    rounds: int  # alternating slices each was timed in
    device: str
    threads: int


@dataclass(frozen=True)
class GraphsFigure:
    """A tabular model's predictor replaying CUDA graphs against the same predictor run
    eagerly, rows/s on a batch as the service forms them, at the model's default S."""

    model: str
    samples: int
    batch: int
    eager_per_s: float
    graphs_per_s: float
    ratio: float  # graphs over eager
    execution: str  # what capture gave: cuda-graphs, or eager where it fell back
    rounds: int
    device: str


@dataclass(frozen=True)
class ModelFigure:
    model: str
    task: str
    samples: int
    batch: int  # rows per predictor call
    inputs: str  # the data the rows came from, or "synthetic"
    vectorised_per_s: float
    notebook_per_s: float
    notebook_rows: int  # rows the per-row loop got through in its budget
    ratio: float
    device: str
    threads: int


def sample_counts(task: str) -> tuple[int, ...]:
    """The S a model of ``task`` is timed at: the default S it is served with, and for a
    tabular model also the S the model-level target is stated at."""
    default = TASKS[task].defaults["default_samples"]
    if task == TABULAR_REGRESSION:
        return tuple(sorted({MODEL_TARGET_SAMPLES, default}))
    return (default,)


def cases(models: dict[str, ServableModel]) -> list[Case]:
    """Tabular models first, then image models, each by name; models without a posterior
    are left out (one network: there are no S draws to vectorise), and a deterministic
    ensemble is timed at no more draws than it has networks."""
    order = {TABULAR_REGRESSION: 0, IMAGE_CLASSIFICATION: 1}
    timed = sorted(
        (name for name, model in models.items() if network_count(model) != 1),
        key=lambda name: (order.get(models[name].task, len(order)), name),
    )
    counts = {
        name: sorted({draws_available(models[name], s) for s in sample_counts(models[name].task)})
        for name in timed
    }
    return [Case(name, s) for name in timed for s in counts[name]]


def run_for(step: Callable[[], int], budget_s: float) -> tuple[int, float]:
    """Call ``step`` (which returns the rows it did) until ``budget_s`` has passed, at least
    once: the rows done and the seconds it took."""
    rows, start = 0, time.perf_counter()
    while True:
        rows += step()
        elapsed = time.perf_counter() - start
        if elapsed >= budget_s:
            return rows, elapsed


def per_second(step: Callable[[], int], budget_s: float) -> tuple[float, int]:
    """Rows/s of ``step`` (which returns the rows it did) over ``budget_s``, after a warm-up."""
    step()
    rows, elapsed = run_for(step, budget_s)
    return rows / elapsed, rows


def notebook_step(
    model: nn.Module, rows: list[torch.Tensor], samples: int, classify: bool
) -> Callable[[], int]:
    """One row (a batch of one) per call: S forward passes, each with fresh weights; for an
    ensemble pass s runs member s mod K (its own fresh weights, or its only ones)."""
    position = 0
    networks = list(model.members) if isinstance(model, Ensemble) else [model]

    def step() -> int:
        nonlocal position
        x = rows[position % len(rows)]
        position += 1
        outputs = []
        with torch.no_grad():
            for s in range(samples):
                network = networks[s % len(networks)]
                if classify:
                    outputs.append(torch.softmax(network(x), dim=-1)[0].cpu().numpy())
                else:
                    mu, _ = network(x)
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


def tabular_inputs(model: TabularRegressor | Ensemble, synthetic: bool) -> tuple[np.ndarray, str]:
    """The wine test split (735 rows), or as many rows drawn around the training mean."""
    if not synthetic and model.features == WINE_FEATURES and (resolve_data_dir() / "wine").is_dir():
        return load_wine().x_test, "wine test split"
    mean, scale = model.standardize.mean.cpu(), model.standardize.scale.cpu()
    generator = torch.Generator().manual_seed(0)
    rows = mean + scale * torch.randn(735, len(mean), generator=generator)
    return rows.numpy(), SYNTHETIC


def image_inputs(
    model: BayesianCNN | Ensemble, count: int, synthetic: bool
) -> tuple[np.ndarray, str]:
    """The JPEGs the HTTP benchmark uploads and more, decoded as the service does; or noise."""
    size = model.image_size
    cifar = resolve_data_dir() / "cifar10" / "test"
    if not synthetic and model.classes == CIFAR10_CLASSES and cifar.is_dir():
        images = [decode_image(path.read_bytes(), size) for path in cifar_files(count)]
        return np.stack(images), "CIFAR-10 test JPEGs"
    noise = np.random.default_rng(0).integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    return noise, SYNTHETIC


def model_inputs(model: ServableModel, args: argparse.Namespace) -> tuple[np.ndarray, str]:
    """The batch a model is timed on, and what it came from."""
    if model.task == IMAGE_CLASSIFICATION:
        assert isinstance(model, BayesianCNN | Ensemble)
        return image_inputs(model, args.image_batch, args.synthetic)
    assert isinstance(model, TabularRegressor | Ensemble)
    return tabular_inputs(model, args.synthetic)


def service_step(model: ServableModel, inputs: np.ndarray, samples: int) -> Callable[[], int]:
    """The service's own predictor for the model's task kind, on the whole batch."""
    predictor: Predictor[object] = TASKS[model.task](model).predictor(samples)
    return vectorised_step(predictor, inputs, samples)


def measure(
    case: Case,
    model: ServableModel,
    device: torch.device,
    args: argparse.Namespace,
) -> ModelFigure:
    model = model.to(device)
    classify = model.task == IMAGE_CLASSIFICATION
    inputs, source = model_inputs(model, args)
    if classify:
        rows = [to_model_input(image[None]).to(device) for image in inputs]
    else:
        rows = [torch.from_numpy(row[None]).to(device) for row in inputs]
    fast, _ = per_second(service_step(model, inputs, case.samples), args.duration)
    slow, done = per_second(notebook_step(model, rows, case.samples, classify), args.duration)
    return ModelFigure(
        case.model,
        model.task,
        case.samples,
        len(inputs),
        source,
        fast,
        slow,
        done,
        fast / slow,
        str(device),
        args.threads,
    )


def measure_pair(
    pair: EnsemblePair,
    single: ServableModel,
    ensemble: ServableModel,
    device: torch.device,
    args: argparse.Namespace,
) -> PairFigure:
    """The vectorised rows/s of ``ensemble`` and ``single`` on the same batch at the pair's
    S, timed in :data:`PAIR_ROUNDS` alternating slices of ``args.duration`` each: a change in
    the machine's load during the run falls on both alike, not on whichever ran second."""
    single, ensemble = single.to(device), ensemble.to(device)
    inputs, source = model_inputs(single, args)
    steps = [service_step(model, inputs, pair.samples) for model in (single, ensemble)]
    single_per_s, ensemble_per_s = alternating_rates(steps, args.duration)
    return PairFigure(
        pair.single,
        pair.ensemble,
        single.task,
        pair.samples,
        len(inputs),
        source,
        single_per_s,
        ensemble_per_s,
        ensemble_per_s / single_per_s,
        PAIR_ROUNDS,
        str(device),
        args.threads,
    )


def alternating_rates(steps: list[Callable[[], int]], duration_s: float) -> list[float]:
    """Rows/s of each step, timed in :data:`PAIR_ROUNDS` alternating slices of
    ``duration_s`` in all, after one warm-up call each."""
    for step in steps:
        step()
    rows, seconds = [0] * len(steps), [0.0] * len(steps)
    for _ in range(PAIR_ROUNDS):
        for i, step in enumerate(steps):
            done, elapsed = run_for(step, duration_s / PAIR_ROUNDS)
            rows[i] += done
            seconds[i] += elapsed
    return [r / t for r, t in zip(rows, seconds, strict=True)]


def measure_graphs(
    name: str, model: ServableModel, device: torch.device, args: argparse.Namespace
) -> list[GraphsFigure]:
    """The service's regression predictor with its CUDA graphs (:mod:`service.graphs`)
    against without, on one row and on :data:`GRAPH_BATCHES`' larger batch, in alternating
    slices. Off CUDA the predictor has no graphs and both run eagerly."""
    model = model.to(device)
    inputs, _ = model_inputs(model, args)
    task = TASKS[model.task]
    samples = draws_available(model, task.defaults["default_samples"])
    eager, graphed = (task(model).predictor(samples) for _ in range(2))
    execution = graphed.accelerate(
        inputs[:1], samples=samples, level=LEVEL, max_rows=max(GRAPH_BATCHES)
    )
    figures = []
    for batch in GRAPH_BATCHES:
        steps = [vectorised_step(p, inputs[:batch], samples) for p in (eager, graphed)]
        eager_per_s, graphs_per_s = alternating_rates(steps, args.duration)
        figures.append(
            GraphsFigure(
                name,
                samples,
                batch,
                eager_per_s,
                graphs_per_s,
                graphs_per_s / eager_per_s,
                execution,
                PAIR_ROUNDS,
                str(device),
            )
        )
    return figures


def pairs_to_time(models: dict[str, ServableModel]) -> list[EnsemblePair]:
    """The ensemble pairs both of whose models are among ``models``."""
    return [p for p in ENSEMBLE_PAIRS if p.single in models and p.ensemble in models]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, for both ways")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument(
        "--image-batch", type=int, default=IMAGE_BATCH, help="images per predictor call"
    )
    parser.add_argument("--repository", type=Path, default=DEFAULT_DIR, help="the models")
    parser.add_argument(
        "--models", nargs="+", help="names of the models to time; default: each with a posterior"
    )
    parser.add_argument("--synthetic", action="store_true", help="random inputs, not the data")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[ModelFigure]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if device.type == "cuda":
        use_exact_float32()  # as the service does
    retain_freed_memory()  # as the service's process does, and for the notebook's loop too
    found = repository(args.repository, args.models or ())
    names = args.models or list(found)
    models = {name: load_checkpoint(found[name]) for name in names}
    timed = cases(models)
    if not timed:
        raise SystemExit(f"no model with a posterior to time among {', '.join(names) or 'none'}")
    figures = [measure(case, models[case.model], device, args) for case in timed]
    print(f"device {device}, torch threads {args.threads}, {args.duration:g} s per way")
    width = max(len(f.model) for f in figures)
    print(
        f"{'model':<{width}} {'S':>4} {'batch':>5} {'vectorised/s':>13} {'notebook/s':>11} "
        f"{'ratio':>8}  inputs"
    )
    for f in figures:
        print(
            f"{f.model:<{width}} {f.samples:>4} {f.batch:>5} {f.vectorised_per_s:>13,.0f} "
            f"{f.notebook_per_s:>11,.1f} {f.ratio:>7,.1f}×  {f.inputs}"
        )
    pairs = [
        measure_pair(pair, models[pair.single], models[pair.ensemble], device, args)
        for pair in pairs_to_time(models)
    ]
    for p in pairs:
        print(
            f"{p.ensemble} / {p.single} S={p.samples}: {p.ensemble_per_s:,.0f} / "
            f"{p.single_per_s:,.0f} vectorised per s = {p.ratio:.2f} ({p.rounds} alternating "
            f"slices each)"
        )
    graphs = (
        measure_graphs(WINE_MODEL, models[WINE_MODEL], device, args)
        if device.type == "cuda" and WINE_MODEL in models
        else []
    )
    for g in graphs:
        print(
            f"{g.model} S={g.samples} batch {g.batch}: {g.graphs_per_s:,.0f} rows/s with CUDA "
            f"graphs ({g.execution}) / {g.eager_per_s:,.0f} eager = {g.ratio:.2f}"
        )
    if args.json:
        # What the repository held: a pair the report skips says whether its model was there.
        report: dict[str, object] = {
            "figures": [asdict(f) for f in figures],
            "pairs": [asdict(p) for p in pairs],
            "graphs": [asdict(g) for g in graphs],
            "repository": sorted(found),
        }
        if device.type == "cuda":
            report["card"] = torch.cuda.get_device_name(device)
        args.json.write_text(json.dumps(report, indent=2))
    return figures


if __name__ == "__main__":
    main()
