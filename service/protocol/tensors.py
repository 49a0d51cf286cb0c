"""Tensors of the Open Inference Protocol: request bodies in, numpy arrays out, and back.

A request body is the JSON inference request, or (Triton's binary tensor data extension) that
JSON followed by the raw bytes of some of its inputs, the JSON's length in the
``Inference-Header-Content-Length`` header. :func:`parse_infer_request` checks the envelope
and hands out each input as a :class:`RequestTensor`, whose :meth:`RequestTensor.array`
checks and converts its data only when the model's task has accepted its name, datatype and
shape (so a wrong shape is refused before any data is read). :func:`encode_infer_response`
writes named arrays as JSON data or as binary data after the JSON, output by output.

Every refusal is a :class:`~service.protocol.ProtocolError` whose message names the tensor,
and the index or dimension, with what was expected. Nothing here knows a model.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import orjson
from pydantic import ValidationError

from service.protocol import ProtocolError
from service.protocol.schemas import InferenceRequest, Parameters

__all__ = [
    "BYTES",
    "DATATYPES",
    "HEADER_LENGTH",
    "InferRequest",
    "RequestTensor",
    "RequestedOutput",
    "TensorSpec",
    "datatype_of",
    "encode_infer_response",
    "match_input",
    "parse_infer_request",
    "select_outputs",
]

HEADER_LENGTH: Final = "inference-header-content-length"
BYTES: Final = "BYTES"
# The fixed-size datatypes and their elements; binary data is little-endian.
_NUMERIC: Final[dict[str, np.dtype[Any]]] = {
    name: np.dtype(kind)
    for name, kind in (
        ("BOOL", np.bool_),
        ("UINT8", np.uint8),
        ("UINT16", np.uint16),
        ("UINT32", np.uint32),
        ("UINT64", np.uint64),
        ("INT8", np.int8),
        ("INT16", np.int16),
        ("INT32", np.int32),
        ("INT64", np.int64),
        ("FP16", np.float16),
        ("FP32", np.float32),
        ("FP64", np.float64),
    )
}
DATATYPES: Final = (*_NUMERIC, BYTES)
_BY_DTYPE: Final = {dtype: name for name, dtype in _NUMERIC.items()}
# Binary BYTES elements: a 4-byte little-endian length, then the bytes.
_LENGTH: Final = struct.Struct("<I")
# Parameters of Triton's that would change what is answered and are not implemented here.
_UNSUPPORTED_PARAMETERS: Final = {
    "shared_memory_region": "shared memory (Triton's shared-memory extension)",
    "classification": "classification results (Triton's classification extension)",
}


@dataclass(frozen=True)
class TensorSpec:
    """A tensor of a model's metadata; -1 marks a dimension of any size (the batch).

    ``labels`` say what each dimension is, for the messages that refuse a wrong shape.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    labels: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @property
    def form(self) -> str:
        return f"{self.datatype} {list(self.shape)}"


