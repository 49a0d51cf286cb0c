"""Where a model's batches run: the seam between the routes and the model.

The routes call one :class:`ModelBackend` per model (:func:`service.routes.dependencies.admit`
and :func:`~service.routes.dependencies.run_batched`). In one process it is the model's own
:class:`~service.batcher.DynamicBatcher`; scaled out on Ray Serve (:mod:`service.ray_app`) it
is a handle to the model's replicas, each running that same batcher. Everything per request
(reading, decoding, encoding) stays with the routes either way, so both serve one HTTP
contract from one copy of the code.

A backend that runs the model elsewhere names the replica that answered with
:func:`record_replica`; the access log puts it in the ``X-Replica`` header and its log line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from service.batcher import Admission, BatchObserver
    from service.predictor import Job
    from service.registry import ServedModel

__all__ = ["BackendFactory", "ModelBackend", "record_replica", "recording_replicas"]


class ModelBackend(Protocol):
    """What the routes need of a model: :class:`~service.batcher.DynamicBatcher`'s shape.

    ``admit`` holds a place for a request that has just arrived, or refuses it at once
    (:class:`~service.batcher.QueueFullError`); ``submit`` runs its job under the deadline
    that place carries and returns its rows' summaries. Errors are the batcher's, so that
    the routes map them to statuses one way for every backend.
    """

    @property
    def running(self) -> bool: ...

    def admit(self) -> Admission: ...

    async def submit(
        self, item: Job, *, rows: int = 1, admission: Admission | None = None, label: str = ""
    ) -> Any: ...

    async def stop(self, *, drain: bool = True) -> None: ...


BackendFactory = Callable[
    ["ServedModel", "BatchObserver"], Awaitable[tuple[ModelBackend, str, str]]
]
"""Connects a loaded model to where it runs: its backend (which reports the batches run there
to the observer, the model's metrics), the device it runs on there, and how its batches run
there (``execution``: eager, cuda-graphs)."""

# The replicas that answered the current request; set by the access log around each request.
_replicas: ContextVar[list[str] | None] = ContextVar("replicas", default=None)


@contextlib.contextmanager
def recording_replicas() -> Iterator[list[str]]:
    """Collect, for the request handled inside, the replicas its backend names.

    A list in a context variable rather than the variable itself: a task the request starts
    copies the context, and still appends to the same list.
    """
    replicas: list[str] = []
    token = _replicas.set(replicas)
    try:
        yield replicas
    finally:
        _replicas.reset(token)


def record_replica(replica: str) -> None:
    """Say which replica answered the current request (a no-op outside a request)."""
    replicas = _replicas.get()
    if replicas is not None and replica not in replicas:
        replicas.append(replica)
