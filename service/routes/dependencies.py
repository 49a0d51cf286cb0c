"""What every predict route does around the model call: admission, deadline, the batch hop.

``/predict`` and the Open Inference Protocol's ``infer`` differ in how a body is read and
decoded; :func:`answer` is the rest of a request's life, the same for both: admitted before
its body is read, under one deadline from then, cancelled if the client leaves once the body
is in, queued in the place its admission held.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request

from service.access_log import request_id_of
from service.batcher import (
    Admission,
    BatcherClosedError,
    DeadlineExceededError,
    QueueFullError,
)
from service.disconnect import cancelled_on_disconnect
from service.errors import DeadlineExceeded, InputError, ServiceUnavailable
from service.predictor import Job
from service.registry import ModelRegistry, ServedModel

B = TypeVar("B")
C = TypeVar("C")

# Retry-After when the service is shutting down and another replica should take the request.
SHUTTING_DOWN_RETRY_S = 5.0
# Retry-After when the model failed on a request for a reason of its own (it was logged).
MODEL_FAULT_RETRY_S = 5.0


def registry_of(request: Request) -> ModelRegistry:
    return request.app.state.registry


async def answer(
    request: Request,
    served: ServedModel,
    read: Callable[[], Awaitable[B]],
    decode: Callable[[B], Awaitable[tuple[Job, C]]],
) -> tuple[Job, Any, C]:
    """Admit, ``read`` the body, ``decode`` it into a job (and what encoding needs), run it.

    Refused with a 503 at once when the model's queue cannot take the request in time; a
    504 past the deadline; ``ClientDisconnect`` (answered 499) if the client leaves.
    """
    admission = admit(served)
    bodies = registry_of(request).bodies
    try:
        body_bytes = bodies.take(request)  # a 503 if the service holds enough bodies already
    except ServiceUnavailable:
        admission.release()
        raise
    try:
        async with asyncio.timeout_at(admission.deadline):
            body = await read()
            async with cancelled_on_disconnect(request):
                job, context = await decode(body)
                bodies.give_back(body_bytes)  # decoded: the body is no longer held
                body_bytes = 0
                result = await run_batched(served, job, admission, request_id_of(request))
    except TimeoutError:
        raise DeadlineExceeded(
            f"model {served.name}: the request was not answered within its deadline of "
            f"{served.settings.timeout_s:g} s (reading and decoding its body, waiting, running)"
        ) from None
    finally:
        bodies.give_back(body_bytes)
        admission.release()
    return job, result, context


def admit(served: ServedModel) -> Admission:
    """A place in the model's queue for a request that has just arrived, or a 503 at once."""
    assert served.backend is not None  # registry.get() only hands out ready models
    try:
        return served.backend.admit()
    except QueueFullError as exc:
        raise ServiceUnavailable(
            f"model {served.name} is at capacity: {exc}", retry_after=exc.retry_after
        ) from exc
    except BatcherClosedError as exc:
        raise ServiceUnavailable(
            f"model {served.name} is shutting down", retry_after=SHUTTING_DOWN_RETRY_S
        ) from exc


async def run_batched(
    served: ServedModel, job: Job, admission: Admission | None = None, request_id: str = ""
) -> Any:
    """Queue the job on the model's backend (in the place ``admission`` holds, if given); map
    overload, deadlines and a model that fails on this request alone to HTTP errors."""
    assert served.backend is not None  # registry.get() only hands out ready models
    try:
        return await served.backend.submit(
            job, rows=job.rows, admission=admission, label=request_id
        )
    except QueueFullError as exc:
        raise ServiceUnavailable(
            f"model {served.name} is at capacity: {exc}", retry_after=exc.retry_after
        ) from exc
    except DeadlineExceededError as exc:
        raise DeadlineExceeded(f"model {served.name}: {exc}") from exc
    except BatcherClosedError as exc:
        raise ServiceUnavailable(
            f"model {served.name} is shutting down", retry_after=SHUTTING_DOWN_RETRY_S
        ) from exc
    except (ValueError, ArithmeticError) as exc:
        # The batcher has run this request alone: its own numbers are what the maths refused.
        raise InputError.unprocessable(
            loc=("body",),
            msg=f"Model {served.name} cannot compute an answer for this input: {exc}",
        ) from exc
    except Exception as exc:  # a fault of the model's (out of device memory, say), not the input's
        raise ServiceUnavailable(
            f"model {served.name} failed on this request ({type(exc).__name__}: {exc}); "
            "it was not answered",
            retry_after=MODEL_FAULT_RETRY_S,
        ) from exc
