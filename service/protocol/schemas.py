"""The Open Inference Protocol's JSON bodies (REST), as pydantic models.

Requests are validated with these (an inference request's envelope: names, shapes,
datatypes, parameters; the tensor data itself is checked by :mod:`service.protocol.tensors`,
which knows each datatype). Responses are written as plain dicts for speed; their models here
describe them in ``/docs``. Fields the spec does not define are ignored in requests, as its
clients add their own (``model_name``, say).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from service.schemas import WINE_EXAMPLE_ROW

__all__ = [
    "ErrorResponse",
    "InferenceRequest",
    "InferenceResponse",
    "LiveResponse",
    "ModelMetadataResponse",
    "ModelReadyResponse",
    "Parameters",
    "ReadyResponse",
    "RequestInput",
    "RequestOutput",
    "ResponseOutput",
    "ServerMetadataResponse",
    "TensorForm",
    "TensorMetadata",
]


def _scalar(value: Any) -> Any:
    """A parameter as sent: true stays a boolean and "10" a string, so that each parameter's
    own check can say what was sent; only objects, arrays and null are refused here."""
    if isinstance(value, bool | int | float | str):
        return value
    kind = "null" if value is None else "an array" if isinstance(value, list) else "an object"
    raise PydanticCustomError(
        "parameter_type",
        "a parameter is a string, a number or a boolean, not {kind}",
        {"kind": kind},
    )


# $parameter = $string : $string | $number | $boolean
Parameters = dict[str, Annotated[Any, AfterValidator(_scalar)]]
# Each dimension "must be an integer representable as an unsigned 64-bit integer value".
Dimension = Annotated[int, Field(ge=0, lt=2**64, strict=True)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RequestInput(_Body):
    """One input tensor; its data in ``data``, or after the JSON (``binary_data_size``)."""

    name: str = Field(description="The input's name, as the model metadata lists it.")
    shape: list[Dimension] = Field(description="The whole batch's shape, e.g. [N, 11].")
    datatype: str = Field(description="FP32, UINT8, BYTES, ...", examples=["FP32"])
    parameters: Parameters = Field(
        default_factory=dict,
        description="binary_data_size: the byte size of the tensor's binary data, which then "
        "follows the JSON in the body (Triton's binary tensor data extension).",
    )
    data: Any = Field(
        default=None,
        description="The elements in row-major order, flat or nested as the shape; "
        "BYTES elements are strings. Absent when the data is binary.",
    )


class RequestOutput(_Body):
    """An output to return; ``binary_data: true`` returns it as binary data after the JSON."""

    name: str
    parameters: Parameters = Field(default_factory=dict)


class InferenceRequest(_Body):
    """POST /v2/models/{name}[/versions/{version}]/infer."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "id": "42",
                    "parameters": {"samples": 100, "level": 0.9},
                    "inputs": [
                        {
                            "name": "input",
                            "datatype": "FP32",
                            "shape": [1, 11],
                            "data": list(WINE_EXAMPLE_ROW),
                        }
                    ],
                    "outputs": [{"name": "mean"}, {"name": "lower"}, {"name": "upper"}],
                }
            ]
        },
    )

    id: str | None = Field(default=None, description="Echoed in the response.")
    parameters: Parameters = Field(
        default_factory=dict,
        description="samples: posterior draws S (default and maximum: the model metadata's "
        "parameters); level: the central intervals' level, 0 < level < 1 (default 0.95); "
        "binary_data_output: return every output as binary data.",
    )
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = Field(
        default=None, description="The outputs to return, in this order; absent: all of them."
    )


class TensorForm(BaseModel):
    datatype: str
    shape: list[int]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 for a dimension of any size (the batch).")
    alternatives: list[TensorForm] | None = Field(
        default=None,
        description="Other forms the input may take (an image model's: UINT8 pixels at its "
        "input size, beside BYTES image files).",
    )


class ServerMetadataResponse(BaseModel):
    name: str = Field(examples=["bayes-serve"])
    version: str
    extensions: list[str] = Field(examples=[["binary_tensor_data", "parameters"]])


class ModelMetadataResponse(BaseModel):
    name: str
    versions: list[str] = Field(description="The checkpoint's version: 12 hex digits.")
    platform: str = Field(examples=["pytorch_safetensors"])
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: Parameters = Field(
        description="task, kind, default_samples, max_samples, max_instances (and image_size "
        "for an image model)."
    )
    classes: list[str] | None = Field(
        default=None, description="Image classification: the classes, in the outputs' order."
    )
    features: list[str] | None = Field(
        default=None, description="Tabular regression: the input's columns, in order."
    )
    target: str | None = Field(default=None, description="Tabular regression: what is predicted.")


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = Field(
        default=None, description="binary_data_size, when the data follows the JSON."
    )
    data: list[Any] | None = Field(default=None, description="Flat, in row-major order.")


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    parameters: Parameters = Field(description="The effective samples and level.")
    outputs: list[ResponseOutput]


class ErrorResponse(BaseModel):
    error: str


class LiveResponse(BaseModel):
    live: bool


class ReadyResponse(BaseModel):
    ready: bool


class ModelReadyResponse(BaseModel):
    name: str
    ready: bool