@dataclass(frozen=True)
class RequestTensor:
    """One input of a request, its data not yet read: ``data`` (JSON) or ``raw`` (binary)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Any = None
    raw: bytes | None = None

    @property
    def binary(self) -> bool:
        return self.raw is not None

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    def refuse(self, problem: str) -> ProtocolError:
        """An error about this input: ``input 'image': <problem>``."""
        return ProtocolError(f"input {self.name!r}: {problem}")

    def array(self) -> np.ndarray:
        """The data, checked against the datatype and shape: an array of that shape.

        Numbers come as the datatype's numpy type; BYTES as an object array of ``bytes``
        (JSON strings encoded as UTF-8).
        """
        if self.datatype == BYTES:
            items = self._binary_strings() if self.raw is not None else self._json_strings()
            array = np.empty(len(items), dtype=object)
            array[:] = items
            return array.reshape(self.shape)
        dtype = _NUMERIC[self.datatype]
        if self.raw is not None:
            expected = self.count * dtype.itemsize
            if len(self.raw) != expected:
                raise self.refuse(
                    f"binary_data_size is {len(self.raw)} bytes; shape {list(self.shape)} of "
                    f"{self.datatype} ({dtype.itemsize} bytes each) is {expected} bytes"
                )
            return np.frombuffer(self.raw, dtype=dtype.newbyteorder("<")).reshape(self.shape)
        return self._json_numbers(dtype).reshape(self.shape)

    def _json_numbers(self, dtype: np.dtype[Any]) -> np.ndarray:
        data = self._json_list()
        array = _fast_array(data, dtype)
        if array is None:  # something in it is not of the datatype: find it, say where
            array = np.array(
                [self._checked(path, value) for path, value in _walk(data)], dtype=dtype
            )
        if array.size != self.count:
            raise self._wrong_count(array.size)
        if dtype.kind in "iu" and array.size:
            limits = np.iinfo(dtype)
            outside = (array < limits.min) | (array > limits.max)
            if outside.any():
                index = int(np.flatnonzero(outside.ravel())[0])
                raise self.refuse(
                    f"element {index} (row-major) is {array.ravel()[index]}, outside "
                    f"{self.datatype}'s range {limits.min}..{limits.max}"
                )
        if array.dtype != dtype:
            with np.errstate(over="ignore"):  # beyond FP32's range is inf: the task refuses it
                array = array.astype(dtype)
        return array

    def _checked(self, path: tuple[int, ...], value: Any) -> Any:
        kind = _NUMERIC[self.datatype].kind
        if kind == "b":
            ok = isinstance(value, bool)
            expected = "true or false"
        elif kind in "iu":
            limits = np.iinfo(_NUMERIC[self.datatype])
            ok = isinstance(value, int) and not isinstance(value, bool)
            ok = ok and limits.min <= value <= limits.max
            expected = f"integers from {limits.min} to {limits.max}"
        else:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if isinstance(value, int) and ok:
                try:
                    value = float(value)
                except OverflowError:
                    ok = False
            expected = "numbers"
        if not ok:
            raise self.refuse(
                f"data{_index(path)} is {_json_kind(value)}; {self.datatype} elements must be "
                f"{expected}"
            )
        return value

    def _json_strings(self) -> list[bytes]:
        items: list[bytes] = []
        for path, value in _walk(self._json_list()):
            if not isinstance(value, str):
                raise self.refuse(
                    f"data{_index(path)} is {_json_kind(value)}; BYTES elements in JSON must be "
                    "strings"
                )
            items.append(value.encode())
        if len(items) != self.count:
            raise self._wrong_count(len(items))
        return items

    def _binary_strings(self) -> list[bytes]:
        raw = self.raw or b""
        view = memoryview(raw)
        items: list[bytes] = []
        offset = 0
        while offset < len(raw):
            if offset + _LENGTH.size > len(raw):
                raise self.refuse(
                    f"binary element {len(items)} is cut off inside its 4-byte length prefix"
                )
            (size,) = _LENGTH.unpack_from(raw, offset)
            offset += _LENGTH.size
            if offset + size > len(raw):
                raise self.refuse(
                    f"binary element {len(items)} says it has {size} bytes; only "
                    f"{len(raw) - offset} are left in binary_data_size"
                )
            items.append(bytes(view[offset : offset + size]))
            offset += size
        if len(items) != self.count:
            raise self.refuse(
                f"binary data holds {len(items)} BYTES elements; shape {list(self.shape)} "
                f"holds {self.count}"
            )
        return items

    def _json_list(self) -> list[Any]:
        if not isinstance(self.data, list):
            raise self.refuse(
                f"data should be an array (flat, or nested as the shape), not "
                f"{_json_kind(self.data)}"
            )
        return self.data

    def _wrong_count(self, got: int) -> ProtocolError:
        return self.refuse(
            f"data holds {got} elements; shape {list(self.shape)} holds {self.count}"
        )


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool | None  # None: as the request's binary_data_output says


@dataclass(frozen=True)
class InferRequest:
    """A checked inference request: its inputs' data is read by :meth:`RequestTensor.array`."""

    id: str | None
    parameters: Parameters
    inputs: tuple[RequestTensor, ...]
    outputs: tuple[RequestedOutput, ...] | None  # None: every output of the model
    binary_output: bool  # the default for each output: binary data after the JSON


