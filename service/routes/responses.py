"""The error responses the predict routes share, for /docs."""

from __future__ import annotations

from typing import Any


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"detail": {}}, "required": ["detail"]}
            }
        },
    }


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: _error("No model of that name is served; the message lists those that are"),
    413: _error("The body (or one file) is larger than the configured limit"),
    415: _error("Wrong content type, or bytes that are not a decodable image"),
    503: _error("Queue full or model not loaded; see the Retry-After header. Not processed."),
    504: _error("Waited longer than the configured deadline. Not processed."),
}
