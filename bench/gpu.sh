#!/usr/bin/env bash
# The benchmarks with the models on CUDA, in one go, for a lent GPU machine:
#
#   bash bench/gpu.sh [--quick]
#
# Runs `python -m bench.run --device cuda` (the model level on CUDA and, beside it, the HTTP
# level with the service's models on CUDA) when wrk is on PATH; without wrk, the model level
# alone. Writes the card, the versions, the table and RESULTS.md to $OUT when it is set (the
# lent machine's folder that comes back), else to bench/gpu-results/. Python: $PYTHON if set;
# else .venv if its torch sees CUDA and it has the service's packages (the model level times
# the service's own predictors, whose modules import FastAPI and pydantic); else python3 if
# it does (the GPU image's); else it builds .venv with `make venv` (that needs the package
# registries). Data: $BAYES_DATA_DIR or ../shared/data; without them the model level's inputs
# are synthetic, which times the same. Before the figures, where pytest is installed, the
# correctness tests with the models on CUDA (tests_cuda.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

out="${OUT:-bench/gpu-results}"
mkdir -p "$out"

usable() {
  "$1" -c 'import sys, torch, service.tasks; sys.exit(0 if torch.cuda.is_available() else 1)' \
    2>/dev/null
}

python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x .venv/bin/python ]] && usable .venv/bin/python; then
    python=.venv/bin/python
  elif command -v python3 >/dev/null && usable python3; then
    python=python3
  else
    make venv
    python=.venv/bin/python
  fi
fi

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$python" -c 'import platform, torch
print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}")'
  echo "cores: $(nproc)"
  date -u '+%Y-%m-%d %H:%M UTC'
} | tee "$out/gpu.txt"

export PYTHONUNBUFFERED=1
# Correctness with the models on CUDA: the golden answers, the wine test rows over HTTP against
# their manifest, answers independent of what shares a batch, the v2 routes, CUDA graphs against
# the eager pass (tests/test_graphs.py; the service's own start-up checks them too, and says
# in GET /models which way each model runs). Their output goes
# to $out; a failure there is a finding for RESULTS.md, not a reason to stop the figures below.
# First, and short (a minute or two): a run cut off by the lent machine's time limit still
# brings back the tests, and the figures measured so far in bench.txt.
if "$python" -m pytest --version >/dev/null 2>&1; then
  DEVICE=cuda "$python" -m pytest -q -p no:cacheprovider tests/test_golden.py \
    tests/test_server.py tests/test_api.py tests/test_mixture.py tests/test_v2.py \
    tests/test_graphs.py \
    2>&1 | tee "$out/tests_cuda.txt" || true
else
  echo "pytest is not installed: no correctness run on CUDA" | tee -a "$out/gpu.txt"
fi

# CIFAR over HTTP on several worker processes too, where there are cores for them (the image's
# WORKERS): one process parses every upload on its one event loop. About 40 s more.
cores=$(nproc)
workers=$(( cores >= 8 ? cores / 4 : 1 ))
if command -v wrk >/dev/null; then
  "$python" -m bench.run --device cuda --output "$out/RESULTS.md" --cifar-workers "$workers" \
    --note "bash bench/gpu.sh on a lent GPU machine: models on CUDA" "$@" | tee "$out/bench.txt"
else
  echo "wrk is not on PATH: the model level alone" | tee -a "$out/gpu.txt"
  "$python" -m bench.model_level --device cuda --duration 3 --image-batch 64 \
    --json "$out/model_level_cuda.json" | tee "$out/model_level_cuda.txt"
fi
