"""JSON responses that take numpy arrays and float32 scalars as they come from the model.

orjson writes a float32 in the shortest form that reads back as the same float32
(``0.574683``, not the ``0.5746830105781555`` of its float64 widening), and does so an order
of magnitude faster than the standard library's encoder on the float-heavy answers here.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse

__all__ = ["NumpyJSONResponse"]

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


class NumpyJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=_OPTIONS)
