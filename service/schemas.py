"""Request and response bodies of the HTTP contract (``API.md``), as pydantic models.

Feature and class names come from the model modules, so the API and the networks cannot
disagree about them.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Final

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    create_model,
)
from pydantic_core import PydanticCustomError

from models.cifar import CIFAR10_CLASSES
from models.wine import WINE_FEATURES

__all__ = [
    "WINE_EXAMPLE",
    "CifarB64Image",
    "CifarJsonBody",
    "CifarPrediction",
    "CifarResponse",
    "ClassUncertainty",
    "FiniteNumber",
    "HealthResponse",
    "Interval",
    "ModelInfo",
    "ModelRef",
    "ModelsResponse",
    "WineBatch",
    "WineBody",
    "WineFeatures",
    "WineInstance",
    "WinePrediction",
    "WineResponse",
    "wine_body_adapter",
    "wine_error_loc",
]

# Larger magnitudes overflow to infinity once cast to the networks' float32 input.
_FLOAT32_MAX: Final = float(np.finfo(np.float32).max)

# First row of the UCI white-wine table, for the OpenAPI examples.
WINE_EXAMPLE: Final[tuple[float, ...]] = (
    7.0,
    0.27,
    0.36,
    20.7,
    0.045,
    45.0,
    170.0,
    1.001,
    3.0,
    0.45,
    8.8,
)
assert len(WINE_EXAMPLE) == len(WINE_FEATURES)


# ---------------------------------------------------------------------------------------------
# Wine request


def _finite_number(value: Any) -> float:
    """Accept JSON numbers only; NaN, ±Infinity, strings and booleans are client mistakes."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError(
            "float_type",
            "Input should be a finite number, not {got}",
            {"got": _json_kind(value)},
        )
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float range
        raise PydanticCustomError(
            "finite_number", "Input should be a finite number, not an integer beyond float range"
        ) from None
    if math.isnan(number):
        raise PydanticCustomError("finite_number", "Input should be a finite number, not NaN")
    if math.isinf(number):
        raise PydanticCustomError(
            "finite_number",
            "Input should be a finite number, not {got}",
            {"got": "Infinity" if number > 0 else "-Infinity"},
        )
    if abs(number) > _FLOAT32_MAX:
        raise PydanticCustomError(
            "finite_number",
            "Input should be a finite number within float32 range (|x| <= {limit}), not {got}",
            {"limit": f"{_FLOAT32_MAX:.4g}", "got": f"{number:g}"},
        )
    return number


def _json_kind(value: Any) -> str:
    """Name a value as the client wrote it: JSON's words, not Python's."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


FiniteNumber = Annotated[
    float,
    BeforeValidator(_finite_number),
    Field(description="A finite JSON number (NaN, Infinity, strings and booleans are refused)."),
]

WineFeatures: type[BaseModel] = create_model(
    "WineFeatures",
    __config__=ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [dict(zip(WINE_FEATURES, WINE_EXAMPLE, strict=True))]},
    ),
    __doc__="One wine by its eleven physico-chemical features; each must be present, no others.",
    **{
        name: (FiniteNumber, Field(title=name, description=f"UCI column {column}: {name}."))
        for column, name in enumerate(WINE_FEATURES, start=1)
    },
)


def _check_row_length(value: Any) -> Any:
    """Say how many values were sent: pydantic's own message talks of 'items after validation'."""
    if isinstance(value, list | tuple) and len(value) != len(WINE_FEATURES):
        count = len(WINE_FEATURES)
        raise PydanticCustomError(
            "too_short" if len(value) < count else "too_long",
            "Array should hold the features in UCI order ({order}): "
            "expected {count} values, got {got}",
            {"order": ", ".join(WINE_FEATURES), "count": count, "got": len(value)},
        )
    return value


_WineRow = Annotated[
    list[FiniteNumber],
    BeforeValidator(_check_row_length),
    Field(
        min_length=len(WINE_FEATURES),
        max_length=len(WINE_FEATURES),
        description="The eleven features as numbers, in UCI column order.",
        examples=[list(WINE_EXAMPLE)],
    ),
]


# Union tags; pydantic writes them into error locations, see ``wine_error_loc``.
_BATCH, _OBJECT, _ARRAY = "batch", "object", "array"


def _instance_kind(value: Any) -> str | None:
    """Pick the branch from the JSON type alone, so errors only concern what was sent."""
    if isinstance(value, dict | WineFeatures):
        return _OBJECT
    if isinstance(value, list | tuple):
        return _ARRAY
    return None


_INSTANCE_MESSAGE: Final = (
    "Input should be an object with the eleven wine features or an array of eleven numbers"
)

WineInstance = Annotated[
    Annotated[WineFeatures, Tag(_OBJECT)] | Annotated[_WineRow, Tag(_ARRAY)],
    Discriminator(
        _instance_kind, custom_error_type="wine_instance", custom_error_message=_INSTANCE_MESSAGE
    ),
]
"""One wine: an object of named features, or an array of eleven numbers in UCI order."""


