"""Settings: environment, TOML file, per-model settings by name, and the README kept in step."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import CONFIG_FILE_ENV, ModelSettings, Settings, settings_key
from service.tasks import TASKS
from service.tasks.image_classification import ImageClassification
from service.tasks.tabular_regression import TabularRegression

README = Path(__file__).resolve().parents[1] / "README.md"
TABULAR = TabularRegression.defaults
IMAGES = ImageClassification.defaults


@pytest.mark.parametrize("spelling", ["wine-bnn", "wine_bnn", "WINE_BNN", "Wine-Bnn"])
def test_model_names_compare_without_case_and_hyphens(spelling: str) -> None:
    assert settings_key(spelling) == "wine_bnn"


def test_environment_overrides_one_field_of_one_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WINE_BNN__MAX_WAIT_MS", "7.5")
    monkeypatch.setenv("DEVICE", "cpu")
    monkeypatch.setenv("MODELS", '["wine-bnn"]')
    settings = Settings()
    wine = settings.model_settings("wine-bnn", TABULAR)
    assert wine.max_wait_ms == 7.5
    assert wine.default_samples == TABULAR["default_samples"]  # the rest: its task's defaults
    assert settings.model_settings("cifar-bcnn", IMAGES).max_wait_ms == 2.0
    assert settings.model_settings("wine-gaussian", TABULAR).max_wait_ms == 2.0
    assert settings.device == "cpu" and settings.models == ("wine-bnn",)


def test_every_task_kind_has_complete_defaults() -> None:
    for task in TASKS.values():
        assert isinstance(ModelSettings(**task.defaults), ModelSettings), task.name


def test_toml_tables_by_model_name_and_environment_precedence(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "service.toml"
    config.write_text(
        'log_level = "debug"\n[cifar-bcnn]\nmax_samples = 48\ntimeout_s = 3\n'
        "[my_table_model]\noptional = true\n"
    )
    monkeypatch.setenv(CONFIG_FILE_ENV, str(config))
    monkeypatch.setenv("CIFAR_BCNN__TIMEOUT_S", "4")
    settings = Settings()
    assert settings.log_level == "debug"
    cifar = settings.model_settings("cifar-bcnn", IMAGES)
    assert cifar.max_samples == 48
    assert cifar.timeout_s == 4.0  # the environment wins over the file
    assert settings.model_settings("my-table-model", TABULAR).optional is True


def test_code_can_set_a_model_by_any_spelling_of_its_name() -> None:
    settings = Settings(per_model={"Wine-Gaussian": {"max_batch_size": 7}})
    assert settings.model_settings("wine-gaussian", TABULAR).max_batch_size == 7


def test_missing_config_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CONFIG_FILE_ENV, str(tmp_path / "absent.toml"))
    with pytest.raises(FileNotFoundError, match=r"absent\.toml"):
        Settings()


def test_invalid_model_settings_name_the_model_and_the_field(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WINE_BNN__DEFAULT_SAMPLES", "2000")
    with pytest.raises(ValueError, match=r"model 'wine-bnn'.*exceeds max_samples"):
        Settings().model_settings("wine-bnn", TABULAR)
    monkeypatch.setenv("WINE_BNN__DEFAULT_SAMPLES", "many")
    with pytest.raises(ValueError, match=r"model 'wine-bnn': default_samples: Input should be"):
        Settings().model_settings("wine-bnn", TABULAR)
    monkeypatch.delenv("WINE_BNN__DEFAULT_SAMPLES")
    config = tmp_path / "service.toml"
    config.write_text("[wine-bnn]\nmax_wiat_ms = 3\n")  # a typo
    monkeypatch.setenv(CONFIG_FILE_ENV, str(config))
    with pytest.raises(ValueError, match=r"model 'wine-bnn': max_wiat_ms: Extra inputs"):
        Settings().model_settings("wine-bnn", TABULAR)


def test_unrelated_variables_with_double_underscores_are_not_model_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOME_TOOL__CACHE", "1")  # CACHE is no model setting
    monkeypatch.setenv("__TIMEOUT_S", "1")  # no model name
    assert Settings().per_model == {}


def test_readme_lists_every_setting() -> None:
    text = README.read_text()
    for name in Settings.model_fields:
        if name != "per_model":  # the per-model table below
            assert f"`{name.upper()}`" in text, f"README does not document {name.upper()}"
    for name in ModelSettings.model_fields:
        assert f"`{name.upper()}`" in text, f"README does not document <MODEL>__{name.upper()}"
    assert f"`{CONFIG_FILE_ENV}`" in text


def test_readme_gives_each_task_kinds_defaults() -> None:
    """The per-model table's columns are the task kinds' defaults, as the code has them."""
    lines = README.read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| setting | tabular-"))
    kinds = [cell.strip() for cell in lines[header].strip("|").split("|")][1:-1]
    assert kinds == list(TASKS)
    rows = {}
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0].strip("`").lower()] = cells[1:-1]
    for position, kind in enumerate(kinds):
        settings = ModelSettings(**TASKS[kind].defaults)
        for name, value in settings.model_dump().items():
            documented = rows[name][position]
            expected = "(unset)" if value is None else f"`{str(value).lower()}`"
            if isinstance(value, int | float) and not isinstance(value, bool):
                expected = f"{value:g}"
            assert documented == expected, (kind, name)
