"""Request and response bodies of the HTTP contract (``API.md``), as pydantic models.

Free of torch and of the models, so that the Python client and the command line can use them
on a machine without either. A tabular model's body is built for its own feature names
(:func:`tabular_body_adapter`); everything else is the same for every model of a task kind.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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

__all__ = [
    "CIFAR_DEFAULT",
    "CIFAR_FAMILY",
    "WINE_DEFAULT",
    "WINE_EXAMPLE_ROW",
    "WINE_FAMILY",
    "B64Image",
    "ClassUncertainty",
    "ClassificationPrediction",
    "ClassificationResponse",
    "DensityCurve",
    "EpistemicThreshold",
    "FiniteNumber",
    "HealthResponse",
    "ImageJsonBody",
    "Interval",
    "ModelInfo",
    "ModelRef",
    "ModelsResponse",
    "RegressionPrediction",
    "RegressionResponse",
    "family_model",
    "inline_schema",
    "tabular_body_adapter",
    "tabular_error_loc",
]

# Route families: /predict/wine?model=X is model wine-X and /predict/cifar?model=X is cifar-X,
# X defaulting to these.
WINE_FAMILY: Final = "wine"
CIFAR_FAMILY: Final = "cifar"
WINE_DEFAULT: Final = "bnn"
CIFAR_DEFAULT: Final = "bcnn"
# The example of /docs for the wine routes (``/predict/wine``, v2 ``infer``): the UCI file's
# first white wine, its eleven features in the file's column order (API.md).
WINE_EXAMPLE_ROW: Final = (7.0, 0.27, 0.36, 20.7, 0.045, 45.0, 170.0, 1.001, 3.0, 0.45, 8.8)


def family_model(family: str, model: str) -> str:
    """The model ``/predict/FAMILY?model=MODEL`` serves; ``family_model(F, "")`` is the prefix
    every model of family F has."""
    return f"{family}-{model}"


# Larger magnitudes overflow to infinity once cast to the networks' float32 input.
_FLOAT32_MAX: Final = float(np.finfo(np.float32).max)


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


# ---------------------------------------------------------------------------------------------
# Tabular request: {"instances": [INSTANCE, ...]} or one bare INSTANCE, where an INSTANCE is an
# object with exactly the model's features, or an array of them in the model's order.

# Union tags; pydantic writes them into error locations, see ``tabular_error_loc``.
_BATCH, _OBJECT, _ARRAY = "batch", "object", "array"


def _instance_kind(value: Any) -> str | None:
    """Pick the branch from the JSON type alone, so errors only concern what was sent."""
    if isinstance(value, dict | BaseModel):
        return _OBJECT
    if isinstance(value, list | tuple):
        return _ARRAY
    return None


def _body_kind(value: Any) -> str | None:
    if isinstance(value, dict) and "instances" in value:
        return _BATCH
    return _instance_kind(value)


def tabular_body_adapter(
    features: Sequence[str], example: Sequence[float] | None = None
) -> TypeAdapter[Any]:
    """The validator (and OpenAPI schema) of a tabular model's body, for its ``features``.

    Validated objects are models whose field ``f{i}`` holds feature i (the names themselves
    may be anything a CSV header holds, so they are aliases); arrays are lists of floats.
    """
    features = tuple(features)
    order = ", ".join(features)
    count = len(features)
    example_object = dict(zip(features, example, strict=True)) if example is not None else None

    def check_row_length(value: Any) -> Any:
        # Say how many values were sent: pydantic's own message talks of "items after
        # validation".
        if isinstance(value, list | tuple) and len(value) != count:
            raise PydanticCustomError(
                "too_short" if len(value) < count else "too_long",
                "Array should hold the features in the model's order ({order}): "
                "expected {count} values, got {got}",
                {"order": order, "count": count, "got": len(value)},
            )
        return value

    instance_object: type[BaseModel] = create_model(
        "TabularFeatures",
        __config__=ConfigDict(
            extra="forbid",
            json_schema_extra={"examples": [example_object]} if example_object else None,
        ),
        __doc__="One row by its features' names; each must be present, no others.",
        **{
            f"f{index}": (FiniteNumber, Field(alias=name, title=name))
            for index, name in enumerate(features)
        },
    )
    row = Annotated[
        list[FiniteNumber],
        BeforeValidator(check_row_length),
        Field(
            min_length=count,
            max_length=count,
            description=f"The {count} features as numbers, in the model's order: {order}.",
        ),
    ]
    instance_message = (
        f"Input should be an object with the model's {count} features or an array of "
        f"{count} numbers"
    )
    instance = Annotated[
        Annotated[instance_object, Tag(_OBJECT)] | Annotated[row, Tag(_ARRAY)],
        Discriminator(
            _instance_kind,
            custom_error_type="tabular_instance",
            custom_error_message=instance_message,
        ),
    ]
    batch: type[BaseModel] = create_model(
        "TabularBatch",
        __config__=ConfigDict(extra="forbid"),
        __doc__="Several rows; predictions come back in the same order.",
        instances=(
            list[instance],  # type: ignore[valid-type]
            Field(min_length=1, description="One or more rows (at most the model's limit)."),
        ),
    )
    body = Annotated[
        Annotated[batch, Tag(_BATCH)]
        | Annotated[instance_object, Tag(_OBJECT)]
        | Annotated[row, Tag(_ARRAY)],
        Discriminator(
            _body_kind,
            custom_error_type="tabular_body",
            custom_error_message='Input should be {"instances": [...]} or a single instance',
        ),
    ]
    return TypeAdapter(body)


def tabular_rows(body: Any, features: Sequence[str]) -> list[list[float]]:
    """The rows of a validated tabular body, each in the model's feature order."""
    instances = body.instances if hasattr(body, "instances") else [body]
    fields = [f"f{index}" for index in range(len(features))]
    return [
        [getattr(instance, name) for name in fields]
        if isinstance(instance, BaseModel)
        else instance
        for instance in instances
    ]


