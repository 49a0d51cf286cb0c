"""What every predict route does around the model call: look-ups and the batch hop."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from service.batcher import BatcherClosedError, DeadlineExceededError, QueueFullError
from service.errors import DeadlineExceeded, ServiceUnavailable
from service.predictor import Job
from service.registry import ModelRegistry, ServedModel

# Retry-After when the service is shutting down and another replica should take the request.
SHUTTING_DOWN_RETRY_S = 5.0


def registry_of(request: Request) -> ModelRegistry:
    return request.app.state.registry


async def run_batched(served: ServedModel, job: Job) -> Any:
    """Queue the job on the model's batcher; map overload and deadlines to 503 and 504."""
    assert served.batcher is not None  # registry.get() only hands out ready models
    try:
        return await served.batcher.submit(job, rows=job.rows)
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
