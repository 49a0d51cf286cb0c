"""The contract's bodies: what a tabular body accepts and refuses, and how responses serialise.

The tabular body is built per model from its feature names; the wine models' eleven names are
used here, plus names a CSV header may hold that are no Python identifiers.
"""

from __future__ import annotations

import json
import math

import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from service.schemas import (
    ClassificationPrediction,
    ClassificationResponse,
    ClassUncertainty,
    ImageJsonBody,
    Interval,
    ModelInfo,
    ModelRef,
    ModelsResponse,
    RegressionPrediction,
    RegressionResponse,
    tabular_body_adapter,
    tabular_error_loc,
    tabular_rows,
)
from training.datasets.wine import WINE_FEATURES

CLASSES = ("cat", "dog", "ship")
ROW = [float(i) + 0.5 for i in range(len(WINE_FEATURES))]
NAMED = dict(zip(WINE_FEATURES, ROW, strict=True))
wine_body_adapter = tabular_body_adapter(WINE_FEATURES, ROW)


def errors_of(body: object) -> list[tuple[tuple[str | int, ...], str, str]]:
    with pytest.raises(ValidationError) as info:
        wine_body_adapter.validate_python(body)
    return [
        (tabular_error_loc(e["loc"]), e["type"], e["msg"])
        for e in info.value.errors(include_url=False)
    ]


def test_body_forms_give_rows_in_the_models_order() -> None:
    reordered = dict(reversed(NAMED.items()))
    batch = wine_body_adapter.validate_python({"instances": [reordered, ROW]})
    assert tabular_rows(batch, WINE_FEATURES) == [ROW, ROW]
    assert tabular_rows(wine_body_adapter.validate_python(NAMED), WINE_FEATURES) == [ROW]
    assert tabular_rows(wine_body_adapter.validate_python(ROW), WINE_FEATURES) == [ROW]


def test_any_header_name_is_a_feature_name() -> None:
    # Names a CSV header may hold: spaces, a leading digit, pydantic's own attribute names.
    features = ("fixed acidity", "2nd", "model_config", "object", "instances")
    body = tabular_body_adapter(features)
    named = {name: float(i) for i, name in enumerate(features)}
    assert tabular_rows(body.validate_python({"instances": [named]}), features) == [
        [0.0, 1.0, 2.0, 3.0, 4.0]
    ]
    with pytest.raises(ValidationError) as info:
        body.validate_python({"instances": [{**named, "2nd": "x"}]})
    (error,) = info.value.errors()
    assert tabular_error_loc(error["loc"]) == ("instances", 0, "2nd")


def test_integers_are_numbers() -> None:
    body = wine_body_adapter.validate_python([1] * 11)
    assert body == [1.0] * 11
    assert all(type(value) is float for value in body)


@pytest.mark.parametrize(
    ("value", "type_", "msg"),
    [
        (math.nan, "finite_number", "Input should be a finite number, not NaN"),
        (math.inf, "finite_number", "Input should be a finite number, not Infinity"),
        (-math.inf, "finite_number", "Input should be a finite number, not -Infinity"),
        ("NaN", "float_type", "Input should be a finite number, not a string"),
        ("7.0", "float_type", "Input should be a finite number, not a string"),
        (True, "float_type", "Input should be a finite number, not a boolean"),
        (None, "float_type", "Input should be a finite number, not null"),
        ([1.0], "float_type", "Input should be a finite number, not an array"),
        (10**400, "finite_number", "Input should be a finite number, not an integer beyond"),
        (1e300, "finite_number", "Input should be a finite number within float32 range"),
    ],
)
def test_bad_numbers_are_named_in_both_forms(value: object, type_: str, msg: str) -> None:
    named = errors_of({"instances": [NAMED, {**NAMED, "pH": value}]})
    assert [(loc, t) for loc, t, _ in named] == [(("instances", 1, "pH"), type_)]
    assert named[0][2].startswith(msg)
    row = [*ROW]
    row[8] = value
    assert [(loc, t) for loc, t, _ in errors_of(row)] == [((8,), type_)]


def test_missing_and_extra_features_are_named() -> None:
    body = {"instances": [{k: v for k, v in NAMED.items() if k != "density"} | {"colour": 1}]}
    assert sorted(errors_of(body)) == [
        (("instances", 0, "colour"), "extra_forbidden", "Extra inputs are not permitted"),
        (("instances", 0, "density"), "missing", "Field required"),
    ]


def test_an_extra_key_named_like_a_union_tag_keeps_its_name() -> None:
    (error,) = errors_of({"instances": [{**NAMED, "object": 1}]})
    assert error[0] == ("instances", 0, "object")


@pytest.mark.parametrize("count", [10, 12])
def test_wrong_array_length_says_expected_and_got(count: int) -> None:
    ((loc, _, msg),) = errors_of({"instances": [ROW, [1.0] * count]})
    assert loc == ("instances", 1)
    assert f"expected 11 values, got {count}" in msg


