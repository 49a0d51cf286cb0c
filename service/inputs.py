"""Turn a request body into model input, or into an ``InputError`` the client can act on.

Pure functions over what the route has already read, so each rule of the contract is
tested without a server. The routes read raw bytes rather than letting FastAPI parse the
body: the contract's limits (instances, file sizes) are checked before the costly work.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from pydantic import TypeAdapter, ValidationError
from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from service.errors import ErrorEntry, InputError, error_entry
from service.schemas import ImageJsonBody, tabular_error_loc, tabular_rows

__all__ = [
    "FileCheck",
    "check_content_type",
    "image_files_from_json",
    "image_files_from_multipart",
    "parse_json",
    "table_rows",
]

Loc = tuple[str | int, ...]

_FILES: Final = "files"

# Headers a part may have (python-multipart's default is 8; a browser sends 2 or 3).
_MAX_PART_HEADERS: Final = 16
# Parts a form may have, as Starlette caps them: far above any ``max_images``, so a client
# over its image limit is told the count; a body of tiny parts is refused without a list of
# errors as long as itself.
_MAX_PARTS: Final = 1000


def check_content_type(request_content_type: str | None, allowed: tuple[str, ...]) -> str:
    """Return the media type, lowercased and without parameters, if the route takes it."""
    media_type = (request_content_type or "").partition(";")[0].strip().lower()
    if media_type in (item.lower() for item in allowed):
        return media_type
    expected = ", ".join(allowed)
    if not media_type:
        raise InputError.unsupported_media_type(
            f"Content-Type header is missing; expected one of: {expected}"
        )
    raise InputError.unsupported_media_type(
        f"Content-Type {media_type!r} is not supported; expected one of: {expected}"
    )


def parse_json(raw: bytes) -> object:
    """Decode a JSON body. NaN and Infinity tokens get through; validation refuses them."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError.unprocessable(
            loc=("body", exc.pos),
            type="json_invalid",
            msg=f"JSON decode error: {exc.msg} (line {exc.lineno}, column {exc.colno})",
        ) from exc
    except UnicodeDecodeError as exc:
        raise InputError.unprocessable(
            loc=("body",), type="json_invalid", msg=f"JSON decode error: body is not UTF-8: {exc}"
        ) from exc
    except ValueError as exc:  # e.g. an integer literal with thousands of digits
        raise InputError.unprocessable(
            loc=("body",), type="json_invalid", msg=f"JSON decode error: {exc}"
        ) from exc
    except RecursionError as exc:
        raise InputError.unprocessable(
            loc=("body",), type="json_invalid", msg="JSON decode error: nested too deeply"
        ) from exc


def table_rows(
    payload: object, body: TypeAdapter[Any], features: tuple[str, ...], *, max_instances: int
) -> np.ndarray:
    """Validate a tabular body (``body``, built for ``features``); return float32 ``N × F``."""
    _check_count(payload, "instances", max_instances, what="instances")
    try:
        validated = body.validate_python(payload)
    except ValidationError as exc:
        raise _invalid(exc, tabular_error_loc) from exc
    rows = tabular_rows(validated, features)
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), len(features))


def image_files_from_json(payload: object, *, max_images: int) -> list[tuple[str, bytes]]:
    """Validate a JSON image body; return ``("instances[i]", file bytes)`` pairs."""
    _check_count(payload, "instances", max_images, what="images")
    try:
        body = ImageJsonBody.model_validate(payload)
    except ValidationError as exc:
        raise _invalid(exc) from exc
    files: list[tuple[str, bytes]] = []
    errors: list[ErrorEntry] = []
    for index, item in enumerate(body.instances):
        try:
            # Whitespace is dropped first: base64 tools often wrap lines at 76 characters.
            data = base64.b64decode("".join(item.b64.split()), validate=True)
        except ValueError as exc:
            errors.append(
                error_entry(
                    loc=("body", "instances", index, "b64"),
                    type="base64_invalid",
                    msg=f"Input should be valid base64 of an image file: {exc}",
                )
            )
            continue
        files.append((_json_label(index), data))
    if errors:
        raise InputError.from_entries(errors)
    return files


# Called with each file's index, name and bytes as soon as its part has arrived, before the
# rest of the body is read: it may refuse the request there (an image too large, say).
FileCheck = Callable[[int, str, bytes], None]


async def image_files_from_multipart(
    request: Request,
    *,
    max_images: int,
    max_file_bytes: int,
    on_file: FileCheck | None = None,
) -> list[tuple[str, bytes]]:
    """Read the ``files`` parts of a multipart body; return ``(filename, file bytes)`` pairs.

    The body is parsed as it streams in (python-multipart, as Starlette does, but kept in
    memory: the body limit already bounds it), so that ``on_file`` can refuse a request on its
    first bad image rather than after reading and parsing all of it. What is wrong with the
    form itself (other parts, text fields, too many files) is said all at once at the end.
    """
    _, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if not boundary:
        raise _invalid_multipart("its Content-Type names no boundary")
    form = _StreamedForm()
    parser = MultipartParser(boundary, form.callbacks(), max_header_count=_MAX_PART_HEADERS)
    collected = _Collected(max_images, max_file_bytes, on_file)
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            for part in form.take_parts():
                collected.take(part)
        parser.finalize()
    except MultipartParseError as exc:
        raise _invalid_multipart(str(exc)) from exc
    if not form.ended:
        raise _invalid_multipart("the body ended before its closing boundary")
    files, errors = collected.files, collected.errors
    if not collected.file_parts:
        errors.append(
            error_entry(
                loc=("body", _FILES),
                type="missing",
                msg="Field required: send one or more images as parts named 'files'",
            )
        )
    if len(files) > max_images:
        errors.append(_too_many(("body", _FILES), len(files), max_images, "images"))
    if errors:
        raise InputError.from_entries(errors)
    return files


