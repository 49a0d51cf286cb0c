# `make serve` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 0.0.0.0
PORT ?= 8000

WINE_BNN := checkpoints/wine-bnn.safetensors
WINE_GAUSSIAN := checkpoints/wine-gaussian.safetensors
CIFAR_BCNN := checkpoints/cifar-bcnn.safetensors

.PHONY: venv serve test lint format checkpoints train report clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# torch first and pinned exactly: a looser spec pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev,report]"
	touch $(STAMP)

venv: $(STAMP)

# Committed checkpoints are used as they are; a missing one is trained.
$(WINE_BNN): | $(STAMP)
	$(BIN)/python -m training.train_wine --model bnn --output $@
$(WINE_GAUSSIAN): | $(STAMP)
	$(BIN)/python -m training.train_wine --model gaussian --output $@
$(CIFAR_BCNN): | $(STAMP)
	$(BIN)/python -m training.train_cifar --output $@

checkpoints: $(WINE_BNN) $(WINE_GAUSSIAN) $(CIFAR_BCNN)

# Retrain all three, replacing the committed checkpoints (CIFAR: ~40 min on 2 CPU cores).
train: $(STAMP)
	$(BIN)/python -m training.train_wine --model bnn
	$(BIN)/python -m training.train_wine --model gaussian
	$(BIN)/python -m training.train_cifar

serve: checkpoints
	$(BIN)/uvicorn --factory service.app:create_app --host $(HOST) --port $(PORT) --no-access-log

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

# Calibration and shift report of the committed checkpoints, written to reports/.
report: $(STAMP)
	$(BIN)/python -m training.report

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean-venv:
	rm -rf $(VENV)

# The image, as docker-compose.yml builds it: `make docker-build VARIANT=cpu` for the CPU one.
# Needs Docker with BuildKit; `make test` checks the Dockerfile and compose files without it.
VARIANT ?= gpu
.PHONY: docker-build
docker-build:
	docker build --build-arg VARIANT=$(VARIANT) -t bayes-serve:$(VARIANT) .

# Benchmarks, printed as one table and written to bench/RESULTS.md (a few minutes; run it on
# an otherwise idle machine). Installs wrk from Debian's packages if missing: that needs root.
.PHONY: bench
bench: $(STAMP)
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python -m bench.run
