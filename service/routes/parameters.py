"""Query parameters every predict route takes, with their checks."""

from __future__ import annotations

import math
from typing import Annotated, Final

from fastapi import Query

from service.errors import InputError

__all__ = ["DEFAULT_LEVEL", "LEVEL_QUERY", "MAX_LEVEL", "SAMPLES_QUERY", "check_level"]

# The central intervals' level when a request names none (API.md).
DEFAULT_LEVEL: Final = 0.95

# The largest level whose upper tail probability (1 + level) / 2 is still below 1 in float64;
# above it the upper quantile would be the point at infinity.
MAX_LEVEL: Final = 1.0 - 2.0**-52

SAMPLES_QUERY = Annotated[
    int | None,
    Query(ge=1, description="Posterior weight samples S (default and maximum: see GET /models)"),
]
LEVEL_QUERY = Annotated[
    float,
    Query(
        description="Level of the central intervals, 0 < level < 1",
        # MAX_LEVEL, not 1: the levels above it are refused too (:func:`check_level`).
        json_schema_extra={"exclusiveMinimum": 0, "maximum": MAX_LEVEL},
    ),
]


def check_level(level: float) -> float:
    """``level`` if both tails of its interval, (1 ∓ level) / 2, are probabilities in (0, 1).

    Checked here rather than by FastAPI's bounds so that NaN and the levels that round the
    upper tail to 1 get messages of their own, before any work is done.
    """
    if 0 < level <= MAX_LEVEL:
        return level
    if math.isnan(level):
        msg, kind = "Input should be a number between 0 and 1, not NaN", "finite_number"
    elif level <= 0:
        msg, kind = "Input should be greater than 0", "greater_than"
    elif level < 1:
        msg = (
            f"Input should be at most {MAX_LEVEL!r}: for a level this close to 1 the upper "
            "quantile's probability (1 + level) / 2 rounds to 1"
        )
        kind = "less_than_equal"
    else:
        msg, kind = "Input should be less than 1", "less_than"
    raise InputError.unprocessable(loc=("query", "level"), msg=msg, type=kind, input=level)