@dataclass
class _Part:
    name: str
    filename: str | None  # None: a text field, not a file
    data: bytearray = field(default_factory=bytearray)


class _StreamedForm:
    """python-multipart's callbacks, collecting whole parts: headers, then their bytes."""

    def __init__(self) -> None:
        self.ended = False
        self._done: list[_Part] = []
        self._part: _Part | None = None
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._disposition = b""

    def take_parts(self) -> list[_Part]:
        """The parts completed since the last call, in order."""
        done, self._done = self._done, []
        return done

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._header_field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._end,
            "on_end": self._finished,
        }

    def _begin(self) -> None:
        self._disposition = b""
        self._part = None

    def _header_end(self) -> None:
        if bytes(self._header_field).lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise MultipartParseError("a part has no Content-Disposition name")
        filename = options.get(b"filename")
        self._part = _Part(
            _decoded(options[b"name"]), None if filename is None else _decoded(filename)
        )

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._part is not None:
            self._part.data.extend(data[start:end])

    def _end(self) -> None:
        if self._part is not None:
            self._done.append(self._part)
            self._part = None

    def _finished(self) -> None:
        self.ended = True


@dataclass
class _Collected:
    """What a multipart body has given so far: its files, and what is wrong with its form."""

    max_images: int
    max_file_bytes: int
    on_file: FileCheck | None
    files: list[tuple[str, bytes]] = field(default_factory=list)
    errors: list[ErrorEntry] = field(default_factory=list)
    parts: int = 0
    file_parts: int = 0  # parts named "files", text fields among them
    other_names: set[str] = field(default_factory=set)

    def take(self, part: _Part) -> None:
        """File a completed part: a file, or what is wrong with it; ``on_file`` sees each file."""
        self.parts += 1
        if self.parts > _MAX_PARTS:
            raise InputError.unprocessable(
                loc=("body",),
                type="too_long",
                msg=f"Too many form parts: more than {_MAX_PARTS}",
            )
        if part.name != _FILES:
            if part.name not in self.other_names:
                self.other_names.add(part.name)
                self.errors.append(
                    error_entry(
                        loc=("body", part.name),
                        type="extra_forbidden",
                        msg=f"Unexpected form part {part.name!r}: send each image as a part "
                        "named 'files'",
                    )
                )
            return
        index = self.file_parts
        self.file_parts += 1
        if part.filename is None:
            self.errors.append(
                error_entry(
                    loc=("body", _FILES, index),
                    type="file_type",
                    msg="Input should be a file upload (a part with a filename), not a text field",
                )
            )
            return
        if len(part.data) > self.max_file_bytes:
            raise InputError.too_large(
                f"{_FILES}[{index}] {part.filename!r} is {len(part.data)} bytes; "
                f"the limit per file is {self.max_file_bytes} bytes"
            )
        data = bytes(part.data)
        self.files.append((part.filename, data))
        if self.on_file is not None and len(self.files) <= self.max_images and not self.errors:
            self.on_file(index, part.filename, data)


def _decoded(value: bytes) -> str:
    """A part's name or filename: UTF-8 as browsers send it, else Latin-1 (as Starlette)."""
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _invalid_multipart(reason: str) -> InputError:
    return InputError.unprocessable(
        loc=("body",), type="multipart_invalid", msg=f"Invalid multipart body: {reason}"
    )


def _json_label(index: int) -> str:
    return f"instances[{index}]"


def _check_count(payload: object, key: str, limit: int, *, what: str) -> None:
    """Refuse an over-long list before validating it: validation is the costly part."""
    items = payload.get(key) if isinstance(payload, dict) else None
    if isinstance(items, list) and len(items) > limit:
        raise InputError.from_entries([_too_many(("body", key), len(items), limit, what)])


def _too_many(loc: tuple[str, ...], count: int, limit: int, what: str) -> ErrorEntry:
    return error_entry(
        loc=loc, type="too_long", msg=f"Too many {what}: got {count}, the limit is {limit}"
    )


def _invalid(exc: ValidationError, fix_loc: Callable[[Loc], Loc] | None = None) -> InputError:
    """Pydantic's errors in FastAPI's shape, located under ``body`` as FastAPI would."""
    entries = []
    for error in exc.errors(include_url=False, include_context=False):
        loc = fix_loc(error["loc"]) if fix_loc else error["loc"]
        entries.append(
            error_entry(
                loc=("body", *loc), type=error["type"], msg=error["msg"], input=error["input"]
            )
        )
    return InputError.from_entries(entries)
