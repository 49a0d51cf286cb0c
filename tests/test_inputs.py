"""From request to model input: the contract's 413/415/422 rules, handlers and body limit."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import Body, FastAPI, Request
from PIL import Image

from service.body_limit import DEFAULT_MAX_BODY_BYTES, BodySizeLimitMiddleware
from service.errors import DeadlineExceeded, InputError, ModelNotFound, ServiceUnavailable
from service.inputs import (
    check_content_type,
    image_files_from_json,
    image_files_from_multipart,
    parse_json,
    table_rows,
)
from service.schemas import tabular_body_adapter
from training.datasets.wine import WINE_FEATURES

WINE_BODY = tabular_body_adapter(WINE_FEATURES)


def wine_rows(payload: object, *, max_instances: int) -> np.ndarray:
    return table_rows(payload, WINE_BODY, WINE_FEATURES, max_instances=max_instances)


# Distinct values per feature, so a column swap cannot pass unnoticed.
ROWS = [[100 * r + c + 0.25 for c in range(11)] for r in range(3)]


def named(row: list[float]) -> dict[str, float]:
    return dict(zip(WINE_FEATURES, row, strict=True))


def unprocessable(exc: pytest.ExceptionInfo[InputError]) -> list[dict[str, Any]]:
    assert exc.value.status_code == 422
    assert isinstance(exc.value.detail, list)
    json.dumps(exc.value.detail, allow_nan=False)  # renders as JSON, whatever was sent
    return exc.value.detail


def image_bytes(fmt: str, size: tuple[int, int], mode: str, color: Any) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def request(app: FastAPI, method: str, url: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(go())


# --- wine ----------------------------------------------------------------------------------


def test_wine_forms_give_rows_in_uci_order() -> None:
    expected = np.array(ROWS, dtype=np.float32)
    shuffled = [dict(reversed(named(row).items())) for row in ROWS]
    for body in (
        {"instances": shuffled},
        {"instances": ROWS},
        {"instances": [shuffled[0], ROWS[1], shuffled[2]]},
    ):
        rows = wine_rows(body, max_instances=1024)
        assert rows.dtype == np.float32
        np.testing.assert_array_equal(rows, expected)
    np.testing.assert_array_equal(wine_rows(named(ROWS[1]), max_instances=1), expected[1:2])
    np.testing.assert_array_equal(wine_rows(ROWS[2], max_instances=1), expected[2:3])


def test_wine_accepts_integers_and_many_instances() -> None:
    rows = wine_rows({"instances": [list(range(11))] * 1024}, max_instances=1024)
    assert rows.shape == (1024, 11)
    np.testing.assert_array_equal(rows[-1], np.arange(11, dtype=np.float32))


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (math.nan, "not NaN"),
        ("NaN", "not a string"),
        (math.inf, "not Infinity"),
        ("abc", "not a string"),
        (False, "not a boolean"),
        (None, "not null"),
    ],
)
def test_wine_bad_value_names_index_and_field(value: object, fragment: str) -> None:
    body = {"instances": [named(ROWS[0]), named(ROWS[1]), named(ROWS[2]), {**named(ROWS[0])}]}
    body["instances"][3]["pH"] = value
    with pytest.raises(InputError) as info:
        wine_rows(body, max_instances=1024)
    (entry,) = unprocessable(info)
    assert entry["loc"] == ["body", "instances", 3, "pH"]
    assert entry["msg"].startswith("Input should be a finite number")
    assert fragment in entry["msg"]


def test_wine_nan_tokens_from_raw_json_are_refused() -> None:
    raw = json.dumps({"instances": [ROWS[0], [*ROWS[0][:4], "@", *ROWS[0][5:]]]})
    for token in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(InputError) as info:
            wine_rows(parse_json(raw.replace('"@"', token).encode()), max_instances=8)
        (entry,) = unprocessable(info)
        assert entry["loc"] == ["body", "instances", 1, 4]
        assert entry["input"] == token  # echoed as a string: JSON has no NaN


def test_wine_missing_and_extra_features() -> None:
    instance = {k: v for k, v in named(ROWS[0]).items() if k != "alcohol"} | {"colour": 3}
    with pytest.raises(InputError) as info:
        wine_rows({"instances": [ROWS[0], instance]}, max_instances=8)
    entries = {tuple(e["loc"]): e["msg"] for e in unprocessable(info)}
    assert entries == {
        ("body", "instances", 1, "alcohol"): "Field required",
        ("body", "instances", 1, "colour"): "Extra inputs are not permitted",
    }


def test_wine_wrong_count() -> None:
    with pytest.raises(InputError) as info:
        wine_rows({"instances": [ROWS[0], ROWS[1][:10]]}, max_instances=8)
    (entry,) = unprocessable(info)
    assert entry["loc"] == ["body", "instances", 1]
    assert "expected 11 values, got 10" in entry["msg"]


def test_wine_empty_and_too_many() -> None:
    with pytest.raises(InputError) as info:
        wine_rows({"instances": []}, max_instances=8)
    assert unprocessable(info)[0]["loc"] == ["body", "instances"]
    with pytest.raises(InputError) as info:
        wine_rows({"instances": [ROWS[0]] * 9}, max_instances=8)
    (entry,) = unprocessable(info)
    assert entry["loc"] == ["body", "instances"]
    assert "got 9" in entry["msg"] and "limit is 8" in entry["msg"]


@pytest.mark.parametrize("raw", [b"", b"{", b'{"instances": [1,]}', b"\xff\xfe\x00", b"[" * 5000])
def test_malformed_json_is_422(raw: bytes) -> None:
    with pytest.raises(InputError) as info:
        parse_json(raw)
    (entry,) = unprocessable(info)
    assert entry["type"] == "json_invalid"
    assert entry["loc"][0] == "body"
    assert entry["msg"].startswith("JSON decode error")


def test_parse_json_keeps_nan_for_validation_to_refuse() -> None:
    assert math.isnan(parse_json(b"[NaN]")[0])  # type: ignore[index]


# --- content type ---------------------------------------------------------------------------


def test_check_content_type() -> None:
    allowed = ("application/json", "multipart/form-data")
    assert check_content_type("application/json", allowed) == "application/json"
    assert check_content_type("Multipart/Form-Data; boundary=x", allowed) == "multipart/form-data"
    for bad in ("text/plain", None, ""):
        with pytest.raises(InputError) as info:
            check_content_type(bad, allowed)
        assert info.value.status_code == 415
        assert "application/json, multipart/form-data" in str(info.value.detail)


# --- CIFAR JSON and images ------------------------------------------------------------------


def test_cifar_json_round_trips_bytes() -> None:
    png = image_bytes("PNG", (40, 30), "RGB", (1, 2, 3))
    wrapped = base64.encodebytes(png).decode()  # with line breaks, as CLI tools write it
    body = {"instances": [{"b64": base64.b64encode(png).decode()}, {"b64": wrapped}]}
    assert image_files_from_json(body, max_images=2) == [
        ("instances[0]", png),
        ("instances[1]", png),
    ]


def test_cifar_json_bad_base64_and_limits() -> None:
    good = base64.b64encode(b"abc").decode()
    with pytest.raises(InputError) as info:
        image_files_from_json({"instances": [{"b64": good}, {"b64": "not*base64"}]}, max_images=4)
    (entry,) = unprocessable(info)
    assert entry["loc"] == ["body", "instances", 1, "b64"]
    with pytest.raises(InputError) as info:
        image_files_from_json({"instances": [{"b64": good}] * 5}, max_images=4)
    assert "got 5" in unprocessable(info)[0]["msg"]
    with pytest.raises(InputError) as info:
        image_files_from_json({"instances": [{"png": good}]}, max_images=4)
    assert {tuple(e["loc"]) for e in unprocessable(info)} == {
        ("body", "instances", 0, "b64"),
        ("body", "instances", 0, "png"),
    }


# --- multipart ------------------------------------------------------------------------------


def multipart_app() -> FastAPI:
    app = FastAPI()

    @app.post("/upload")
    async def upload(request: Request) -> list[list[Any]]:
        files = await image_files_from_multipart(request, max_images=2, max_file_bytes=1000)
        return [[name, len(data), data[:4].hex()] for name, data in files]

    return app


PNG = image_bytes("PNG", (8, 8), "RGB", (5, 6, 7))


def test_multipart_reads_files_in_order() -> None:
    files = [("files", ("a.png", PNG, "image/png")), ("files", ("b.gif", b"GIF89a", "image/gif"))]
    response = request(multipart_app(), "POST", "/upload", files=files)
    assert response.status_code == 200
    assert response.json() == [["a.png", len(PNG), PNG[:4].hex()], ["b.gif", 6, b"GIF8".hex()]]


@pytest.mark.parametrize(
    ("kwargs", "locs"),
    [
        (
            {"files": [("image", ("a.png", PNG, "image/png"))]},
            {("body", "image"), ("body", "files")},
        ),
        (
            {
                "content": b'--b\r\nContent-Disposition: form-data; name="files"\r\n\r\n'
                b"a text field\r\n--b--\r\n",
                "headers": {"content-type": "multipart/form-data; boundary=b"},
            },
            {("body", "files", 0)},
        ),
        ({"files": [("files", ("a.png", PNG, "image/png"))] * 3}, {("body", "files")}),
        (
            {"content": b"junk", "headers": {"content-type": "multipart/form-data"}},
            {("body",)},
        ),
        (  # cut short: no closing boundary
            {
                "content": b'--b\r\nContent-Disposition: form-data; name="files"; '
                b'filename="a.png"\r\n\r\n' + PNG,
                "headers": {"content-type": "multipart/form-data; boundary=b"},
            },
            {("body",)},
        ),
        (
            {
                "content": b"not a part at all",
                "headers": {"content-type": "multipart/form-data; boundary=b"},
            },
            {("body",)},
        ),
    ],
)
def test_multipart_422(kwargs: dict[str, Any], locs: set[tuple[Any, ...]]) -> None:
    response = request(multipart_app(), "POST", "/upload", **kwargs)
    assert response.status_code == 422, response.text
    assert {tuple(e["loc"]) for e in response.json()["detail"]} == locs


def test_multipart_of_thousands_of_parts_is_refused_in_one_line() -> None:
    part = b'--b\r\nContent-Disposition: form-data; name="files"\r\n\r\nx\r\n'
    response = request(
        multipart_app(),
        "POST",
        "/upload",
        content=part * 5000 + b"--b--\r\n",
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"type": "too_long", "loc": ["body"], "msg": "Too many form parts: more than 1000"}
    ]


def test_multipart_oversize_file_is_413_naming_it() -> None:
    files = [("files", ("a.png", PNG, "image/png")), ("files", ("big.bin", b"x" * 1001, "a/b"))]
    response = request(multipart_app(), "POST", "/upload", files=files)
    assert response.status_code == 413
    assert response.json()["detail"].startswith("files[1] 'big.bin' is 1001 bytes")


# --- error handlers and body limit ----------------------------------------------------------


def errors_app(max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> FastAPI:
    app = FastAPI()
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=max_body_bytes)

    @app.post("/wine")
    async def wine(request: Request) -> dict[str, int]:
        rows = wine_rows(parse_json(await request.body()), max_instances=4)
        return {"rows": len(rows)}

    @app.post("/parsed")
    async def parsed(body: dict[str, Any] = Body()) -> dict[str, int]:  # noqa: B008
        return {"keys": len(body)}

    @app.get("/busy")
    async def busy() -> None:
        raise ServiceUnavailable("queue full", retry_after=2.2)

    @app.get("/late")
    async def late() -> None:
        raise DeadlineExceeded("waited 30 s")

    @app.get("/missing")
    async def missing() -> None:
        raise ModelNotFound("resnet", ["wine-bnn", "cifar-bcnn"])

    @app.get("/limit")
    async def limit(n: int) -> int:
        return n

    return app


def test_input_error_renders_detail_and_status() -> None:
    body = {"instances": [[math.nan, *ROWS[0][1:]]]}
    response = request(errors_app(), "POST", "/wine", content=json.dumps(body))
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "type": "finite_number",
                "loc": ["body", "instances", 0, 0],
                "msg": "Input should be a finite number, not NaN",
                "input": "NaN",
            }
        ]
    }
    assert request(errors_app(), "POST", "/wine", content=b"{").status_code == 422
    ok = request(errors_app(), "POST", "/wine", content=json.dumps({"instances": ROWS}))
    assert ok.json() == {"rows": 3}


def test_503_has_retry_after_and_504() -> None:
    busy = request(errors_app(), "GET", "/busy")
    assert (busy.status_code, busy.headers["retry-after"]) == (503, "3")
    assert busy.json() == {"detail": "queue full"}
    late = request(errors_app(), "GET", "/late")
    assert (late.status_code, late.json()) == (504, {"detail": "waited 30 s"})


def test_unknown_model_is_404_listing_the_served_ones() -> None:
    missing = request(errors_app(), "GET", "/missing")
    assert missing.status_code == 404
    assert missing.json() == {
        "detail": "no model named 'resnet' is served; the models are: wine-bnn, cifar-bcnn"
    }


def test_fastapi_validation_errors_keep_their_shape() -> None:
    response = request(errors_app(), "GET", "/limit", params={"n": "x"})
    assert response.status_code == 422
    (entry,) = response.json()["detail"]
    assert entry["loc"] == ["query", "n"] and entry["type"] == "int_parsing"


def test_declared_length_over_limit_is_413_unread() -> None:
    response = request(errors_app(100), "POST", "/wine", content=b"x" * 101)
    assert response.status_code == 413
    assert response.json() == {"detail": "request body is 101 bytes; the limit is 100 bytes"}
    assert request(errors_app(100), "POST", "/wine", content=b"[" * 100).status_code == 422


def test_default_limit_is_8_mib() -> None:
    response = request(errors_app(), "POST", "/wine", content=b" " * (DEFAULT_MAX_BODY_BYTES + 1))
    assert response.status_code == 413
    assert response.json()["detail"].endswith("the limit is 8388608 bytes")


async def chunks(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.mark.parametrize("path", ["/wine", "/parsed"])
def test_streamed_body_over_limit_is_413(path: str) -> None:
    # No Content-Length: the body is chunked, so only counting while reading can catch it.
    response = request(errors_app(100), "POST", path, content=chunks([b" " * 60] * 3))
    assert response.status_code == 413
    assert response.json()["detail"].endswith("the limit is 100 bytes")
    small = request(errors_app(100), "POST", path, content=chunks([b"{}"]))
    assert small.status_code != 413


def test_multipart_stops_reading_at_the_first_file_it_refuses() -> None:
    """``on_file`` sees each file as its part ends: a refusal leaves the rest of the body unread."""

    def part(name: str, data: bytes) -> bytes:
        head = f'--b\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n\r\n'
        return head.encode() + data + b"\r\n"

    body = b"".join(part(name, PNG) for name in ("first.png", "2.png", "3.png")) + b"--b--\r\n"
    first_end = len(part("first.png", PNG)) + len(b"--b\r\n")  # its end, and the next start
    chunks = [body[:first_end], *(body[i : i + 100] for i in range(first_end, len(body), 100))]
    read: list[int] = []

    async def receive() -> dict[str, Any]:
        read.append(len(read))
        return {"type": "http.request", "body": chunks[len(read) - 1], "more_body": True}

    seen: list[tuple[int, str, bytes]] = []

    def refuse(index: int, name: str, data: bytes) -> None:
        seen.append((index, name, data))
        raise InputError.unsupported_media_type(f"files[{index}] {name!r} is not welcome")

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-type", b"multipart/form-data; boundary=b")],
    }
    with pytest.raises(InputError) as info:
        asyncio.run(
            image_files_from_multipart(
                Request(scope, receive), max_images=8, max_file_bytes=10**6, on_file=refuse
            )
        )
    assert info.value.status_code == 415
    assert seen == [(0, "first.png", PNG)]
    assert len(read) == 1 < len(chunks)  # the first chunk, which ends the first part
