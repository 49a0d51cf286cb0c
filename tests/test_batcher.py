import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from service.batcher import (
    BatcherClosedError,
    BatcherError,
    BatcherSettings,
    DeadlineExceededError,
    DynamicBatcher,
    QueueFullError,
)

# Only there so a broken batcher fails the test instead of hanging it; never a speed check.
HANG_GUARD_S = 5.0


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), HANG_GUARD_S))


class Recorder:
    """A predict that remembers the batches it saw; with ``block_first`` its first batch
    holds the worker until ``release`` is set, so later requests have to queue."""

    def __init__(
        self,
        fn: Callable[[Sequence[Any]], Sequence[Any]] = lambda items: [x * 10 for x in items],
        *,
        block_first: bool = False,
    ) -> None:
        self.fn = fn
        self.block_first = block_first
        self.batches: list[list[Any]] = []
        self.threads: list[threading.Thread] = []
        self.release = threading.Event()
        self.started = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    def __call__(self, items: Sequence[Any]) -> Sequence[Any]:
        self.batches.append(list(items))
        self.threads.append(threading.current_thread())
        if self.block_first and len(self.batches) == 1:
            self.loop.call_soon_threadsafe(self.started.set)
            self.release.wait(HANG_GUARD_S)
        return self.fn(items)

    @property
    def seen(self) -> list[Any]:
        return [x for batch in self.batches for x in batch]


async def queued(batcher: DynamicBatcher[Any, Any], *items: Any) -> list[asyncio.Task[Any]]:
    """Submit ``items`` as tasks and return once they are all in the queue."""
    tasks = [asyncio.create_task(batcher.submit(x)) for x in items]
    await asyncio.sleep(0)  # one loop turn: every new task runs up to its first await
    return tasks


async def queued_rows(
    batcher: DynamicBatcher[Any, Any], *items: tuple[Any, int]
) -> list[asyncio.Task[Any]]:
    """As :func:`queued`, each item with its rows."""
    tasks = [asyncio.create_task(batcher.submit(x, rows=rows)) for x, rows in items]
    await asyncio.sleep(0)
    return tasks


def test_results_reach_their_callers_in_order() -> None:
    async def main() -> None:
        predict = Recorder()
        batcher = DynamicBatcher(predict, BatcherSettings(max_batch_size=8, max_wait_ms=5))
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit(i) for i in range(50)))
        await batcher.stop()
        assert results == [i * 10 for i in range(50)]
        assert predict.seen == list(range(50))  # batched without reordering
        assert all(len(batch) <= 8 for batch in predict.batches)

    run(main)


def test_concurrent_requests_share_one_batch_and_a_full_batch_does_not_wait() -> None:
    async def main() -> None:
        predict = Recorder()
        # A wait far beyond the hang guard: only filling the batch can start it in time.
        settings = BatcherSettings(max_batch_size=10, max_wait_ms=60_000)
        batcher = DynamicBatcher(predict, settings)
        await batcher.start()
        assert await asyncio.gather(*(batcher.submit(i) for i in range(10))) == list(
            range(0, 100, 10)
        )
        assert predict.batches == [list(range(10))]
        await batcher.stop()

    run(main)


def test_rows_fill_batches_greedily_and_an_oversized_request_runs_alone() -> None:
    async def main() -> None:
        predict = Recorder(lambda items: [name.upper() for name, _ in items])
        batcher = DynamicBatcher(predict, BatcherSettings(max_batch_size=4, max_wait_ms=60_000))
        await batcher.start()
        requests = [("a", 2), ("b", 2), ("c", 3), ("d", 6), ("e", 1), ("f", 1)]
        tasks = [asyncio.create_task(batcher.submit(r, rows=r[1])) for r in requests]
        await asyncio.sleep(0)
        await batcher.stop()  # drain: the under-full tail runs without waiting for company
        assert [await t for t in tasks] == ["A", "B", "C", "D", "E", "F"]
        names = [[name for name, _ in batch] for batch in predict.batches]
        assert names == [["a", "b"], ["c"], ["d"], ["e", "f"]]

    run(main)


