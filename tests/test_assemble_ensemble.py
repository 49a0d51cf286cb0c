"""Networks trained apart, assembled into one ensemble, are the ensemble trained in one run."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from safetensors.torch import load_file

from models.checkpoint import file_sha256, read_manifest
from tests.test_resume import write_images, write_table
from training import assemble_ensemble, train_images, train_tabular
from training.assemble_ensemble import AssemblyError, portable_command

IMAGE_ARGS = ["--epochs", "2", "--batch-size", "4", "--image-size", "24", "--samples", "4"]


def test_members_trained_apart_make_the_ensemble_trained_at_once(tmp_path: Path) -> None:
    folder = write_images(tmp_path / "images")
    common = ["--data", str(folder), *IMAGE_ARGS, "--output-dir", str(tmp_path), "--no-progress"]
    # Member k of `--members K` is the network of seed k: train seeds 0 and 1 apart...
    for seed in (0, 1):
        train_images.main([*common, "--name", f"seed{seed}", "--seed", str(seed)])
    members = [tmp_path / f"seed{seed}.safetensors" for seed in (0, 1)]
    output = tmp_path / "joined-ensemble.safetensors"
    metrics = assemble_ensemble.main(
        [*map(str, members), "--output", str(output), "--images", str(folder)]
    )
    # ... and both at once.
    at_once = train_images.main([*common, "--name", "once", "--members", "2"])

    joined, once = load_file(str(output)), load_file(str(tmp_path / "once.safetensors"))
    assert joined.keys() == once.keys()
    assert all((joined[name] == once[name]).all() for name in once)
    assert metrics == pytest.approx(at_once, rel=1e-6)

    manifest = read_manifest(output)
    assert manifest["sha256"] == file_sha256(output)
    assert manifest["kind"] == "bayesian-cnn-ensemble" and manifest["name"] == "joined-ensemble"
    assert manifest["test_metrics"] == pytest.approx(at_once, rel=1e-6)
    assert manifest["data"] == read_manifest(members[0])["data"]
    assert manifest["thresholds"]["epistemic_nats"] == pytest.approx(
        read_manifest(tmp_path / "once.safetensors")["thresholds"]["epistemic_nats"], rel=1e-6
    )
    recorded = manifest["training"]["members"]
    assert [m["name"] for m in recorded] == ["seed0", "seed1"]
    assert [m["sha256"] for m in recorded] == [file_sha256(m) for m in members]
    assert [m["training"]["seed"] for m in recorded] == [0, 1]
    # No folder of this machine in the manifest: the members' and the ensemble's commands
    # name files only.
    text = json.dumps(manifest)
    assert str(tmp_path) not in text
    assert "seed0.safetensors" in manifest["command"]


def test_members_of_other_data_or_settings_are_refused(tmp_path: Path) -> None:
    folder = write_images(tmp_path / "images")
    common = ["--data", str(folder), "--output-dir", str(tmp_path), "--no-progress"]
    train_images.main([*common, *IMAGE_ARGS, "--name", "a"])
    train_images.main([*common, *IMAGE_ARGS[2:], "--epochs", "1", "--name", "small"])
    train_images.main([*common, *IMAGE_ARGS, "--image-size", "28", "--name", "wide"])
    other = write_images(tmp_path / "other")
    (other / "train" / "dark" / "0.png").unlink()
    train_images.main(
        ["--data", str(other), *IMAGE_ARGS, "--output-dir", str(tmp_path), "--name", "other"]
    )

    def assemble(*names: str) -> None:
        paths = [str(tmp_path / f"{name}.safetensors") for name in names]
        out = str(tmp_path / "out.safetensors")
        assemble_ensemble.main([*paths, "--output", out, "--images", str(folder)])

    assemble("a", "small")  # another number of epochs: the same network, trained longer
    with pytest.raises(AssemblyError, match="share their kind and configuration"):
        assemble("a", "wide")
    with pytest.raises(AssemblyError, match="other data"):
        assemble("a", "other")
    with pytest.raises(SystemExit):  # an ensemble of one, or over one of its members
        assemble("a")


def test_tabular_networks_standardised_apart_are_refused_with_the_way_out(
    tmp_path: Path,
) -> None:
    csv = write_table(tmp_path / "t.csv")
    common = ["--csv", str(csv), "--target", "y", "--epochs", "2", "--hidden", "8"]
    common += ["--output-dir", str(tmp_path), "--no-progress"]
    for seed in (0, 1):
        train_tabular.main([*common, "--name", f"t{seed}", "--seed", str(seed)])
    paths = [str(tmp_path / f"t{seed}.safetensors") for seed in (0, 1)]
    with pytest.raises(AssemblyError, match=r"same training rows.*with --members K"):
        assemble_ensemble.main([*paths, "--output", str(tmp_path / "t.safetensors")])


def test_portable_commands_name_files_not_folders() -> None:
    command = "python -m training.train_cifar --seed 1 --output /home/me/runs/s1.safetensors"
    assert shlex.split(portable_command(command))[-1] == "s1.safetensors"
    assert portable_command("x --data-dir=/data/cifar --lr 0.1") == "x --data-dir=cifar --lr 0.1"
    assert portable_command("x --csv rel/t.csv") == "x --csv rel/t.csv"