def test_errors_only_talk_about_the_branch_sent() -> None:
    # An array with a bad element must not also complain about missing named features.
    errors = errors_of({"instances": [[*ROW[:10], "x"]]})
    assert [loc for loc, _, _ in errors] == [("instances", 0, 10)]


@pytest.mark.parametrize("instance", ["abc", 5, None, True])
def test_an_instance_of_the_wrong_json_type(instance: object) -> None:
    ((loc, type_, msg),) = errors_of({"instances": [instance]})
    assert (loc, type_) == (("instances", 0), "tabular_instance")
    assert "object" in msg and "array" in msg


@pytest.mark.parametrize("body", [None, "abc", 3])
def test_a_body_of_the_wrong_json_type(body: object) -> None:
    ((loc, type_, _),) = errors_of(body)
    assert (loc, type_) == ((), "tabular_body")


def test_empty_and_extra_top_level_keys() -> None:
    assert [e[:2] for e in errors_of({"instances": []})] == [(("instances",), "too_short")]
    assert [e[:2] for e in errors_of({"instances": [ROW], "model": "bnn"})] == [
        (("model",), "extra_forbidden")
    ]


def test_image_json_body() -> None:
    body = ImageJsonBody.model_validate({"instances": [{"b64": "aGk="}]})
    assert body.instances[0].b64 == "aGk="
    for bad in ({"instances": []}, {"instances": [{"b64": "aGk=", "x": 1}]}, {"instances": [{}]}):
        with pytest.raises(ValidationError):
            ImageJsonBody.model_validate(bad)


def _cifar_prediction(filename: str | None = None) -> ClassificationPrediction:
    probabilities = dict.fromkeys(CLASSES, 0.1)
    return ClassificationPrediction(
        label="cat",
        class_index=3,
        confidence=0.1,
        probabilities=probabilities,
        intervals={c: Interval(lower=0.0, upper=0.2) for c in CLASSES},
        uncertainty=ClassUncertainty(total=2.3, aleatoric=2.0, epistemic=0.3),
        filename=filename,
    )


def test_filename_is_omitted_unless_set() -> None:
    assert "filename" not in json.loads(_cifar_prediction().model_dump_json())
    assert "filename" not in _cifar_prediction().model_dump()
    assert json.loads(_cifar_prediction("a.png").model_dump_json())["filename"] == "a.png"


def test_wine_response_matches_the_contract_example() -> None:
    response = RegressionResponse(
        model=ModelRef(name="wine-gaussian", version="3f2a9c0d1e4b"),
        samples=1,
        level=0.95,
        predictions=[
            RegressionPrediction(
                mean=5.91,
                std=0.74,
                interval=Interval(lower=4.47, upper=7.36),
                epistemic_std=None,
                aleatoric_std=0.74,
            )
        ],
    )
    assert json.loads(response.model_dump_json()) == {
        "model": {"name": "wine-gaussian", "version": "3f2a9c0d1e4b"},
        "samples": 1,
        "level": 0.95,
        "predictions": [
            {
                "mean": 5.91,
                "std": 0.74,
                "interval": {"lower": 4.47, "upper": 7.36},
                "epistemic_std": None,
                "aleatoric_std": 0.74,
            }
        ],
    }


def test_models_response_round_trips() -> None:
    info = ModelInfo(
        name="wine-bnn",
        task="tabular-regression",
        kind="tabular-bnn",
        version="3f2a9c0d1e4b",
        device="cpu",
        execution="eager",
        default_samples=100,
        max_samples=1000,
        max_instances=1024,
        input={"features": list(WINE_FEATURES)},
        test_metrics={"rmse": 0.7, "samples": 100, "mean_epistemic_std": None},
        ready=True,
    )
    dumped = ModelsResponse(models=[info]).model_dump(mode="json")
    assert ModelsResponse.model_validate(dumped).models[0] == info
    assert dumped["models"][0]["test_metrics"]["samples"] == 100  # an integer stays one
    assert "classes" not in info.model_dump(mode="json")  # classifiers only


def test_openapi_renders_with_the_models_features_as_examples() -> None:
    app = FastAPI()

    @app.post("/cifar", response_model=ClassificationResponse)
    def cifar(body: ImageJsonBody) -> ClassificationResponse:  # pragma: no cover - schema only
        raise NotImplementedError

    schemas = app.openapi()["components"]["schemas"]
    assert schemas["ImageJsonBody"]["examples"]
    assert "filename" not in schemas["ClassificationPrediction"]["required"]
    schema = wine_body_adapter.json_schema()
    assert schema["oneOf"]
    features = schema["$defs"]["TabularFeatures"]
    assert list(features["properties"]) == list(WINE_FEATURES)
    assert features["examples"] == [NAMED]
