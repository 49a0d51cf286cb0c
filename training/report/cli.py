"""``python -m training.report``: score the repository's models, draw the figures, write the
report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from models.checkpoint import ServableModel, load_checkpoint, read_manifest, verify_checkpoint
from models.device import resolve_device
from models.predictive import member_count
from training.cli import DEFAULT_REPOSITORY
from training.datasets.cifar import load_cifar10
from training.datasets.location import DATA_DIR_ENV
from training.datasets.wine import load_wine
from training.manifest import training_command
from training.report.document import write_readme
from training.report.evaluation import (
    NOTES_FILE,
    TASKS,
    CifarResult,
    WineResult,
    evaluate_cifar_model,
    evaluate_wine_model,
)
from training.report.ood import digit_images
from training.report.plots import (
    plot_cifar_ood,
    plot_cifar_refusal,
    plot_cifar_reliability,
    plot_cifar_shift,
    plot_wine_calibration,
    plot_wine_error_vs_std,
    plot_wine_pit,
    plot_wine_shift,
)
from training.report.repository import check_cifar_model, check_wine_model, family_models
from training.report.targets import (
    Check,
    cifar_checks,
    misses_by_model,
    unchecked_models,
    wine_checks,
)

# ---------------------------------------------------------------------------- main


def _checkpoint_info(path: Path, model: ServableModel, samples: int) -> dict[str, Any]:
    return {
        "kind": model.kind,
        "members": member_count(model),
        "file": path.name,
        "sha256": verify_checkpoint(path),
        "samples": samples,
        "command": read_manifest(path).get("command", "?"),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.report",
        description="Write the calibration and shift report of the repository's models: PNG "
        "plots, README.md with every number beside its target, and metrics.json. Every wine-* "
        "model is scored on the wine split, every cifar-* model on the CIFAR-10 test images.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--repository",
        type=Path,
        default=DEFAULT_REPOSITORY,
        help="the model repository: NAME.safetensors checkpoints with NAME.json manifests",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"data folder; None: ${DATA_DIR_ENV}, else ../shared/data",
    )
    parser.add_argument("--output", type=Path, default=Path("reports"), help="report folder")
    parser.add_argument(
        "--tasks", nargs="+", choices=TASKS, default=list(TASKS), help="which parts to run"
    )
    parser.add_argument("--wine-samples", type=int, default=100, help="posterior samples, wine")
    parser.add_argument("--cifar-samples", type=int, default=32, help="posterior samples, CIFAR")
    parser.add_argument(
        "--cifar-per-class",
        type=int,
        default=None,
        help="CIFAR test images per class; None: all 1000",
    )
    parser.add_argument(
        "--shift-images", type=int, default=1000, help="CIFAR test images in the corruption sweep"
    )
    parser.add_argument(
        "--ood-images",
        type=int,
        default=None,
        help="far out-of-distribution digit images (a seeded subset); None: all 1,797",
    )
    parser.add_argument("--batch-size", type=int, default=100, help="images per forward pass")
    parser.add_argument("--seed", type=int, default=0, help="shift subset and corruption noise")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cuda or cpu")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Score the repository's models, write the plots, ``README.md`` and ``metrics.json``."""
    args = build_parser().parse_args(argv)
    progress = not args.no_progress
    device = resolve_device(args.device)
    # Before any scoring: a part with nothing to score is an error, not an empty section.
    parts = {part: family_models(args.repository, part) for part in args.tasks}
    output: Path = args.output
    output.mkdir(parents=True, exist_ok=True)
    command = training_command("training.report", argv)
    checkpoints: dict[str, dict[str, Any]] = {}
    checks: list[Check] = []
    unchecked: list[str] = []  # models with targets the repository does not hold
    wine: dict[str, WineResult] | None = None
    cifar: dict[str, CifarResult] | None = None

    if "wine" in parts:
        split = load_wine(args.data_dir)
        wine = {}
        for name, path in tqdm(parts["wine"].items(), desc="wine", disable=not progress):
            model = check_wine_model(name, load_checkpoint(path, device))
            wine[name] = evaluate_wine_model(name, model, split, samples=args.wine_samples)
            checkpoints[name] = _checkpoint_info(path, model, wine[name].samples)
        plot_wine_calibration(wine, output / "wine_calibration.png")
        plot_wine_pit(wine, output / "wine_pit.png")
        plot_wine_error_vs_std(wine, output / "wine_error_vs_std.png")
        plot_wine_shift(wine, output / "wine_shift.png")
        checks += wine_checks(wine)
        unchecked += unchecked_models("wine", wine)

    if "cifar" in parts:
        test = load_cifar10("test", args.data_dir, per_class=args.cifar_per_class)
        # The same digits for every model, as with the corrupted images.
        far_images, digits = digit_images(args.ood_images, seed=args.seed)
        cifar = {}
        for name, path in parts["cifar"].items():
            model = check_cifar_model(name, load_checkpoint(path, device))
            cifar[name] = evaluate_cifar_model(
                name,
                model,
                test,
                samples=args.cifar_samples,
                shift_images=args.shift_images,
                far_images=far_images,
                batch_size=args.batch_size,
                seed=args.seed,
                progress=progress,
            )
            checkpoints[name] = _checkpoint_info(path, model, cifar[name].samples)
        plot_cifar_reliability(cifar, output / "cifar_reliability.png")
        plot_cifar_refusal(cifar, output / "cifar_refusal.png")
        plot_cifar_shift(cifar, output / "cifar_shift.png")
        # One of each digit first, for the strip of examples.
        firsts = [int(np.flatnonzero(digits == d)[0]) for d in np.unique(digits)]
        plot_cifar_ood(cifar, far_images[firsts], output / "cifar_ood.png")
        checks += cifar_checks(cifar)
        unchecked += unchecked_models("cifar", cifar)

    notes_path = output / NOTES_FILE
    notes = notes_path.read_text() if notes_path.is_file() else None
    write_readme(
        output / "README.md",
        command=command,
        checkpoints=checkpoints,
        checks=checks,
        unchecked=unchecked,
        wine=wine,
        cifar=cifar,
        notes=notes,
        device=str(device),
    )
    metrics: dict[str, Any] = {
        "command": command,
        "checkpoints": checkpoints,
        "checks": [vars(c) for c in checks],
        "misses": {
            model: [c.name for c in missed] for model, missed in misses_by_model(checks).items()
        },
        "unchecked": unchecked,
        "all_passed": all(c.passed for c in checks),
    }
    if wine is not None:
        metrics["wine"] = {name: r.to_json() for name, r in wine.items()}
    if cifar is not None:
        metrics["cifar"] = {name: r.to_json() for name, r in cifar.items()}
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    for check in checks:
        print(f"{'pass' if check.passed else 'MISS'}  {check.model} {check.name}: {check.value}")
    for name in unchecked:
        print(f"----  {name}: not in the repository, its targets unchecked")
    return metrics
