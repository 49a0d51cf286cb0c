"""Service settings: environment variables, then an optional TOML file, then defaults.

Per-model settings go by model name, with ``__`` after it: ``WINE_BNN__MAX_WAIT_MS=5`` or, in
the file named by ``CONFIG_FILE``, a table ``[wine-bnn]`` (or ``[wine_bnn]``) holding
``max_wait_ms = 5``. Names compare without case, with ``-`` and ``_`` alike, since environment
variables cannot hold a hyphen. What a model does not set comes from its task kind's defaults.
The README lists every setting.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from models.images import MAX_PIXELS

CONFIG_FILE_ENV = "CONFIG_FILE"
MiB = 1024 * 1024


class ModelSettings(BaseModel):
    """How one model is loaded and batched (after Triton's dynamic batcher)."""

    model_config = ConfigDict(extra="forbid")

    optional: bool = Field(
        False, description="if the checkpoint fails to load, serve 503 for it, don't exit"
    )
    default_samples: int = Field(ge=1, description="posterior samples S when not asked for")
    max_samples: int = Field(ge=1, description="largest S a request may ask for")
    max_instances: int = Field(ge=1, description="most instances (rows or images) per request")
    max_batch_size: int = Field(ge=1, description="rows per model pass")
    max_wait_ms: float = Field(
        2.0, ge=0, description="longest a request waits for company, while any is arriving"
    )
    max_queue_size: int = Field(256, ge=1, description="requests waiting; beyond it, 503")
    timeout_s: float = Field(10.0, gt=0, description="deadline in the queue; beyond it, 504")
    device: str | None = Field(
        None, description="this model's device (cpu, cuda, cuda:N); unset: the service's DEVICE"
    )
    cuda_graphs: bool = Field(
        True,
        description="on CUDA, replay graphs of the pass at the default samples and level, "
        "captured at start-up, where the task kind has them (tabular regression)",
    )

    @model_validator(mode="after")
    def _samples_in_range(self) -> ModelSettings:
        if self.default_samples > self.max_samples:
            raise ValueError(
                f"default_samples ({self.default_samples}) exceeds max_samples ({self.max_samples})"
            )
        return self


MODEL_SETTING_NAMES = frozenset(ModelSettings.model_fields)


def settings_key(name: str) -> str:
    """A model name as settings spell it: ``wine-bnn``, ``WINE_BNN`` → ``wine_bnn``."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    device: str = Field("auto", description="auto (CUDA when available), cuda, cuda:N or cpu")
    model_repository: Path = Field(
        Path("checkpoints"), description="folder of NAME.safetensors files with NAME.json beside"
    )
    models: tuple[str, ...] | None = Field(
        None, description="names of the models to serve (JSON list); unset: the whole repository"
    )
    max_body_bytes: int = Field(8 * MiB, ge=1, description="largest request body; beyond it, 413")
    header_timeout_s: float = Field(
        10.0, gt=0, description="a request's line and headers must arrive within it; else 408"
    )
    body_timeout_s: float = Field(
        10.0, gt=0, description="a request's body must arrive within it of its headers; else 400"
    )
    max_inflight_body_bytes: int = Field(
        256 * MiB,
        ge=1,
        description="most bytes of request bodies held at once, read but not yet decoded",
    )
    max_image_pixels: int = Field(
        MAX_PIXELS, ge=1, description="largest image, width × height; beyond it, 415"
    )
    max_request_pixels: int = Field(
        32_000_000, ge=1, description="most pixels of one request's images together; beyond, 413"
    )
    max_decoding_pixels: int = Field(
        32_000_000, ge=1, description="most pixels being decoded at once, over all requests"
    )
    decode_workers: int = Field(
        0, ge=0, description="threads decoding images; 0: one per core this process may use"
    )
    log_level: str = Field("info", description="level of the service's own log lines")
    per_model: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="settings by model (settings_key of its name); unset fields: task defaults",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: tuple[PydanticBaseSettingsSource, ...] = (
            init_settings,
            env_settings,
            _PerModelEnvironment(settings_cls),
        )
        if config_file := os.environ.get(CONFIG_FILE_ENV):
            path = Path(config_file)
            if not path.is_file():
                raise FileNotFoundError(f"{CONFIG_FILE_ENV}={config_file}: no such file")
            sources += (_PerModelToml(settings_cls, toml_file=path),)
        return sources

    @model_validator(mode="before")
    @classmethod
    def _model_names_as_keys(cls, data: Any) -> Any:
        """``per_model`` keyed by :func:`settings_key`, whichever way a name was spelt."""
        if not isinstance(data, dict) or not isinstance(data.get("per_model"), dict):
            return data
        per_model: dict[str, Any] = {}
        for name, values in data["per_model"].items():
            key = settings_key(name)
            if isinstance(values, dict) and isinstance(per_model.get(key), dict):
                per_model[key] = {**per_model[key], **values}
            else:
                per_model[key] = values
        return {**data, "per_model": per_model}

    def model_settings(self, name: str, defaults: Mapping[str, Any]) -> ModelSettings:
        """Model ``name``'s settings: what was set for it over its task kind's ``defaults``."""
        overrides = self.per_model.get(settings_key(name), {})
        try:
            return ModelSettings(**{**defaults, **overrides})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            raise ValueError(f"settings of model {name!r}: {problems}") from None


class _PerModelToml(TomlConfigSettingsSource):
    """The TOML file; its tables not named after a setting are a model's: ``[wine-bnn]``."""

    def __call__(self) -> dict[str, Any]:
        data = dict(super().__call__())
        per_model = {
            settings_key(key): data.pop(key)
            for key in list(data)
            if key not in Settings.model_fields and isinstance(data[key], dict)
        }
        return {**data, "per_model": per_model} if per_model else data


class _PerModelEnvironment(PydanticBaseSettingsSource):
    """``NAME__FIELD`` variables, FIELD one of :class:`ModelSettings`'s, for any model NAME."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is gathered in __call__

    def __call__(self) -> dict[str, Any]:
        found: dict[str, dict[str, Any]] = {}
        for variable, value in os.environ.items():
            name, separator, field = variable.rpartition("__")
            if separator and name and field.lower() in MODEL_SETTING_NAMES:
                found.setdefault(settings_key(name), {})[field.lower()] = value
        return {"per_model": found} if found else {}