def parse_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    """Check the envelope of an inference request body; split off its binary tensor data."""
    head, tail = body, b""
    if header_length is not None:
        length = _header_length(header_length, len(body))
        head, tail = body[:length], body[length:]
    try:
        payload = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"the inference request is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ProtocolError(
            f"the inference request should be a JSON object, not {_json_kind(payload)}"
        )
    try:
        request = InferenceRequest.model_validate(payload)
    except ValidationError as exc:
        raise ProtocolError(_envelope_error(exc, payload)) from None

    inputs: list[RequestTensor] = []
    offset = 0
    for item in request.inputs:
        tensor = RequestTensor(item.name, item.datatype, tuple(item.shape), item.data)
        if any(tensor.name == other.name for other in inputs):
            raise tensor.refuse("given twice; each input once")
        if item.datatype not in DATATYPES:
            raise tensor.refuse(
                f"datatype {item.datatype!r} is none of the protocol's: {', '.join(DATATYPES)}"
            )
        _refuse_unsupported(f"input {item.name!r}", item.parameters)
        size = item.parameters.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise tensor.refuse(
                    f"parameters.binary_data_size should be a byte count, not {size!r}"
                )
            if item.data is not None:
                raise tensor.refuse("has both data and binary_data_size; give one of them")
            if header_length is None:
                raise tensor.refuse(
                    "has binary_data_size but the request has no "
                    "Inference-Header-Content-Length header to say where the binary data starts"
                )
            if offset + size > len(tail):
                raise tensor.refuse(
                    f"binary_data_size is {size} bytes, but only {len(tail) - offset} bytes of "
                    "binary data are left after the JSON and the inputs before it"
                )
            tensor = RequestTensor(
                tensor.name, tensor.datatype, tensor.shape, None, tail[offset : offset + size]
            )
            offset += size
        elif item.data is None:
            raise tensor.refuse(
                "has no data: give data, or binary data after the JSON with "
                "parameters.binary_data_size"
            )
        inputs.append(tensor)
    if offset != len(tail):
        raise ProtocolError(
            f"{len(tail) - offset} bytes of binary data follow the JSON that no input's "
            "binary_data_size accounts for"
        )

    binary_output = _flag(request.parameters, "binary_data_output", "the request's parameters")
    outputs = None
    if request.outputs is not None:
        outputs = []
        for output in request.outputs:
            where = f"output {output.name!r}"
            _refuse_unsupported(where, output.parameters)
            if any(output.name == other.name for other in outputs):
                raise ProtocolError(f"{where} is requested twice")
            binary = (
                _flag(output.parameters, "binary_data", f"{where}'s parameters")
                if "binary_data" in output.parameters
                else None
            )
            outputs.append(RequestedOutput(output.name, binary))
        outputs = tuple(outputs)
    return InferRequest(request.id, request.parameters, tuple(inputs), outputs, binary_output)


def match_input(
    inputs: Sequence[RequestTensor], accepted: Sequence[TensorSpec], *, max_batch: int
) -> tuple[RequestTensor, TensorSpec]:
    """The request's one input, if it has one of the ``accepted`` forms (all of one name).

    A -1 dimension is the batch: at least 1 and at most ``max_batch``; every other
    dimension must be as the spec says.
    """
    name = accepted[0].name
    if len(inputs) != 1 or inputs[0].name != name:
        got = ", ".join(repr(tensor.name) for tensor in inputs)
        raise ProtocolError(f"the model takes one input, {name!r} ({_forms(accepted)}); got {got}")
    tensor = inputs[0]
    spec = next((spec for spec in accepted if spec.datatype == tensor.datatype), None)
    if spec is None:
        raise tensor.refuse(f"datatype is {tensor.datatype}; the model takes {_forms(accepted)}")
    if len(tensor.shape) != len(spec.shape):
        dims = ", ".join(spec.labels)
        raise tensor.refuse(
            f"shape {list(tensor.shape)} has {len(tensor.shape)} dimensions; a {spec.datatype} "
            f"input has {len(spec.shape)}, {list(spec.shape)}" + (f" ({dims})" if dims else "")
        )
    for dim, (got, want) in enumerate(zip(tensor.shape, spec.shape, strict=True)):
        if (want == -1 and 1 <= got <= max_batch) or got == want:
            continue
        where = f"shape {list(tensor.shape)}: dimension {dim}"
        if dim < len(spec.labels):
            where += f" ({spec.labels[dim]})"
        if want != -1:
            raise tensor.refuse(f"{where} should be {want}, not {got}")
        if got < 1:
            raise tensor.refuse(f"{where} is 0; send at least one")
        raise tensor.refuse(f"{where} is {got}; the limit is {max_batch} per request")
    return tensor, spec


def _forms(accepted: Sequence[TensorSpec]) -> str:
    return " or ".join(spec.form for spec in accepted)


def select_outputs(
    request: InferRequest, available: Sequence[str], model: str
) -> list[tuple[str, bool]]:
    """``(name, binary)`` of each output to return, in order; checked before the model runs."""
    if request.outputs is None:
        return [(name, request.binary_output) for name in available]
    selected = []
    for output in request.outputs:
        if output.name not in available:
            raise ProtocolError(
                f"output {output.name!r} is not an output of model {model}; its outputs are: "
                f"{', '.join(available)}"
            )
        binary = output.binary if output.binary is not None else request.binary_output
        selected.append((output.name, binary))
    return selected


def datatype_of(array: np.ndarray) -> str:
    """The protocol's datatype of an array: object arrays (of str or bytes) are BYTES."""
    if array.dtype.kind in "OSU":
        return BYTES
    return _BY_DTYPE[array.dtype]