def test_lone_request_runs_at_once_rather_than_wait_for_nobody() -> None:
    async def main() -> None:
        predict = Recorder()
        # A minute's wait for company: only running at once lets this finish in HANG_GUARD_S.
        batcher = DynamicBatcher(predict, BatcherSettings(max_wait_ms=60_000))
        await batcher.start()
        assert await batcher.submit(4) == 40
        assert predict.batches == [[4]]
        await batcher.stop()

    run(main)


def test_a_request_waits_for_one_already_arriving_and_shares_its_batch() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        called_at: list[float] = []

        def predict(items: Sequence[int]) -> list[int]:
            called_at.append(time.monotonic())  # the clock loop.time() reads
            return [x + 1 for x in items]

        batcher = DynamicBatcher(predict, BatcherSettings(max_wait_ms=50))
        await batcher.start()
        arriving = batcher.admit()  # a second request's body is still being read
        submitted_at = loop.time()
        first = asyncio.create_task(batcher.submit(1))
        await asyncio.sleep(0.02)
        assert called_at == []  # it waits for the request on its way...
        second = asyncio.create_task(batcher.submit(2, admission=arriving))
        assert await asyncio.gather(first, second) == [2, 3]
        assert len(called_at) == 1  # ...and runs with it, in one batch
        assert called_at[0] - submitted_at < 0.05  # the batch was full enough: no more wait

        # An arrival that never comes (its client left) is waited for at most max_wait_ms.
        gone = batcher.admit()
        submitted_at = loop.time()
        assert await batcher.submit(3) == 4
        assert called_at[1] - submitted_at >= 0.05
        gone.release()
        await batcher.stop()

    run(main)


def test_zero_wait_runs_what_is_queued_at_once() -> None:
    async def main() -> None:
        predict = Recorder(block_first=True)
        batcher = DynamicBatcher(predict, BatcherSettings(max_batch_size=8, max_wait_ms=0))
        await batcher.start()
        first = asyncio.create_task(batcher.submit(0))
        await predict.started.wait()
        later = await queued(batcher, 1, 2, 3)
        predict.release.set()
        assert await asyncio.gather(first, *later) == [0, 10, 20, 30]
        assert predict.batches == [[0], [1, 2, 3]]
        await batcher.stop()

    run(main)


def test_full_queue_refuses_at_once_with_retry_after() -> None:
    async def main() -> None:
        predict = Recorder(block_first=True)
        settings = BatcherSettings(max_batch_size=1, max_wait_ms=0, max_queue_size=2)
        batcher = DynamicBatcher(predict, settings)
        await batcher.start()
        try:
            first = asyncio.create_task(batcher.submit(0))
            await predict.started.wait()
            waiting = await queued(batcher, 1, 2)
            assert batcher.queue_depth == 2  # the running batch is not counted
            with pytest.raises(QueueFullError) as refused:
                await batcher.submit(3)
            assert refused.value.retry_after >= 1
        finally:
            predict.release.set()
        assert await asyncio.gather(first, *waiting) == [0, 10, 20]
        assert 3 not in predict.seen
        await batcher.stop()

    run(main)


def test_admission_charges_a_batch_its_fixed_cost_once_not_once_per_row() -> None:
    """Seeded with 0.5 s a batch plus 0.1 ms a row: two more batches of 1000 rows fit a 2 s
    deadline behind the running one, a third does not (charging every row the whole cost
    of a one-row batch, as one timing alone would, refuses the first already)."""

    async def main() -> None:
        predict = Recorder(block_first=True)
        settings = BatcherSettings(max_batch_size=1000, max_wait_ms=0, timeout_s=2.0)
        batcher = DynamicBatcher(predict, settings)
        batcher.seed_estimate((0.5, 1), (0.6, 1001))
        await batcher.start()
        try:
            first = asyncio.create_task(batcher.submit("a", rows=1))
            await predict.started.wait()
            # Behind the running batch: 2 × 0.5 s + 1001 rows × 0.1 ms = 1.1 s, then 1.7 s.
            admitted = await queued_rows(batcher, ("b", 1000), ("c", 1000))
            with pytest.raises(QueueFullError) as refused:  # 4 × 0.5 s + 0.3 s = 2.3 s
                await batcher.submit("d", rows=1000)
            assert refused.value.retry_after == 2  # the 1.7 s queued, in whole seconds
        finally:
            predict.release.set()
        assert await asyncio.gather(first, *admitted) == ["a" * 10, "b" * 10, "c" * 10]
        assert "d" not in predict.seen
        await batcher.stop()

    run(main)