def tabular_error_loc(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Drop the union tags from a tabular body's error location: clients never sent them.

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
# Image request (JSON form; multipart needs no model)


class B64Image(BaseModel):
    """One image file, base64-encoded."""

    model_config = ConfigDict(extra="forbid")

    b64: str = Field(
        min_length=1,
        description="Base64 of the image file's bytes (PNG, JPEG, BMP, GIF or WebP; any size).",
    )


class ImageJsonBody(BaseModel):
    """Images for an image model sent as JSON instead of multipart."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"instances": [{"b64": "iVBORw0KGgoAAAANSUhEUgAA..."}]}]},
    )

    instances: list[B64Image] = Field(
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


class DensityCurve(BaseModel):
    """The predictive mixture's density on a grid (only when the request asks, ``density=G``).

    Computed by the service from the same S components as every other number of the answer:
    G evenly spaced points from 4 component standard deviations below the lowest component
    mean to 4 above the highest, plus the interval's ends and the mean, in increasing order.
    """

    x: list[float] = Field(description="Target values, increasing.")
    pdf: list[float] = Field(description="The mixture's density at each x.")


class RegressionPrediction(BaseModel):
    """The predicted target of one row, with its uncertainty split."""

    mean: float = Field(description="Mean of the predictive mixture.")
    std: float = Field(description="Total standard deviation: sqrt(epistemic² + aleatoric²).")
    interval: Interval = Field(description="Exact central interval of the predictive mixture.")
    epistemic_std: float | None = Field(
        description="Spread of the mean across posterior samples; null when not modelled."
    )
    aleatoric_std: float = Field(description="Noise the model expects: sqrt(mean of sigma²).")
    density: DensityCurve | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="The predictive density on a grid; present only with ``density=G``.",
    )


class RegressionResponse(BaseModel):
    """Answer of a tabular-regression model: one prediction per instance, in order."""

    model: ModelRef
    samples: int = Field(description="Posterior weight samples used.")
    level: float = Field(description="Level of each central interval.")
    predictions: list[RegressionPrediction]


class ClassUncertainty(BaseModel):
    """Entropy decomposition in nats; ``epistemic`` is the mutual information."""

    total: float = Field(description="Entropy of the mean class probabilities.")
    aleatoric: float = Field(description="Mean entropy of the per-sample class probabilities.")
    epistemic: float = Field(description="total - aleatoric (mutual information, >= 0).")


class ClassificationPrediction(BaseModel):
    """Predicted class of one image, with per-class intervals and uncertainty."""

    label: str = Field(description="Most probable class (see the model's classes).")
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


class ClassificationResponse(BaseModel):
    """Answer of an image-classification model: one prediction per image, in order."""

    model: ModelRef
    samples: int = Field(description="Posterior weight samples used.")
    level: float = Field(description="Level of each central interval.")
    predictions: list[ClassificationPrediction]


class HealthResponse(BaseModel):
    """Liveness or readiness."""

    status: str = Field(examples=["ok"])


class EpistemicThreshold(BaseModel):
    """Where an image model's epistemic term counts as unusually high: a quantile of the term
    over the model's own test images, from its manifest."""

    epistemic_nats: float = Field(description="The threshold, in nats (mutual information).")
    quantile: float = Field(description="Which quantile of the test images' terms, e.g. 0.95.")
    samples: int = Field(description="Posterior samples it was measured at (fewer see less).")
    images: int = Field(description="Test images it was measured on.")


class ModelInfo(BaseModel):
    """A served model, as GET /models lists it."""

    name: str = Field(description="Model name, as in responses and routes.", examples=["wine-bnn"])
    task: str = Field(
        description="Task kind: tabular-regression or image-classification.",
        examples=["tabular-regression"],
    )
    kind: str = Field(description="The network: tabular-bnn, tabular-gaussian, bayesian-cnn.")
    version: str = Field(description="First 12 hex digits of the checkpoint's sha256.")
    device: str = Field(description="Where it runs, e.g. 'cpu' or 'cuda:0'.")
    execution: str = Field(
        description="How its batches run: 'eager', or 'cuda-graphs' (the pass at the default "
        "samples and level replayed as CUDA graphs captured at start-up)."
    )
    default_samples: int = Field(description="Posterior samples when ``samples`` is not given.")
    max_samples: int = Field(
        description="Largest ``samples`` that draws more networks (1 for a deterministic one)."
    )
    max_instances: int = Field(description="Most rows or images per request.")
    input: dict[str, Any] = Field(description="The expected input: features, or image formats.")
    classes: list[str] | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Class names in index order (classification only).",
    )
    members: int = Field(1, description="Networks in the model: 1, or K for an ensemble.")
    test_metrics: dict[str, int | float | None] = Field(
        description="Test-set metrics recorded in the checkpoint's manifest."
    )
    epistemic_threshold: EpistemicThreshold | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Image models: above it, an answer's epistemic term is unusually high.",
    )
    ready: bool = Field(description="Warmed up and serving.")


class ModelsResponse(BaseModel):
    """Answer to GET /models."""

    models: list[ModelInfo]


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its ``$defs`` written in place, for ``openapi_extra``: an
    OpenAPI document has no ``$defs`` at its root for the references to point to."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref")
            if isinstance(reference, str) and reference.startswith("#/$defs/"):
                return resolve(definitions[reference.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)
