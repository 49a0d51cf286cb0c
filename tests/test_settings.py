"""Settings: environment, TOML file, validation, and the README's table kept in step."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import CONFIG_FILE_ENV, ModelSettings, Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_environment_overrides_one_field_of_one_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WINE_BNN__MAX_WAIT_MS", "7.5")
    monkeypatch.setenv("DEVICE", "cpu")
    monkeypatch.setenv("MODELS", '["wine_bnn"]')
    settings = Settings()
    assert settings.wine_bnn.max_wait_ms == 7.5
    assert settings.wine_bnn.default_samples == 100  # the rest keep their defaults
    assert settings.cifar_bcnn.max_wait_ms == 2.0
    assert settings.device == "cpu" and settings.models == ("wine_bnn",)


def test_toml_file_and_environment_precedence(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "service.toml"
    config.write_text('log_level = "debug"\n[cifar_bcnn]\nmax_samples = 48\ntimeout_s = 3\n')
    monkeypatch.setenv(CONFIG_FILE_ENV, str(config))
    monkeypatch.setenv("CIFAR_BCNN__TIMEOUT_S", "4")
    settings = Settings()
    assert settings.log_level == "debug"
    assert settings.cifar_bcnn.max_samples == 48
    assert settings.cifar_bcnn.timeout_s == 4.0  # the environment wins over the file


def test_missing_config_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CONFIG_FILE_ENV, str(tmp_path / "absent.toml"))
    with pytest.raises(FileNotFoundError, match=r"absent\.toml"):
        Settings()


def test_invalid_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WINE_BNN__DEFAULT_SAMPLES", "2000")
    with pytest.raises(ValidationError, match="exceeds max_samples"):
        Settings()
    monkeypatch.delenv("WINE_BNN__DEFAULT_SAMPLES")
    with pytest.raises(ValidationError, match="unknown models"):
        Settings(models=("wine_bnn", "resnet"))


def test_readme_lists_every_setting() -> None:
    text = README.read_text()
    for name in Settings.model_fields:
        if name not in {"wine_bnn", "wine_gaussian", "cifar_bcnn"}:
            assert f"`{name.upper()}`" in text, f"README does not document {name.upper()}"
    for name in ModelSettings.model_fields:
        assert f"`{name.upper()}`" in text, f"README does not document <MODEL>__{name.upper()}"
    assert f"`{CONFIG_FILE_ENV}`" in text