def test_request_past_its_deadline_fails_and_is_never_predicted() -> None:
    async def main() -> None:
        predict = Recorder(block_first=True)
        batcher = DynamicBatcher(predict, BatcherSettings(max_wait_ms=0, timeout_s=0.05))
        await batcher.start()
        try:
            first = asyncio.create_task(batcher.submit(0))
            await predict.started.wait()
            # The worker is still stuck in the first batch: the deadline alone answers this.
            with pytest.raises(DeadlineExceededError):
                await batcher.submit(1)
            assert batcher.queue_depth == 0
        finally:
            predict.release.set()
        assert await first == 0
        assert await batcher.submit(2) == 20  # a fresh request, with nothing ahead, runs
        assert predict.seen == [0, 2]
        await batcher.stop()

    run(main)


def test_each_queued_request_meets_its_own_deadline() -> None:
    # One timer serves the queue: when the oldest request leaves, it must still fire for the
    # next one at that one's own deadline, not earlier and not never.
    async def main() -> None:
        predict = Recorder(block_first=True)
        batcher = DynamicBatcher(predict, BatcherSettings(max_wait_ms=0, timeout_s=0.2))
        await batcher.start()
        loop = asyncio.get_running_loop()
        try:
            first = asyncio.create_task(batcher.submit(0))
            await predict.started.wait()
            early = asyncio.create_task(batcher.submit(1))
            await asyncio.sleep(0.1)
            late_at = loop.time()
            late = asyncio.create_task(batcher.submit(2))
            early.cancel()  # the oldest leaves the queue before its deadline
            with pytest.raises(DeadlineExceededError):
                await late
            assert loop.time() - late_at >= 0.2
            assert batcher.queue_depth == 0
        finally:
            predict.release.set()
        assert await first == 0
        assert predict.seen == [0]
        await batcher.stop()

    run(main)


def test_cancelled_caller_is_dropped_from_the_queue() -> None:
    async def main() -> None:
        predict = Recorder(block_first=True)
        batcher = DynamicBatcher(predict, BatcherSettings(max_wait_ms=0))
        await batcher.start()
        try:
            first = asyncio.create_task(batcher.submit(0))
            await predict.started.wait()
            (gone,) = await queued(batcher, 1)
            gone.cancel()
            with pytest.raises(asyncio.CancelledError):
                await gone
            assert batcher.queue_depth == 0
        finally:
            predict.release.set()
        assert await first == 0
        assert await batcher.submit(2) == 20
        assert predict.seen == [0, 2]
        await batcher.stop()

    run(main)


def test_a_failing_request_fails_alone_and_its_batch_is_answered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    raised: list[Exception] = []
    predict_calls: list[list[str]] = []

    def predict(items: Sequence[str]) -> list[str]:
        predict_calls.append(list(items))
        if "boom" in items:
            raised.append(RuntimeError("model exploded"))
            raise raised[-1]
        return [s.upper() for s in items]

    async def main() -> None:
        settings = BatcherSettings(max_batch_size=8, max_wait_ms=60_000)
        batcher = DynamicBatcher(predict, settings, name="wine")
        await batcher.start()
        items = ["a", "b", "c", "boom", "d", "e", "f", "g"]
        outcomes = await asyncio.gather(
            *(batcher.submit(item, label=f"req-{item}") for item in items),
            return_exceptions=True,
        )
        assert outcomes[3] is raised[-1]  # the error the request itself caused
        assert [o for i, o in enumerate(outcomes) if i != 3] == list("ABCDEFG")
        await batcher.stop()

    with caplog.at_level(logging.WARNING, logger="service.batcher"):
        run(main)
    # The batch, then halves down to the culprit: log2(8) + 1 failing passes, not 8.
    assert predict_calls[0] == ["a", "b", "c", "boom", "d", "e", "f", "g"]
    assert len(raised) == 4 and ["boom"] in predict_calls
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "req-boom" in error.getMessage()  # the failing request is named by its id
    assert "req-a" in warnings[0].getMessage()


