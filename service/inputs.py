"""Turn a request body into model input, or into an ``InputError`` the client can act on.

Pure functions over what the route has already read, so each rule of the contract is
tested without a server. The routes read raw bytes rather than letting FastAPI parse the
body: the contract's limits (instances, file sizes) are checked before the costly work.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, Final

import numpy as np
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from service.errors import ErrorEntry, InputError, error_entry
from service.schemas import ImageJsonBody, tabular_error_loc, tabular_rows

__all__ = [
    "check_content_type",
    "image_files_from_json",
    "image_files_from_multipart",
    "parse_json",
    "table_rows",
]

Loc = tuple[str | int, ...]

_FILES: Final = "files"

# Starlette's own cap on file parts; ours (``max_images``) is normally far lower, so the
# client usually gets our message, with the count.
_FORM_MAX_FILES: Final = 1000


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


async def image_files_from_multipart(
    request: Request, *, max_images: int, max_file_bytes: int
) -> list[tuple[str, bytes]]:
    """Read the ``files`` parts of a multipart body; return ``(filename, file bytes)`` pairs."""
    try:
        async with request.form(max_files=max(_FORM_MAX_FILES, max_images + 1)) as form:
            parts = form.multi_items()
            errors = [
                error_entry(
                    loc=("body", name),
                    type="extra_forbidden",
                    msg=f"Unexpected form part {name!r}: send each image as a part named 'files'",
                )
                for name in dict.fromkeys(name for name, _ in parts if name != _FILES)
            ]
            uploads = [value for name, value in parts if name == _FILES]
            if not uploads:
                errors.append(
                    error_entry(
                        loc=("body", _FILES),
                        type="missing",
                        msg="Field required: send one or more images as parts named 'files'",
                    )
                )
            elif len(uploads) > max_images:
                errors.append(_too_many(("body", _FILES), len(uploads), max_images, "images"))
            errors.extend(
                error_entry(
                    loc=("body", _FILES, index),
                    type="file_type",
                    msg="Input should be a file upload (a part with a filename), not a text field",
                )
                for index, upload in enumerate(uploads)
                if not isinstance(upload, UploadFile)
            )
            if errors:
                raise InputError.from_entries(errors)
            return [
                await _read_upload(index, upload, max_file_bytes)
                for index, upload in enumerate(uploads)
                if isinstance(upload, UploadFile)
            ]
    except InputError:
        raise  # ours (an HTTPException too): already says what is wrong
    except (HTTPException, MultiPartException) as exc:
        # Starlette answers a malformed multipart body with a bare 400; the contract says 422.
        message = exc.detail if isinstance(exc, HTTPException) else exc.message
        raise InputError.unprocessable(
            loc=("body",), type="multipart_invalid", msg=f"Invalid multipart body: {message}"
        ) from exc


def _json_label(index: int) -> str:
    return f"instances[{index}]"


async def _read_upload(index: int, upload: UploadFile, max_file_bytes: int) -> tuple[str, bytes]:
    # Read one byte past the limit rather than trust the part's recorded size.
    data = await upload.read(max_file_bytes + 1)
    if len(data) > max_file_bytes:
        size = f"{upload.size} bytes" if upload.size else f"over {max_file_bytes} bytes"
        raise InputError.too_large(
            f"{_FILES}[{index}] {upload.filename!r} is {size}; "
            f"the limit per file is {max_file_bytes} bytes"
        )
    return upload.filename or "", data


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
