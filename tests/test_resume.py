"""Training that is stopped and rerun ends where training never stopped ends: the same tensors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from training import train_images, train_tabular
from training.resume import ResumeError, TrainingStates


def write_table(path: Path, rows: int = 120) -> Path:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(rows, 3))
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1] - x[:, 2] ** 2 / 4 + rng.normal(0, 0.2, rows)
    lines = ["u,v,w,y"] + [
        ",".join(f"{v:.6f}" for v in (*row, t)) for row, t in zip(x, y, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_images(folder: Path) -> Path:
    rng = np.random.default_rng(5)
    for split, count in (("train", 8), ("test", 4)):
        for name, level in (("bright", 200), ("dark", 40)):
            (folder / split / name).mkdir(parents=True)
            for index in range(count):
                pixels = np.clip(rng.normal(level, 20, (24, 24, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / split / name / f"{index}.png")
    return folder


class Stop(Exception):
    """Stands for the session that ends mid-run."""


def stopped_after(saves: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the run stop right after its ``saves``-th saved epoch."""
    save = TrainingStates.save
    count = [0]

    def save_then_stop(self: TrainingStates, member: int, state: Any) -> None:
        save(self, member, state)
        count[0] += 1
        if count[0] == saves:
            raise Stop

    monkeypatch.setattr(TrainingStates, "save", save_then_stop)


def same_checkpoints(a: Path, b: Path) -> None:
    first, second = load_file(str(a)), load_file(str(b))
    assert first.keys() == second.keys()
    for key in first:
        assert (first[key] == second[key]).all(), key
    metrics = [json.loads(p.with_suffix(".json").read_text())["test_metrics"] for p in (a, b)]
    assert metrics[0] == metrics[1]


def run_twice(
    train: Callable[[list[str]], Any],
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    stop_after: int,
) -> tuple[Path, Path]:
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    train([*argv, "--output-dir", str(whole)])
    with monkeypatch.context() as patch:
        stopped_after(stop_after, patch)
        with pytest.raises(Stop):
            train([*argv, "--output-dir", str(resumed)])
    assert (resumed / "m.training").is_dir()  # what the stopped run had done
    assert not (resumed / "m.safetensors").exists()
    train([*argv, "--output-dir", str(resumed)])  # the same command again: continues
    assert not (resumed / "m.training").exists()  # done: the state goes
    return whole / "m.safetensors", resumed / "m.safetensors"


def test_a_tabular_ensemble_stopped_mid_member_ends_as_if_never_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv = write_table(tmp_path / "t.csv")
    argv = ["--csv", str(csv), "--target", "y", "--name", "m", "--members", "2"]
    argv += ["--epochs", "6", "--hidden", "8", "--no-progress"]
    # Stopped in the second member's third epoch: the first member is done and saved.
    whole, resumed = run_twice(train_tabular.main, argv, tmp_path, monkeypatch, stop_after=9)
    same_checkpoints(whole, resumed)
    manifest = json.loads(whole.with_suffix(".json").read_text())
    assert manifest["kind"] == "tabular-bnn-ensemble"
    assert [m["seed"] for m in manifest["training"]["members"]] == [0, 1]


def test_an_image_ensemble_stopped_mid_member_ends_as_if_never_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_images(tmp_path / "images")
    argv = ["--data", str(folder), "--name", "m", "--members", "2", "--epochs", "3"]
    argv += ["--batch-size", "4", "--image-size", "24", "--samples", "2", "--no-progress"]
    whole, resumed = run_twice(train_images.main, argv, tmp_path, monkeypatch, stop_after=4)
    same_checkpoints(whole, resumed)
    manifest = json.loads(whole.with_suffix(".json").read_text())
    assert manifest["kind"] == "bayesian-cnn-ensemble"
    assert manifest["training"]["members"] == 2


def test_a_saved_state_of_other_settings_is_not_continued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv = write_table(tmp_path / "t.csv")
    argv = ["--csv", str(csv), "--target", "y", "--name", "m", "--epochs", "6", "--hidden", "8"]
    argv += ["--output-dir", str(tmp_path), "--no-progress"]
    with monkeypatch.context() as patch:
        stopped_after(2, patch)
        with pytest.raises(Stop):
            train_tabular.main(argv)
    with pytest.raises(ResumeError, match="other settings or data"):
        train_tabular.main([*argv, "--lr", "0.01"])
