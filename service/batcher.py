"""Dynamic batching: many concurrent requests, one model pass.

Requests queue in arrival order. A single worker task looks at the oldest one and waits up to
``max_wait_ms`` after *its arrival* for company, running early as soon as ``max_batch_size``
rows are queued, or as soon as no other request is arriving (its body being read): waiting
then would only add latency. It then takes requests greedily, never reordering, while their
rows fit; a request larger than ``max_batch_size`` runs alone rather than being split or
refused.
``predict`` runs once per batch on a thread of its own, so the event loop keeps accepting work
while model calls stay serialised.

Overload is shed at the door, before any work is spent on a request: :meth:`admit` holds a
place in the queue from the moment a request arrives, before its body is read or decoded, and
refuses at once (with a retry hint from the real backlog: the batches and rows waiting, at
their measured cost) when the queue is full or its backlog could not be cleared within the
deadline. The deadline, ``timeout_s`` from admission, covers the whole request: a request that
would be answered late is refused when it is queued, and one that waits past it fails rather
than running late.

One request's failure is not its batch's: when a batch fails, its halves run again, down to
single requests, so only the requests that fail alone fail (answers do not depend on what
shares a batch, so those that succeed get the numbers they would have got anyway).
"""

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

__all__ = [
    "Admission",
    "BatchObserver",
    "BatcherClosedError",
    "BatcherError",
    "BatcherSettings",
    "DeadlineExceededError",
    "DynamicBatcher",
    "NullObserver",
    "QueueFullError",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# Share of the newest batch (or request) in the running estimates behind the expected wait
# (admission, ``retry_after``): the pace of batches and the rows a request brings.
_EWMA_WEIGHT = 0.2
# Event-loop turns a lone request gives requests already on the wire to be admitted: one for
# the socket's read callback, one for the request's task to start, one for it to reach
# admission.
_ARRIVAL_TURNS = 3


@dataclass(frozen=True)
class BatcherSettings:
    """Per-model knobs, after Triton's dynamic batcher (batch size, queue delay, queue size)."""

    max_batch_size: int = 64
    max_wait_ms: float = 2.0
    max_queue_size: int = 256
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        # ``not x > 0`` rather than ``x <= 0`` so that NaN is rejected too.
        for name in ("max_batch_size", "max_queue_size", "timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not 0 <= self.max_wait_ms < math.inf:
            raise ValueError(f"max_wait_ms must be finite and >= 0, got {self.max_wait_ms!r}")


class BatcherError(Exception):
    """Base of every error the batcher itself raises, for one ``except`` in the HTTP layer."""


class QueueFullError(BatcherError):
    """Refuses at once instead of queueing, so clients back off rather than pile up."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineExceededError(BatcherError):
    """The request passed its deadline before it ran; its answer would come too late to use."""


class BatcherClosedError(BatcherError):
    """The batcher is not running, or stopped without draining before this request ran."""


class BatchObserver(Protocol):
    """Metrics hook; called on the event loop, so it must be quick and must not raise."""

    def on_batch(self, *, requests: int, rows: int, seconds: float) -> None: ...

    def on_queue_depth(self, depth: int) -> None: ...


class NullObserver:
    """Observer used when none is given, so the hot path needs no ``if observer`` checks."""

    def on_batch(self, *, requests: int, rows: int, seconds: float) -> None:
        pass

    def on_queue_depth(self, depth: int) -> None:
        pass


class Admission:
    """A place in the queue, held from a request's arrival until it is queued or let go.

    ``deadline`` (event-loop time) is when the request's answer stops being of use: the
    arrival plus ``timeout_s``. :meth:`release` gives the place back (the body was bad, the
    client left); it is idempotent, and :meth:`DynamicBatcher.submit` uses the place up.
    """

    __slots__ = ("_on_release", "deadline", "released")

    def __init__(self, on_release: Callable[[], None], deadline: float) -> None:
        self._on_release = on_release
        self.deadline = deadline
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._on_release()


@dataclass(eq=False, slots=True)
class _Request(Generic[T, R]):
    # eq=False: ``deque.remove`` must find this request by identity, not by equal fields.
    item: T
    rows: int
    future: asyncio.Future[R]
    enqueued_at: float
    deadline: float
    label: str
    queued: bool = True


def _fail(request: _Request[T, R], exc: BaseException) -> None:
    # The caller may have gone (future cancelled) before the request was answered.
    if not request.future.done():
        request.future.set_exception(exc)


class DynamicBatcher(Generic[T, R]):
    """Coalesces concurrent ``submit()`` calls for one model into batched ``predict`` calls."""

    def __init__(
        self,
        predict: Callable[[Sequence[T]], Sequence[R]],
        settings: BatcherSettings = BatcherSettings(),
        *,
        name: str = "batcher",
        observer: BatchObserver | None = None,
    ) -> None:
        self._predict = predict
        self._settings = settings
        self._name = name
        self._observer: BatchObserver = observer if observer is not None else NullObserver()
        self._queue: deque[_Request[T, R]] = deque()
        self._queued_rows = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        # What a batch costs: a fixed part (the number of operations, whatever the rows) plus a
        # part per row, as measured before serving (:meth:`seed_estimate`); ``_pace`` is the
        # running ratio of batches' measured time to that, so the estimate follows the load
        # and the mix of ``samples`` actually asked for.
        self._fixed_s = 0.0
        self._per_row_s: float | None = None
        self._pace = 1.0
        self._running_rows = 0
        self._admitted = 0  # admitted, not yet queued (their bodies are being read)
        # Running average of a request's rows: what an admitted request will likely bring.
        self._request_rows = 1.0
        self._model_seconds = 0.0  # of the model calls of the batch running now
        self._deadline_timer: asyncio.TimerHandle | None = None

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a batch; the one running now is not counted."""
        return len(self._queue)

    @property
    def running(self) -> bool:
        """True from ``start()`` until ``stop()`` begins, i.e. while ``submit()`` is accepted."""
        return self._worker is not None and not self._worker.done() and not self._closing

    async def start(self) -> None:
        """Start the worker on the running loop; a batcher serves one start/stop cycle."""
        if self._worker is not None or self._closing:
            raise RuntimeError(f"batcher {self._name!r} can only be started once")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
        self._worker = asyncio.get_running_loop().create_task(
            self._work(), name=f"{self._name}-worker"
        )

    async def stop(self, *, drain: bool = True) -> None:
        """Stop accepting; answer (``drain``) or fail what is queued; let the running batch end.

        Waits for the batch in flight, so a ``predict`` that never returns blocks this too.
        """
        self._closing = True
        if not drain and self._queue:
            while self._queue:
                request = self._queue.popleft()
                self._dequeued(request)
                _fail(request, BatcherClosedError(f"batcher {self._name!r} stopped"))
            self._observer.on_queue_depth(0)
        self._wakeup.set()
        if self._worker is not None:
            await self._worker
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def admit(self) -> Admission:
        """Hold a place for a request that has just arrived, or refuse it at once.

        Refused (:class:`QueueFullError`, with a retry hint) when the queue and the requests
        already admitted fill it, or when the rows waiting would take longer than
        ``timeout_s`` to clear at recent speed: the request would be answered too late.
        """
        if self._closing or self._worker is None:
            raise BatcherClosedError(f"batcher {self._name!r} is not accepting requests")
        waiting = len(self._queue) + self._admitted
        if waiting >= self._settings.max_queue_size:
            raise QueueFullError(
                f"batcher {self._name!r} has {waiting} requests queued or arriving",
                retry_after=self._retry_after(),
            )
        backlog = self._expected_wait(0)
        if backlog is not None and backlog > self._settings.timeout_s:
            raise QueueFullError(
                f"batcher {self._name!r} has about {backlog:.1f} s of work queued, more than "
                f"the deadline of {self._settings.timeout_s:g} s",
                retry_after=self._retry_after(),
            )
        self._admitted += 1
        loop = asyncio.get_running_loop()
        return Admission(self._let_go, loop.time() + self._settings.timeout_s)

    def _let_go(self) -> None:
        self._admitted -= 1

    async def submit(
        self, item: T, *, rows: int = 1, admission: Admission | None = None, label: str = ""
    ) -> R:
        """Queue ``item`` (``rows`` rows of model input) and wait for its own result.

        ``admission`` is the place :meth:`admit` held when the request arrived (its deadline
        counts from then); without one, the request is admitted now. A request whose rows
        cannot run before its deadline at recent speed is refused at once. ``label`` (a
        request id) names the request in the log if its batch fails.
        """
        if rows < 1:
            raise ValueError(f"rows must be >= 1, got {rows!r}")
        if admission is None:
            admission = self.admit()
        elif admission.released:
            raise ValueError("this admission was released or used already")
        admission.release()  # the place becomes a queue entry, or goes
        if self._closing or self._worker is None:
            raise BatcherClosedError(f"batcher {self._name!r} is not accepting requests")
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now >= admission.deadline:
            raise self._deadline_error()
        # Checked only with work ahead: a request that would run next always runs, so a stale
        # estimate (one slow batch) cannot lock every request out.
        ahead = self._queued_rows + self._running_rows
        expected = self._expected_wait(rows) if ahead else None
        if expected is not None and now + expected > admission.deadline:
            raise QueueFullError(
                f"batcher {self._name!r} would run these {rows} rows in about {expected:.1f} s, "
                "after the request's deadline",
                retry_after=self._retry_after(),
            )
        request: _Request[T, R] = _Request(
            item, rows, loop.create_future(), now, admission.deadline, label
        )
        self._request_rows += _EWMA_WEIGHT * (rows - self._request_rows)
        self._queue.append(request)
        if self._deadline_timer is None:
            self._arm_deadline(loop)
        self._queued_rows += rows
        self._observer.on_queue_depth(len(self._queue))
        self._wakeup.set()
        try:
            return await request.future
        except asyncio.CancelledError:
            self._discard(request)  # the client is gone: don't spend a model pass on it
            raise

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        max_wait = self._settings.max_wait_ms / 1000
        while self._queue or not self._closing:
            if not self._queue:
                await self._wait_for_work(None)
                continue
            remaining = self._queue[0].enqueued_at + max_wait - loop.time()
            full = self._queued_rows >= self._settings.max_batch_size
            if remaining > 0 and not full and not self._closing:
                if not await self._company_on_the_way():
                    remaining = 0.0  # nobody to wait for: waiting would only add latency
                else:
                    await self._wait_for_work(remaining)
                    continue
            batch = self._take_batch(loop.time())
            if batch:
                await self._run(batch)

    async def _company_on_the_way(self) -> bool:
        """Whether waiting ``max_wait_ms`` could bring the queued requests more company.

        Only if another request is arriving: admitted, its body still being read. Requests
        whose bytes have reached the socket but not yet the app are let in first: a few turns
        of the event loop run their read and admission callbacks. Then, with nobody on the
        way, what is queued runs at once: a lone request (one client at a time, light load)
        does not wait for nobody, and a burst runs as soon as its last request is queued.
        """
        for _ in range(_ARRIVAL_TURNS):
            if self._admitted:
                return True
            await asyncio.sleep(0)
        return self._admitted > 0

    async def _wait_for_work(self, timeout: float | None) -> None:
        """Sleep until ``submit``/``stop`` wakes the worker or ``timeout`` passes; no polling."""
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wakeup.wait()

    def _take_batch(self, now: float) -> list[_Request[T, R]]:
        """Pop the longest arrival-order prefix whose rows fit; the first request always fits."""
        limit = self._settings.max_batch_size
        batch: list[_Request[T, R]] = []
        rows = 0
        while self._queue and (not batch or rows + self._queue[0].rows <= limit):
            request = self._queue.popleft()
            self._dequeued(request)
            if request.future.done():  # cancelled; its submit() has not cleaned up yet
                continue
            if request.deadline <= now:  # the timer may lag a busy loop
                _fail(request, self._deadline_error())
                continue
            batch.append(request)
            rows += request.rows
        self._observer.on_queue_depth(len(self._queue))
        return batch

    def seed_estimate(self, small: tuple[float, int], large: tuple[float, int]) -> None:
        """Start the cost estimate from two passes made before serving, ``(seconds, rows)`` of
        a small batch and of a large one: the line through them splits a batch's cost into
        its fixed part and its part per row. Then the first wave of a flood is judged at the
        door rather than let in whole, and many rows in few batches are not mistaken for
        many batches (a one-row pass alone would charge every row the whole fixed cost).
        """
        (t_small, r_small), (t_large, r_large) = small, large
        per_row = (t_large - t_small) / (r_large - r_small) if r_large != r_small else 0.0
        if not per_row > 0:  # a noisy measure; all of it per row is the safe side
            per_row = max(t_small / r_small, t_large / r_large)
        self._per_row_s = per_row
        self._fixed_s = max(0.0, t_small - per_row * r_small)

    async def _run(self, batch: list[_Request[T, R]]) -> None:
        loop = asyncio.get_running_loop()
        rows = sum(request.rows for request in batch)
        self._running_rows = rows
        self._model_seconds = 0.0
        try:
            await self._answer(loop, batch)
        finally:
            # Requests are still unanswered here only if the worker task itself was cancelled.
            for request in batch:
                if not request.future.done():
                    _fail(request, BatcherClosedError(f"batcher {self._name!r} was cancelled"))
            self._running_rows = 0
            # The model's own time, on its thread: the loop's lag under a flood is no part
            # of how long rows take to run.
            seconds = self._model_seconds
            self._observe(seconds, rows)
            self._observer.on_batch(requests=len(batch), rows=rows, seconds=seconds)

    async def _answer(self, loop: asyncio.AbstractEventLoop, batch: list[_Request[T, R]]) -> None:
        """Run ``batch``; if it fails, run its halves, so that only what fails alone fails."""
        try:
            results = await loop.run_in_executor(
                self._executor, self._call, [request.item for request in batch]
            )
        except Exception as exc:
            if len(batch) == 1:
                (request,) = batch
                logger.error(
                    "%s: predict failed for request %s: %r",
                    self._name,
                    request.label or "(unlabelled)",
                    exc,
                    exc_info=exc,
                )
                _fail(request, exc)
                return
            logger.warning(
                "%s: predict failed for a batch of %d requests (%s): %r; running its halves "
                "apart to find the requests it fails for",
                self._name,
                len(batch),
                ", ".join(request.label for request in batch if request.label) or "unlabelled",
                exc,
            )
            half = len(batch) // 2
            for part in (batch[:half], batch[half:]):
                live = [request for request in part if not request.future.done()]
                if live:
                    await self._answer(loop, live)
            return
        for request, result in zip(batch, results, strict=True):
            if not request.future.done():
                request.future.set_result(result)

    def _call(self, items: list[T]) -> Sequence[R]:
        """Runs on the worker thread; a short answer would leave callers without a result."""
        started = time.perf_counter()
        try:
            results = self._predict(items)
        finally:
            self._model_seconds += time.perf_counter() - started
        if len(results) != len(items):
            raise BatcherError(f"predict returned {len(results)} results for {len(items)} items")
        return results

    def _arm_deadline(self, loop: asyncio.AbstractEventLoop) -> None:
        """One timer, for the oldest request: all share ``timeout_s``, so it expires first.

        The deadline fires even while the worker is busy, so callers are never stuck behind
        it; one timer per queue rather than per request keeps ``submit`` cheap.
        """
        self._deadline_timer = loop.call_at(self._queue[0].deadline, self._expire_oldest, loop)

    def _expire_oldest(self, loop: asyncio.AbstractEventLoop) -> None:
        self._deadline_timer = None
        now = loop.time()
        expired = False
        while self._queue and self._queue[0].deadline <= now:
            request = self._queue.popleft()
            self._dequeued(request)
            _fail(request, self._deadline_error())
            expired = True
        if expired:
            self._observer.on_queue_depth(len(self._queue))
        if self._queue:
            self._arm_deadline(loop)

    def _discard(self, request: _Request[T, R]) -> bool:
        """Take ``request`` out of the queue if it is still waiting there."""
        if not request.queued:
            return False
        self._queue.remove(request)
        self._dequeued(request)
        self._observer.on_queue_depth(len(self._queue))
        return True

    def _dequeued(self, request: _Request[T, R]) -> None:
        request.queued = False
        self._queued_rows -= request.rows

    def _deadline_error(self) -> DeadlineExceededError:
        return DeadlineExceededError(
            f"request passed its deadline of {self._settings.timeout_s:g} s in batcher "
            f"{self._name!r} without being run"
        )

    def _observe(self, seconds: float, rows: int) -> None:
        if self._per_row_s is None:  # unseeded: the first batch, all of it per row
            self._per_row_s = seconds / rows
            return
        expected = self._fixed_s + self._per_row_s * rows
        if expected > 0:
            self._pace += _EWMA_WEIGHT * (seconds / expected - self._pace)

    def _expected_wait(self, rows: int) -> float | None:
        """Seconds until ``rows`` more rows would be answered: the batch running, then those
        queued and (likely) arriving first, in batches of at most ``max_batch_size`` rows, at
        the recent cost of a batch; None before any estimate."""
        if self._per_row_s is None:
            return None
        arriving = self._admitted * self._request_rows  # admitted, bodies still being read
        waiting = self._queued_rows + arriving + rows
        batches = math.ceil(waiting / self._settings.max_batch_size) + bool(self._running_rows)
        total_rows = waiting + self._running_rows
        return self._pace * (batches * self._fixed_s + total_rows * self._per_row_s)

    def _retry_after(self) -> float:
        """Whole seconds for the backlog to clear at recent speed (at least one)."""
        backlog = self._expected_wait(0) or 0.0
        return float(max(1, math.ceil(backlog + self._settings.max_wait_ms / 1000)))