def encode_infer_response(
    head: dict[str, Any], outputs: Sequence[tuple[str, np.ndarray, bool]]
) -> tuple[bytes, int | None]:
    """The response body, and the JSON's length when binary data follows it (else None).

    ``head`` holds the fields before ``outputs``; each output is ``(name, array, binary)``.
    """
    described: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, array, binary in outputs:
        datatype = datatype_of(array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            chunk = _binary(array, datatype)
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        elif datatype == BYTES:
            entry["data"] = [_text(item) for item in array.ravel().tolist()]
        else:
            entry["data"] = np.ascontiguousarray(array).ravel()
        described.append(entry)
    header = orjson.dumps({**head, "outputs": described}, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


def _binary(array: np.ndarray, datatype: str) -> bytes:
    if datatype != BYTES:
        return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    parts = []
    for item in array.ravel().tolist():
        data = item.encode() if isinstance(item, str) else bytes(item)
        parts += [_LENGTH.pack(len(data)), data]
    return b"".join(parts)


def _text(item: str | bytes) -> str:
    return item if isinstance(item, str) else item.decode()


def _fast_array(data: list[Any], dtype: np.dtype[Any]) -> np.ndarray | None:
    """numpy's own parse of the nested list, if it is wholly of the datatype's kind; else None.

    numpy would turn ``true`` into 1 among numbers: booleans among numbers (or numbers among
    booleans) send the data to the element-by-element check instead.
    """
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, OverflowError):  # ragged, or mixed beyond numpy's types
        return None
    kind = array.dtype.kind
    accepted = "b" if dtype.kind == "b" else "iu" if dtype.kind in "iu" else "iuf"
    if kind not in accepted:
        return None
    if kind != "b" and array.ndim:
        flat: Any = data
        for _ in range(array.ndim - 1):
            flat = itertools.chain.from_iterable(flat)
        if bool in set(map(type, flat)):
            return None
    return array


def _walk(data: list[Any]) -> Iterator[tuple[tuple[int, ...], Any]]:
    """Every element of a nested list, in row-major order, with its index path; no recursion."""
    stack: list[tuple[tuple[int, ...], Iterator[tuple[int, Any]]]] = [((), enumerate(data))]
    while stack:
        path, items = stack[-1]
        item = next(items, None)
        if item is None:
            stack.pop()
            continue
        index, value = item
        if isinstance(value, list):
            stack.append(((*path, index), enumerate(value)))
        else:
            yield (*path, index), value


def _index(path: tuple[int, ...]) -> str:
    return "".join(f"[{i}]" for i in path)


def _json_kind(value: Any) -> str:
    """A value as the client wrote it, in JSON's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        shown = value if len(value) <= 20 else value[:17] + "..."
        return f"the string {shown!r}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, int):
        shown = str(value) if value.bit_length() < 128 else "a very large integer"
        return f"the number {shown}"
    return type(value).__name__


def _header_length(value: str, body_length: int) -> int:
    try:
        length = int(value)
    except ValueError:
        length = -1
    if length < 0:
        raise ProtocolError(f"Inference-Header-Content-Length {value!r} is not a byte count")
    if length == 0:
        raise ProtocolError(
            "Inference-Header-Content-Length: 0 (a raw binary request, without the JSON "
            "inference request) is not supported; send the JSON header before the binary data"
        )
    if length > body_length:
        raise ProtocolError(
            f"Inference-Header-Content-Length is {length}, but the body has only "
            f"{body_length} bytes"
        )
    return length


def _flag(parameters: Parameters, name: str, where: str) -> bool:
    value = parameters.get(name, False)
    if not isinstance(value, bool):
        raise ProtocolError(f"{where}: {name} should be true or false, not {value!r}")
    return value


def _refuse_unsupported(where: str, parameters: Parameters) -> None:
    for name, what in _UNSUPPORTED_PARAMETERS.items():
        if name in parameters:
            raise ProtocolError(f"{where}: parameters.{name}: {what} is not supported")


def _envelope_error(exc: ValidationError, payload: Any) -> str:
    """Pydantic's errors as one sentence, each located as the client wrote it."""
    problems = []
    for error in exc.errors(include_url=False, include_context=False):
        problems.append(f"{_where(error['loc'], payload)}: {error['msg']}")
    return "the inference request is malformed: " + "; ".join(problems)


def _where(loc: tuple[str | int, ...], payload: Any) -> str:
    """``('inputs', 0, 'shape', 1)`` as ``inputs[0] ('input').shape[1]``."""
    if not loc:
        return "the body"
    text = ""
    node = payload
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str) and len(loc) > 2:
                text += f" ({node['name']!r})"
        else:
            text += f".{part}" if text else part
            node = node.get(part) if isinstance(node, dict) else None
    return text
