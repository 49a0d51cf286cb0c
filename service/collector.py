"""Python's cyclic garbage collector, set for a process that serves requests.

CPython frees an object by reference counting as soon as the last reference goes. Its
collector is there for reference cycles, which counting cannot free, and finds them by walking
container objects, which costs the serving process twice:

- **Full collections** walk every container of the process: a million long-lived ones once
  torch, FastAPI and the models are loaded. Frozen (``gc.freeze``) once the models are loaded,
  they are left out of every pass: at c=32 the service's p95 went from 94-105 ms to 10.6 ms.
- **Young collections** run whenever 700 more containers have been made than freed since the
  last one. A loaded server holds thousands in the requests it is working on (tasks, futures,
  scopes, answers: 2,000 to 10,000 at 32 requests in flight on the wine route), so it crossed
  that line about 300 times a second. Each pass walked those live objects, found nothing to
  free (the service's paths leave no cycles: ``tests/test_collector.py``) and moved them into
  older generations, to be walked again there. With the line at :data:`YOUNG_THRESHOLD`, far
  above that working set, wine at c=32 went from 1,901 to 2,135 answers a second and from
  0.525 to 0.466 ms of CPU each, on this project's CPU (``bench/findings.md``).

Cycles that other code leaves are still collected, once that many containers have piled up.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Final

__all__ = ["YOUNG_THRESHOLD", "serving_collector"]

# Containers made and not yet freed before a young collection runs (CPython's default: 700).
YOUNG_THRESHOLD: Final = 100_000


@contextlib.contextmanager
def serving_collector() -> Iterator[None]:
    """For the block: what exists now frozen, young collections only past
    :data:`YOUNG_THRESHOLD`. After it, the thresholds as they were and the frozen objects
    back in the collector's care, for a process that goes on without the app (a test run)."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
