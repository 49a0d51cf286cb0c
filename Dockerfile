# syntax=docker/dockerfile:1
# bayes-serve: the uncertainty service, with its committed checkpoints baked in.
#
#   docker build -t bayes-serve:gpu .                          # CUDA (the default)
#   docker build -t bayes-serve:cpu --build-arg VARIANT=cpu .  # CPU only, a much smaller image
#
# docker-compose.yml builds and runs it; the README's "Run with Docker" says how.
# tests/test_docker.py lints this file with hadolint and checks it against the code: the
# start command, port, health-check route and every environment name it sets.

# gpu: torch as the official PyTorch CUDA runtime image ships it; cpu: the CPU wheel.
ARG VARIANT=gpu
# torch 2.13.0 (pyproject's pin) built for CUDA 13.0, which needs an NVIDIA driver >= 580. For
# an older driver (>= 525), the same torch built for CUDA 12.6:
#   --build-arg PYTORCH_IMAGE=pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime
ARG PYTORCH_IMAGE=pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- wheel: the project as a wheel, so no source tree or build tooling reaches the image.
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY models/ models/
COPY service/ service/
COPY training/ training/
COPY uncertainty/ uncertainty/
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---- torch-gpu: torch, CUDA and cuDNN come with the base image.
FROM ${PYTORCH_IMAGE} AS torch-gpu
# Recent PyTorch images use a distribution Python marked EXTERNALLY-MANAGED (PEP 668); the
# image is ours alone, so pip may install beside the system packages (older pips ignore this).
ENV PIP_BREAK_SYSTEM_PACKAGES=1

# ---- torch-cpu: the CPU-only wheel from PyTorch's index (PyPI's default wheel bundles CUDA).
FROM ${PYTHON_IMAGE} AS torch-cpu
# The torch pin of pyproject.toml (a test keeps the two equal).
ARG TORCH_VERSION=2.13.0
RUN python -m pip install --no-cache-dir \
        --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"

# ---- runtime: one recipe on either torch. torch-${VARIANT} names a stage above, not a
# registry image, which hadolint cannot tell.
# hadolint ignore=DL3006
FROM torch-${VARIANT} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Install the project's other dependencies without touching torch: the constraint pins torch to
# the exact build already installed (2.13.0+cu130, say), which satisfies pyproject's
# torch==2.13.0, so pip keeps it; were the base's torch any other version, pip would stop with
# a conflict rather than quietly swap in a CPU or a different CUDA build from PyPI.
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    python3 -c "import torch; print(f'torch=={torch.__version__}')" > /tmp/torch.txt \
    && python3 -m pip install --no-cache-dir --constraint /tmp/torch.txt /wheels/*.whl \
    && rm /tmp/torch.txt \
    && useradd --create-home --uid 10001 --user-group app

WORKDIR /app
# The committed checkpoints and manifests (verified against their sha256 at start-up). A volume
# mounted here overrides them; a new named volume starts as a copy, owned by app, so that
# `docker compose --profile train run train` can write into it.
COPY --chown=10001:10001 checkpoints/ checkpoints/
ENV MODEL_REPOSITORY=/app/checkpoints \
    PORT=8000 \
    WORKERS=1
# Numeric, so that a runtime can check it is not root without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
# /readyz: 200 once every model is loaded and warmed up. Python rather than curl, which
# neither base image ships.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --start-interval=5s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/readyz', timeout=4)"]
# Each worker loads every model and batches on its own: one worker per GPU batches best.
# The device comes from DEVICE, read by the service itself (auto: CUDA when there is one).
# `python3 -m uvicorn`, as the GPU image's scripts folder may not be on PATH; `exec`, so that
# uvicorn replaces the shell as PID 1 and gets `docker stop`'s SIGTERM: a graceful shutdown.
# `--http`: uvicorn's h11 with deadlines for slow clients (service/connection_guard.py).
# More than one worker: they keep their metrics in a directory made afresh at each start, so
# that a scrape of /metrics, which reaches one of them, counts them all (service/metrics.py).
CMD ["sh", "-c", "if [ \"${WORKERS:-1}\" -gt 1 ]; then export PROMETHEUS_MULTIPROC_DIR=\"$(mktemp -d)\"; fi; exec python3 -m uvicorn --factory service.app:create_app --http service.connection_guard:GuardedH11Protocol --host 0.0.0.0 --port \"${PORT:-8000}\" --workers \"${WORKERS:-1}\" --no-access-log"]