def test_a_request_that_fails_in_every_batch_fails_with_its_own_error() -> None:
    async def main() -> None:
        batcher = DynamicBatcher(lambda items: [1 / 0 for _ in items], BatcherSettings())
        await batcher.start()
        with pytest.raises(ZeroDivisionError):
            await batcher.submit(1)
        await batcher.stop()

    run(main)


def test_wrong_number_of_results_fails_the_batch() -> None:
    async def main() -> None:
        batcher = DynamicBatcher(lambda items: [*items, 0], BatcherSettings(max_batch_size=2))
        await batcher.start()
        outcomes = await asyncio.gather(
            batcher.submit(1), batcher.submit(2), return_exceptions=True
        )
        for outcome in outcomes:
            assert isinstance(outcome, BatcherError)
            assert "2 results for 1 items" in str(outcome)
        await batcher.stop()

    run(main)


def test_predict_runs_on_the_batchers_own_thread() -> None:
    async def main() -> None:
        predict = Recorder()
        batcher = DynamicBatcher(predict, BatcherSettings(max_wait_ms=0), name="wine")
        await batcher.start()
        for i in range(3):
            await batcher.submit(i)
        await batcher.stop()
        assert threading.current_thread() not in predict.threads
        assert len(set(predict.threads)) == 1  # one thread: model calls are serialised
        assert predict.threads[0].name.startswith("wine")

    run(main)


def test_stop_with_drain_answers_everything_queued() -> None:
    async def main() -> None:
        predict = Recorder(block_first=True)
        batcher = DynamicBatcher(predict, BatcherSettings(max_batch_size=2, max_wait_ms=0))
        await batcher.start()
        try:
            first = asyncio.create_task(batcher.submit(0))
            await predict.started.wait()
            waiting = await queued(batcher, 1, 2, 3)
            stopping = asyncio.create_task(batcher.stop(drain=True))
            await asyncio.sleep(0)
            assert not batcher.running
            with pytest.raises(BatcherClosedError):
                await batcher.submit(4)
        finally:
            predict.release.set()
        await stopping
        assert [await t for t in (first, *waiting)] == [0, 10, 20, 30]
        assert predict.batches == [[0], [1, 2], [3]]

    run(main)


def test_stop_without_drain_fails_queued_but_finishes_the_running_batch() -> None:
    async def main() -> None:
        predict = Recorder(block_first=True)
        batcher = DynamicBatcher(predict, BatcherSettings(max_wait_ms=0))
        await batcher.start()
        try:
            first = asyncio.create_task(batcher.submit(0))
            await predict.started.wait()
            waiting = await queued(batcher, 1, 2)
            stopping = asyncio.create_task(batcher.stop(drain=False))
            for task in waiting:
                with pytest.raises(BatcherClosedError):
                    await task
        finally:
            predict.release.set()
        await stopping
        assert await first == 0
        assert predict.seen == [0]

    run(main)


def test_submit_outside_start_and_stop_is_refused() -> None:
    async def main() -> None:
        batcher = DynamicBatcher(Recorder())
        assert not batcher.running
        with pytest.raises(BatcherClosedError):
            await batcher.submit(1)
        await batcher.start()
        assert batcher.running
        with pytest.raises(ValueError, match="rows"):
            await batcher.submit(1, rows=0)
        await batcher.stop()
        assert not batcher.running
        with pytest.raises(BatcherClosedError):
            await batcher.submit(1)

    run(main)


def test_observer_sees_batches_and_queue_depth() -> None:
    class Observer:
        def __init__(self) -> None:
            self.batches: list[tuple[int, int]] = []
            self.depths: list[int] = []

        def on_batch(self, *, requests: int, rows: int, seconds: float) -> None:
            assert seconds >= 0
            self.batches.append((requests, rows))

        def on_queue_depth(self, depth: int) -> None:
            self.depths.append(depth)

    async def main() -> None:
        observer = Observer()
        settings = BatcherSettings(max_batch_size=5, max_wait_ms=60_000)
        batcher = DynamicBatcher(Recorder(), settings, observer=observer)
        await batcher.start()
        await asyncio.gather(batcher.submit(1, rows=2), batcher.submit(2, rows=3))
        await batcher.stop()
        assert observer.batches == [(2, 5)]
        assert observer.depths == [1, 2, 0]

    run(main)


