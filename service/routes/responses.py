"""Query parameters and error responses the predict routes share, for validation and /docs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

SAMPLES_QUERY = Annotated[
    int | None,
    Query(ge=1, description="Posterior weight samples S (default and maximum: see GET /models)"),
]
LEVEL_QUERY = Annotated[
    float, Query(gt=0, lt=1, description="Level of the central intervals, 0 < level < 1")
]


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
    413: _error("The body (or one file) is larger than the configured limit"),
    415: _error("Wrong content type, or bytes that are not a decodable image"),
    503: _error("Queue full or model not loaded; see the Retry-After header. Not processed."),
    504: _error("Waited longer than the configured deadline. Not processed."),
}
