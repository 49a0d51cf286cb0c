"""Serve the reference notebook's pretrained CIFAR-10 model.

``python -m training.import_bayesiancnn model_3conv3fc_lrt_softplus.pt`` reads a
PyTorch-BayesianCNN BBB3Conv3FC state dict (tensors only, never unpickling code),
scores it on the test split and writes a checkpoint and manifest into the model
repository, where the service serves it under the file's stem
(``cifar-bcnn-imported`` by default).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from models.checkpoint import CheckpointError, file_sha256, save_checkpoint
from models.importer import load_bayesiancnn_file
from training.cli import run_script
from training.datasets.cifar import CIFAR10_CLASSES, load_cifar10
from training.datasets.location import DataNotFoundError, portable_source
from training.evaluate import evaluate_classification
from training.manifest import training_command, write_manifest, written


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="PyTorch-BayesianCNN .pt state dict")
    parser.add_argument(
        "--output", type=Path, default=Path("checkpoints/cifar-bcnn-imported.safetensors")
    )
    parser.add_argument("--prior-sigma", type=float, default=0.1, help="their prior's std")
    parser.add_argument("--samples", type=int, default=32, help="posterior samples for scoring")
    parser.add_argument("--test-per-class", type=int, default=None)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    model = load_bayesiancnn_file(
        args.source, classes=CIFAR10_CLASSES, prior_sigma=args.prior_sigma
    )
    sha256 = save_checkpoint(model, args.output)
    test = load_cifar10("test", args.data_dir, per_class=args.test_per_class)
    metrics = evaluate_classification(
        model, test.images, test.labels, samples=args.samples, progress=not args.no_progress
    )
    write_manifest(
        args.output,
        model=model,
        command=training_command("training.import_bayesiancnn", argv),
        data={
            "imported_from": {"file": args.source.name, "sha256": file_sha256(args.source)},
            "test": {
                "source": portable_source(test.source, args.data_dir),
                "rows": len(test.labels),
                "sha256": test.fingerprint,
            },
        },
        metrics=metrics,
        training={"imported": "PyTorch-BayesianCNN BBB3Conv3FC", "config": model.config},
    )
    print(written(args.output, sha256, metrics))
    return metrics


if __name__ == "__main__":
    run_script(main, (CheckpointError, DataNotFoundError))
