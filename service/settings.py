"""Service settings: environment variables, then an optional TOML file, then defaults.

Per-model settings nest with ``__``: ``WINE_BNN__MAX_WAIT_MS=5`` or, in the file
named by ``CONFIG_FILE``, ``[wine_bnn] max_wait_ms = 5``. The README lists them all.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from models.images import MAX_PIXELS

CONFIG_FILE_ENV = "CONFIG_FILE"
# The served models, by settings name.
MODEL_KEYS: tuple[str, ...] = ("wine_bnn", "wine_gaussian", "cifar_bcnn")
MiB = 1024 * 1024


class ModelSettings(BaseModel):
    """How one model is loaded and batched (after Triton's dynamic batcher)."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: Path = Field(description="safetensors file, relative to checkpoint_dir")
    optional: bool = Field(
        False, description="if the checkpoint fails to load, serve 503 on its route, don't exit"
    )
    default_samples: int = Field(ge=1, description="posterior samples S when not asked for")
    max_samples: int = Field(ge=1, description="largest S a request may ask for")
    max_instances: int = Field(ge=1, description="most instances (rows or images) per request")
    max_batch_size: int = Field(ge=1, description="rows per model pass")
    max_wait_ms: float = Field(2.0, ge=0, description="longest a request waits for company")
    max_queue_size: int = Field(256, ge=1, description="requests waiting; beyond it, 503")
    timeout_s: float = Field(10.0, gt=0, description="deadline in the queue; beyond it, 504")
    device: str | None = Field(
        None, description="this model's device (cpu, cuda, cuda:N); unset: the service's DEVICE"
    )

    @model_validator(mode="after")
    def _samples_in_range(self) -> ModelSettings:
        if self.default_samples > self.max_samples:
            raise ValueError(
                f"default_samples ({self.default_samples}) exceeds max_samples ({self.max_samples})"
            )
        return self


class WineBNNSettings(ModelSettings):
    checkpoint: Path = Path("wine-bnn.safetensors")
    default_samples: int = 100
    max_samples: int = 1000
    max_instances: int = 1024
    max_batch_size: int = 1024


class WineGaussianSettings(ModelSettings):
    checkpoint: Path = Path("wine-gaussian.safetensors")
    # One deterministic network: any S gives the same answer, and responses say samples=1.
    default_samples: int = 100
    max_samples: int = 1000
    max_instances: int = 1024
    max_batch_size: int = 4096


class CifarSettings(ModelSettings):
    checkpoint: Path = Path("cifar-bcnn.safetensors")
    default_samples: int = 32
    max_samples: int = 64
    max_instances: int = 64
    max_batch_size: int = 64


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="ignore")

    device: str = Field("auto", description="auto (CUDA when available), cuda, cuda:N or cpu")
    checkpoint_dir: Path = Field(Path("checkpoints"), description="folder of the checkpoints")
    max_body_bytes: int = Field(8 * MiB, ge=1, description="largest request body; beyond it, 413")
    max_image_pixels: int = Field(MAX_PIXELS, ge=1, description="largest image, width × height")
    log_level: str = Field("info", description="level of the service's own log lines")
    models: tuple[str, ...] = Field(MODEL_KEYS, description="which models to serve")
    wine_bnn: WineBNNSettings = WineBNNSettings()
    wine_gaussian: WineGaussianSettings = WineGaussianSettings()
    cifar_bcnn: CifarSettings = CifarSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        if config_file := os.environ.get(CONFIG_FILE_ENV):
            path = Path(config_file)
            if not path.is_file():
                raise FileNotFoundError(f"{CONFIG_FILE_ENV}={config_file}: no such file")
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=path),)
        return sources

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(MODEL_KEYS))
        if unknown:
            raise ValueError(f"unknown models {unknown}; choose from {list(MODEL_KEYS)}")
        return value

    def checkpoint_path(self, model: ModelSettings) -> Path:
        return self.checkpoint_dir / model.checkpoint
