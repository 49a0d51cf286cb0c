"""What every predict route does around the model call: look-ups, limits, the batch hop."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from service.batcher import BatcherClosedError, DeadlineExceededError, QueueFullError
from service.errors import DeadlineExceeded, InputError, ServiceUnavailable
from service.predictors import Job
from service.registry import ModelRegistry, ServedModel
from service.settings import Settings

# Retry-After when the service is shutting down and another replica should take the request.
SHUTTING_DOWN_RETRY_S = 5.0


def registry_of(request: Request) -> ModelRegistry:
    return request.app.state.registry


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def resolve_samples(served: ServedModel[Any], requested: int | None) -> int:
    """The query's ``samples``, or the model's default; above its maximum is a 422."""
    if requested is None:
        return served.settings.default_samples
    maximum = served.settings.max_samples
    if requested > maximum:
        raise InputError.unprocessable(
            loc=("query", "samples"),
            msg=f"Input should be less than or equal to {maximum} for model {served.name}",
            type="less_than_equal",
            input=requested,
        )
    return requested


async def run_batched(served: ServedModel[Any], job: Job) -> Any:
    """Queue the job on the model's batcher; map overload and deadlines to 503 and 504."""
    assert served.batcher is not None  # registry.get() only hands out ready models
    try:
        return await served.batcher.submit(job, rows=len(job.inputs))
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
