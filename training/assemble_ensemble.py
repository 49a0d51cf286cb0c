"""Assemble trained networks into one ensemble checkpoint: ``python -m training.assemble_ensemble``.

``train_* --members K`` trains K networks one after the other on one machine. The members of
an ensemble are independent, though, so they can as well be trained apart: on several
machines at once, at different times, or one of them already in the repository. This joins
such networks (checkpoints of one kind and configuration, trained on the same data) into one
ensemble checkpoint, scores it on the test split as training does, and writes its manifest,
which records each member: its name, sha256, training command, settings and test metrics.

    python -m training.assemble_ensemble checkpoints/cifar-bcnn.safetensors \\
        seed1.safetensors seed2.safetensors seed3.safetensors \\
        --output checkpoints/cifar-bcnn-ensemble.safetensors

Members standardise their inputs alike or not at all: tabular networks trained apart fit their
standardisation on their own rows and are refused (``train_tabular --members`` trains those).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path, PurePath
from typing import Any

from models.checkpoint import CheckpointError, load_checkpoint, read_manifest, save_checkpoint
from models.device import resolve_device
from models.ensemble import ENSEMBLE_SUFFIX, Ensemble
from models.images import ImageDecodeError
from training.cli import run_script
from training.datasets.location import DataNotFoundError
from training.datasets.table import TableError
from training.evaluate import THRESHOLDS_KEY, add_test_data_options, score_on_test_split
from training.manifest import training_command, write_manifest, written

# What the ensemble's manifest keeps of each member's own manifest.
MEMBER_RECORD = ("name", "sha256", "command", "test_metrics", "training")


class AssemblyError(Exception):
    """The networks cannot form one ensemble (kinds, configurations or data differ)."""


def portable_command(command: str) -> str:
    """``command`` with every absolute path cut to its file name: a manifest names no folder
    of the machine that trained a member (``/home/me/x.safetensors`` → ``x.safetensors``)."""

    def portable(word: str) -> str:
        option, equals, value = word.partition("=")
        if equals and value.startswith("/"):
            return f"{option}={PurePath(value).name}"
        return PurePath(word).name if word.startswith("/") else word

    return shlex.join(portable(word) for word in shlex.split(command))


def member_record(manifest: dict[str, Any]) -> dict[str, Any]:
    record = {key: manifest[key] for key in MEMBER_RECORD if key in manifest}
    if "command" in record:
        record["command"] = portable_command(record["command"])
    return record


def shared_data(manifests: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """The data every member was trained on (its manifest's ``data``): one ensemble, one
    data set, or its test metrics would score some members on their training rows."""
    first = manifests[0].get("data")
    for name, manifest in zip(names[1:], manifests[1:], strict=True):
        if manifest.get("data") != first:
            raise AssemblyError(
                f"{name} was trained on other data than {names[0]} (their manifests' data "
                "differ): an ensemble's members share their training and test rows"
            )
    if first is None:
        raise AssemblyError(f"{names[0]}'s manifest records no data")
    return first


def main(argv: list[str] | None = None) -> dict[str, float | None]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("members", type=Path, nargs="+", help="the networks' checkpoints")
    parser.add_argument(
        "--output",
        type=Path,
        required=True,
        help=f"the ensemble's checkpoint, by convention NAME{ENSEMBLE_SUFFIX}.safetensors",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=None,
        help="posterior samples for the test metrics (default: the first member's)",
    )
    parser.add_argument("--device", default="auto")
    add_test_data_options(parser)
    args = parser.parse_args(argv)
    if len(args.members) < 2:
        parser.error("an ensemble needs at least two members")
    if args.output.resolve() in {member.resolve() for member in args.members}:
        parser.error("--output would overwrite one of the members")

    device = resolve_device(args.device)
    names = [member.name for member in args.members]
    manifests = [read_manifest(member) for member in args.members]
    networks = [load_checkpoint(member, device) for member in args.members]
    for name, network in zip(names[1:], networks[1:], strict=True):
        if (network.kind, network.config) != (networks[0].kind, networks[0].config):
            raise AssemblyError(
                f"{name} is a {network.kind} of {network.config}, {names[0]} a "
                f"{networks[0].kind} of {networks[0].config}: an ensemble's members share "
                "their kind and configuration"
            )
    data = shared_data(manifests, names)  # before the standardisations, which follow from it
    try:
        model = Ensemble.of(networks)
    except ValueError as exc:  # standardised apart: tabular networks fit it on their own rows
        raise AssemblyError(
            f"{', '.join(names)}: {exc}; train such members together instead, with --members K"
        ) from None

    sha256 = save_checkpoint(model, args.output)
    samples = args.samples or int(manifests[0].get("test_metrics", {}).get("samples", 32))
    metrics, thresholds = score_on_test_split(model, args.output, args, samples=samples)
    command = portable_command(training_command("training.assemble_ensemble", argv))
    if thresholds is not None:
        thresholds = {**thresholds, "command": command}
    write_manifest(
        args.output,
        model=model,
        command=command,
        data=data,
        metrics=metrics,
        training={
            "members": [member_record(manifest) for manifest in manifests],
            "config": model.config,
        },
        **({THRESHOLDS_KEY: thresholds} if thresholds is not None else {}),
    )
    print(written(args.output, sha256, metrics))
    return metrics


if __name__ == "__main__":
    run_script(
        main,
        (AssemblyError, CheckpointError, DataNotFoundError, ImageDecodeError, TableError),
    )
