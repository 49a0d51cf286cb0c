# `make serve` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# What serving needs; the checks and the report add their extras on top.
SERVE_STAMP := $(VENV)/.installed-serve
DEV_STAMP := $(VENV)/.installed-dev
RAY_STAMP := $(VENV)/.installed-ray
# make serve listens on every interface; HOST=127.0.0.1 keeps it to this machine.
HOST ?= 0.0.0.0
PORT ?= 8000

WINE_BNN := checkpoints/wine-bnn.safetensors
WINE_GAUSSIAN := checkpoints/wine-gaussian.safetensors
CIFAR_BCNN := checkpoints/cifar-bcnn.safetensors
WINE_BNN_ENSEMBLE := checkpoints/wine-bnn-ensemble.safetensors
WINE_GAUSSIAN_ENSEMBLE := checkpoints/wine-gaussian-ensemble.safetensors
CIFAR_BCNN_ENSEMBLE := checkpoints/cifar-bcnn-ensemble.safetensors

.PHONY: venv serve serve-ray test lint format checkpoints train report clean-venv browser

# pip shows its progress: the first install takes minutes, and should say so as it goes.
$(SERVE_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	@# torch first and pinned exactly: a looser spec pulls a multi-GB CUDA build.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e .
	touch $(SERVE_STAMP)

# The tests start a Ray cluster too (tests/test_ray_serve.py), so they need the ray extra.
$(DEV_STAMP): $(SERVE_STAMP)
	$(BIN)/pip install -e ".[dev,report,ray]"
	touch $(DEV_STAMP) $(RAY_STAMP)

# Ray Serve, only for `make serve-ray` (and the tests): `make serve` does without it.
$(RAY_STAMP): $(SERVE_STAMP)
	$(BIN)/pip install -e ".[ray]"
	touch $(RAY_STAMP)

venv: $(DEV_STAMP)

# Committed checkpoints are used as they are; a missing one is trained.
$(WINE_BNN): | $(SERVE_STAMP)
	$(BIN)/python -m training.train_wine --model bnn --output $@
$(WINE_GAUSSIAN): | $(SERVE_STAMP)
	$(BIN)/python -m training.train_wine --model gaussian --output $@
$(CIFAR_BCNN): | $(SERVE_STAMP)
	$(BIN)/python -m training.train_cifar --output $@
$(WINE_BNN_ENSEMBLE): | $(SERVE_STAMP)
	$(BIN)/python -m training.train_wine --model bnn --members 5 --output $@
$(WINE_GAUSSIAN_ENSEMBLE): | $(SERVE_STAMP)
	$(BIN)/python -m training.train_wine --model gaussian --members 5 --output $@
$(CIFAR_BCNN_ENSEMBLE): | $(SERVE_STAMP)
	$(BIN)/python -m training.train_cifar --members 4 --output $@

checkpoints: $(WINE_BNN) $(WINE_GAUSSIAN) $(CIFAR_BCNN) $(WINE_BNN_ENSEMBLE) $(WINE_GAUSSIAN_ENSEMBLE) \
	$(CIFAR_BCNN_ENSEMBLE)

# Retrain every committed checkpoint, replacing it (CIFAR: ~40 min a network on 2 CPU cores,
# so hours for its ensemble of 4; minutes on a GPU).
train: $(SERVE_STAMP)
	$(BIN)/python -m training.train_wine --model bnn
	$(BIN)/python -m training.train_wine --model gaussian
	$(BIN)/python -m training.train_cifar
	$(BIN)/python -m training.train_wine --model bnn --members 5
	$(BIN)/python -m training.train_wine --model gaussian --members 5
	$(BIN)/python -m training.train_cifar --members 4

# The port is checked first: a taken one is said at once, not after the models have loaded.
# `--http`: uvicorn's h11 with deadlines for slow clients (service/connection_guard.py).
serve: checkpoints
	@$(BIN)/python -m service.port $(HOST) $(PORT)
	$(BIN)/uvicorn --factory service.app:create_app --http service.connection_guard:GuardedH11Protocol \
		--host $(HOST) --port $(PORT) --no-access-log

# The same service on Ray Serve (service/ray_serve.py): joins the cluster at RAY_ADDRESS, or
# the one `ray start --head` started here, else starts a head node of its own; deploys
# RAY_CONFIG's deployments; in the foreground until Ctrl-C or SIGTERM, which remove the
# deployment and stop what it started. README, "Scale out".
RAY_CONFIG ?= deploy/ray-serve.yaml
serve-ray: checkpoints $(RAY_STAMP)
	@$(BIN)/python -m service.port $(HOST) $(PORT)
	$(BIN)/python -m service.ray_serve --config $(RAY_CONFIG) --host $(HOST) --port $(PORT)

test: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

# The browser tests/test_web_page.py drives: Debian's Chromium (needs root; without it those
# tests skip, except under CI). Playwright's own browser download is not used.
CHROMIUM := /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# Vendor the page's and the docs' JavaScript again, at the versions pinned in the script.
.PHONY: vendor
vendor:
	bash scripts/vendor_assets.sh

# Calibration and shift report of the committed checkpoints, written to reports/.
report: $(DEV_STAMP)
	$(BIN)/python -m training.report

format: $(DEV_STAMP)
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
bench: $(DEV_STAMP)
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python -m bench.run

# Hostile load (issue 16): poisoned batches, image bombs, CIFAR and wine overload, slow and
# lying clients, SIGTERM mid-load, each against its own server on 127.0.0.1; bounded, stops by
# itself (a few minutes). The table goes to bench/CHAOS.md; `make test` runs a short version.
.PHONY: chaos
chaos: $(DEV_STAMP)
	$(BIN)/python -m bench.chaos