@pytest.mark.parametrize(
    "bad",
    [
        {"max_batch_size": 0},
        {"max_queue_size": -1},
        {"timeout_s": 0},
        {"timeout_s": float("nan")},
        {"max_wait_ms": -1},
        {"max_wait_ms": float("inf")},
    ],
)
def test_settings_reject_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        BatcherSettings(**bad)


def test_settings_allow_zero_wait() -> None:
    assert BatcherSettings(max_wait_ms=0).max_wait_ms == 0


def test_admission_holds_a_place_before_the_request_is_queued() -> None:
    async def main() -> None:
        batcher = DynamicBatcher(Recorder(), BatcherSettings(max_queue_size=2, max_wait_ms=0))
        await batcher.start()
        first, second = batcher.admit(), batcher.admit()
        with pytest.raises(QueueFullError) as refused:
            batcher.admit()  # both places are held while the two bodies are read
        assert refused.value.retry_after >= 1
        first.release()
        first.release()  # idempotent: the place is given back once
        third = batcher.admit()
        assert await batcher.submit(4, admission=second) == 40
        with pytest.raises(ValueError, match="released or used"):
            await batcher.submit(5, admission=second)
        third.release()
        await batcher.stop()

    run(main)


def test_a_backlog_longer_than_the_deadline_is_refused_at_the_door() -> None:
    async def main() -> None:
        release = threading.Event()

        def predict(items: Sequence[str]) -> list[str]:
            if "hold" in items:
                release.wait(HANG_GUARD_S)
            else:
                time.sleep(0.01)
            return list(items)

        settings = BatcherSettings(max_batch_size=1, max_wait_ms=0, timeout_s=1.0)
        batcher = DynamicBatcher(predict, settings)
        await batcher.start()
        hold = asyncio.create_task(batcher.submit("hold"))
        await asyncio.sleep(0.05)
        # No batch has finished, so there is no estimate yet: these are all taken.
        waiting = [asyncio.create_task(batcher.submit(f"r{i}")) for i in range(10)]
        await asyncio.sleep(0)
        assert batcher.queue_depth == 10
        await asyncio.sleep(0.3)
        release.set()
        assert await hold == "hold"
        # The first batch took >= 0.3 s for one row: the 9 or 10 rows still waiting are
        # >= 2.7 s of work at that pace, beyond the 1 s deadline, so the door shuts at once
        # and the retry hint is the backlog's length, not a flat second.
        with pytest.raises(QueueFullError, match="more than the deadline") as refused:
            batcher.admit()
        assert refused.value.retry_after >= 3
        await asyncio.gather(*waiting, return_exceptions=True)
        await batcher.stop()

    run(main)


def test_rows_that_would_run_after_their_deadline_are_refused_when_queued() -> None:
    async def main() -> None:
        release = threading.Event()

        def predict(items: Sequence[int]) -> list[int]:
            if 0 in items:
                release.wait(HANG_GUARD_S)
            else:
                time.sleep(0.2)  # 0.2 s per one-row batch: the estimate the door uses
            return list(items)

        settings = BatcherSettings(max_batch_size=1, max_wait_ms=0, timeout_s=1.0)
        batcher = DynamicBatcher(predict, settings)
        await batcher.start()
        assert await batcher.submit(1) == 1  # one batch of one row: about 0.2 s per row
        hold = asyncio.create_task(batcher.submit(0))
        await asyncio.sleep(0.05)
        # One row running ahead: 20 more rows would take about 4.2 s, past the 1 s deadline.
        with pytest.raises(QueueFullError, match="after the request's deadline"):
            await batcher.submit(2, rows=20)
        assert batcher.queue_depth == 0  # refused before queueing: nothing was spent on it
        release.set()
        assert await hold == 0
        await batcher.stop()

    run(main)