class WineBatch(BaseModel):
    """Several wines; predictions come back in the same order."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "instances": [
                        dict(zip(WINE_FEATURES, WINE_EXAMPLE, strict=True)),
                        list(WINE_EXAMPLE),
                    ]
                }
            ]
        },
    )

    instances: list[WineInstance] = Field(
        min_length=1,
        description="One or more wines (at most the configured limit, 1024 by default).",
    )


def _body_kind(value: Any) -> str | None:
    if isinstance(value, WineBatch) or (isinstance(value, dict) and "instances" in value):
        return _BATCH
    return _instance_kind(value)


WineBody = Annotated[
    Annotated[WineBatch, Tag(_BATCH)]
    | Annotated[WineFeatures, Tag(_OBJECT)]
    | Annotated[_WineRow, Tag(_ARRAY)],
    Discriminator(
        _body_kind,
        custom_error_type="wine_body",
        custom_error_message='Input should be {"instances": [...]} or a single wine instance',
    ),
]
"""The /predict/wine body: ``{"instances": [...]}`` or one bare instance."""

wine_body_adapter: Final[TypeAdapter[Any]] = TypeAdapter(WineBody)


def wine_error_loc(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Drop the union tags from a ``WineBody`` error location: clients never sent them.

    ``("batch", "instances", 3, "object", "pH")`` becomes ``("instances", 3, "pH")``. Only
    the tag positions are touched, so an extra key that happens to be called "object" stays.
    """
    if not loc or loc[0] not in (_BATCH, _OBJECT, _ARRAY):
        return loc
    head, rest = loc[0], loc[1:]
    if head == _BATCH and len(rest) >= 3 and rest[0] == "instances" and isinstance(rest[1], int):
        return (*rest[:2], *rest[3:]) if rest[2] in (_OBJECT, _ARRAY) else rest
    return rest


# ---------------------------------------------------------------------------------------------
# CIFAR request (JSON form; multipart needs no model)


class CifarB64Image(BaseModel):
    """One image file, base64-encoded."""

    model_config = ConfigDict(extra="forbid")

    b64: str = Field(
        min_length=1,
        description="Base64 of the image file's bytes (PNG, JPEG, BMP, GIF or WebP; any size).",
    )


class CifarJsonBody(BaseModel):
    """Images for /predict/cifar sent as JSON instead of multipart."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"instances": [{"b64": "iVBORw0KGgoAAAANSUhEUgAA..."}]}]},
    )

    instances: list[CifarB64Image] = Field(
        min_length=1,
        description="One or more images (at most the configured limit, 64 by default).",
    )


# ---------------------------------------------------------------------------------------------
# Responses


class ModelRef(BaseModel):
    """Which network answered: the same name and version always give the same numbers."""

    name: str = Field(description="Model name, e.g. 'wine-bnn'.", examples=["wine-bnn"])
    version: str = Field(
        description="First 12 hex digits of the checkpoint's sha256.", examples=["3f2a9c0d1e4b"]
    )


class Interval(BaseModel):
    """A central predictive interval at the requested ``level``."""

    lower: float = Field(description="The (1 - level) / 2 quantile.")
    upper: float = Field(description="The (1 + level) / 2 quantile.")


class WinePrediction(BaseModel):
    """Predicted quality score for one wine, with its uncertainty split."""

    mean: float = Field(description="Mean of the predictive mixture.")
    std: float = Field(description="Total standard deviation: sqrt(epistemic² + aleatoric²).")
    interval: Interval = Field(description="Exact central interval of the predictive mixture.")
    epistemic_std: float | None = Field(
        description="Spread of the mean across posterior samples; null when not modelled."
    )
    aleatoric_std: float = Field(description="Noise the model expects: sqrt(mean of sigma²).")


class WineResponse(BaseModel):
    """Answer to /predict/wine: one prediction per instance, in order."""

    model: ModelRef
    samples: int = Field(description="Posterior weight samples used.")
    level: float = Field(description="Level of each central interval.")
    predictions: list[WinePrediction]


class ClassUncertainty(BaseModel):
    """Entropy decomposition in nats; ``epistemic`` is the mutual information."""

    total: float = Field(description="Entropy of the mean class probabilities.")
    aleatoric: float = Field(description="Mean entropy of the per-sample class probabilities.")
    epistemic: float = Field(description="total - aleatoric (mutual information, >= 0).")


class CifarPrediction(BaseModel):
    """Predicted class of one image, with per-class intervals and uncertainty."""

    label: str = Field(
        description="Most probable class.",
        examples=[CIFAR10_CLASSES[3]],
        json_schema_extra={"enum": list(CIFAR10_CLASSES)},
    )
    class_index: int = Field(description="Index of ``label`` in the class list.", examples=[3])
    confidence: float = Field(description="Mean probability of ``label``.")
    probabilities: dict[str, float] = Field(
        description="Mean class probabilities across posterior samples, by class name."
    )
    intervals: dict[str, Interval] = Field(
        description="Central interval of each class probability across posterior samples."
    )
    uncertainty: ClassUncertainty
    filename: str | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="The uploaded file's name (multipart requests only).",
    )


class CifarResponse(BaseModel):
    """Answer to /predict/cifar: one prediction per image, in order."""

    model: ModelRef
    samples: int = Field(description="Posterior weight samples used.")
    level: float = Field(description="Level of each central interval.")
    predictions: list[CifarPrediction]


class HealthResponse(BaseModel):
    """Liveness or readiness."""

    status: str = Field(examples=["ok"])


class ModelInfo(BaseModel):
    """A loaded model, as /models lists it."""

    name: str = Field(description="Model name, as in responses.", examples=["wine-bnn"])
    kind: str = Field(description="Task: regression or classification.", examples=["regression"])
    version: str = Field(description="First 12 hex digits of the checkpoint's sha256.")
    device: str = Field(description="Where it runs, e.g. 'cpu' or 'cuda:0'.")
    default_samples: int = Field(description="Posterior samples when ``samples`` is not given.")
    max_samples: int = Field(description="Largest ``samples`` accepted.")
    input: dict[str, Any] = Field(description="Short description of the expected input.")
    test_metrics: dict[str, float] = Field(
        description="Test-set metrics recorded in the checkpoint's manifest."
    )
    ready: bool = Field(description="Warmed up and serving.")


class ModelsResponse(BaseModel):
    """Answer to GET /models."""

    models: list[ModelInfo]
