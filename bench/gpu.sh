#!/usr/bin/env bash
# The model-level benchmark on CUDA, in one go, for a lent GPU machine:
#
#   bash bench/gpu.sh [extra bench.model_level options]
#
# Writes the card, the versions and the figures to $OUT when it is set (the lent machine's
# folder that comes back), else to bench/gpu-results/. Python: $PYTHON if set; else .venv
# if its torch sees CUDA; else python3 if its torch does (the GPU image's); else it builds
# .venv with `make venv` (that needs the package registries). Without ../shared/data the
# inputs are synthetic, which times the same; the output says which were used.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${OUT:-bench/gpu-results}"
mkdir -p "$out"

sees_cuda() {
  "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null
}

python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x .venv/bin/python ]] && sees_cuda .venv/bin/python; then
    python=.venv/bin/python
  elif command -v python3 >/dev/null && sees_cuda python3; then
    python=python3
  else
    make venv
    python=.venv/bin/python
  fi
fi

{
  nvidia-smi --query-gpu=name,memory.total --format=csv
  "$python" -c 'import platform, torch
print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}")'
  date -u '+%Y-%m-%d %H:%M UTC'
} | tee "$out/gpu.txt"

PYTHONUNBUFFERED=1 "$python" -m bench.model_level \
  --device cuda --duration 3 --cifar-batch 256 --json "$out/model_level_cuda.json" "$@" \
  | tee "$out/model_level_cuda.txt"
