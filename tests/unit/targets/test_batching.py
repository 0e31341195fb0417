"""The shared micro-batcher, through real asyncio and its real worker thread.

No sleeps and no wall-clock limits: a batch function that must stay busy waits on a
`threading.Event` the test sets, and the test learns that a batch has started from another
event (awaited off the loop with `asyncio.to_thread`, so the loop keeps running).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from pytest_mtmcs.errors import TargetError
from pytest_mtmcs.targets.batching import BatcherClosed, MicroBatcher


class Gate:
    """A batch function that records its batches and holds the first one until released."""

    def __init__(self, answer: Callable[[int], Any] = lambda x: x * 10) -> None:
        self.answer = answer
        self.batches: list[list[int]] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, batch: list[int]) -> list[Any]:
        self.batches.append(list(batch))
        self.started.set()
        self.release.wait()
        return [self.answer(x) for x in batch]


def batcher(run: Callable[[list[int]], Sequence[Any]], max_size: int = 4,
            key: Callable[[int], object] | None = None) -> MicroBatcher[int, Any]:
    return MicroBatcher(run, max_size=max_size, key=key, length=lambda x: x,
                        label="test-model: generate")


async def start_one(b: MicroBatcher[int, Any], gate: Gate) -> asyncio.Future[Any]:
    """Submit request 0 and wait until its batch runs (so the worker is busy)."""
    first = b.submit(0)
    await asyncio.to_thread(gate.started.wait)
    return first


def test_batches_fill_up_to_max_size_while_a_batch_runs() -> None:
    gate = Gate()
    b = batcher(gate, max_size=4)

    async def main() -> list[Any]:
        first = await start_one(b, gate)
        rest = [b.submit(i) for i in range(1, 11)]  # queued while batch [0] holds the worker
        gate.release.set()
        return list(await asyncio.gather(first, *rest))

    assert asyncio.run(main()) == [i * 10 for i in range(11)]
    assert b.batch_sizes == [1, 4, 4, 2]
    assert gate.batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    b.close()


def test_requests_with_different_keys_never_share_a_batch() -> None:
    gate = Gate()
    b = batcher(gate, max_size=8, key=lambda x: x % 2)

    async def main() -> None:
        first = await start_one(b, gate)
        rest = [b.submit(i) for i in range(1, 7)]
        gate.release.set()
        await asyncio.gather(first, *rest)

    asyncio.run(main())
    assert gate.batches == [[0], [1, 3, 5], [2, 4, 6]]  # the oldest request's key goes first
    b.close()


def test_when_more_fit_the_oldest_is_batched_with_its_nearest_lengths() -> None:
    gate = Gate()
    b = batcher(gate, max_size=2)

    async def main() -> None:
        first = await start_one(b, gate)
        rest = [b.submit(x) for x in (50, 1, 49, 2)]
        gate.release.set()
        await asyncio.gather(first, *rest)

    asyncio.run(main())
    assert [sorted(batch) for batch in gate.batches] == [[0], [49, 50], [1, 2]]
    b.close()


def test_a_failing_request_fails_only_its_caller() -> None:
    def run(batch: list[int]) -> list[int]:
        if 13 in batch:
            raise ValueError(f"cannot decode request {13}")
        return [x + 1 for x in batch]

    b = batcher(run, max_size=4)

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(b.call(x) for x in (11, 12, 13, 14)),
                                         return_exceptions=True))

    results = asyncio.run(main())
    failed = results.pop(2)
    assert results == [12, 13, 15]
    assert isinstance(failed, TargetError) and not isinstance(failed, BatcherClosed)
    assert str(failed) == "test-model: generate failed: ValueError: cannot decode request 13"
    assert isinstance(failed.__cause__, ValueError)
    assert b.batch_sizes == [4, 1, 1, 1, 1]  # the batch, then each request alone
    b.close()


def test_a_batch_function_that_always_raises_fails_every_caller_with_its_own_error() -> None:
    calls: list[list[int]] = []

    def run(batch: list[int]) -> list[int]:
        calls.append(batch)
        raise RuntimeError("out of memory (simulated)")

    b = batcher(run, max_size=8)

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(b.call(x) for x in range(3)), return_exceptions=True))

    errors = asyncio.run(main())
    assert all(isinstance(e, TargetError) and "out of memory" in str(e) for e in errors)
    assert all(isinstance(e.__cause__, RuntimeError) for e in errors)
    assert len({id(e) for e in errors}) == 3
    assert sorted(map(sorted, calls)) == [[0], [0, 1, 2], [1], [2]]
    b.close()


def test_a_target_error_reaches_the_caller_unchanged_and_wrong_counts_fail() -> None:
    original = TargetError("server said no", status=503)

    def run(batch: list[int]) -> list[int]:
        if batch == [1]:
            raise original
        return [] if batch == [2] else batch

    b = batcher(run, max_size=1)

    async def main() -> list[Any]:
        return list(await asyncio.gather(b.call(1), b.call(2), b.call(3), return_exceptions=True))

    one, two, three = asyncio.run(main())
    assert one is original
    assert isinstance(two, TargetError) and "returned 0 results for 1 requests" in str(two)
    assert three == 3
    b.close()


def test_close_fails_waiting_callers_and_lets_the_running_batch_finish() -> None:
    gate = Gate()
    b = batcher(gate, max_size=4)

    async def main() -> tuple[Any, list[Any]]:
        first = await start_one(b, gate)
        waiting = [b.submit(i) for i in (1, 2)]
        closing = asyncio.create_task(b.aclose())
        failed = await asyncio.gather(*waiting, return_exceptions=True)  # before the gate opens
        gate.release.set()
        await closing
        return await first, failed

    first, failed = asyncio.run(main())
    assert first == 0
    assert all(isinstance(e, BatcherClosed) and "closed before this request ran" in str(e)
               for e in failed)
    assert b.batch_sizes == [1]
    assert asyncio.run(b.call(5)) == 50  # closing is not final: a new worker thread starts
    b.close()


def test_close_from_another_thread_settles_callers_of_a_running_loop() -> None:
    gate = Gate()
    b = batcher(gate, max_size=4)

    async def main() -> list[Any]:
        first = await start_one(b, gate)
        waiting = [b.submit(i) for i in (1, 2)]
        closer = threading.Thread(target=b.close)  # blocks until the running batch finishes
        closer.start()
        failed = await asyncio.gather(*waiting, return_exceptions=True)
        gate.release.set()
        await asyncio.to_thread(closer.join)
        return [await first, *failed]

    first, *failed = asyncio.run(main())
    assert first == 0 and all(isinstance(e, BatcherClosed) for e in failed)


class WorkerDied(BaseException):
    """Something no `except Exception` catches, raised on the worker thread."""


def test_a_dying_worker_fails_every_pending_caller() -> None:
    gate = Gate()

    def run(batch: list[int]) -> list[int]:
        gate(batch)
        raise WorkerDied("the worker thread is gone")

    b = batcher(run, max_size=1)

    async def main() -> list[Any]:
        first = await start_one(b, gate)
        waiting = [b.submit(i) for i in (1, 2)]
        gate.release.set()
        return list(await asyncio.gather(first, *waiting, return_exceptions=True))

    errors = asyncio.run(main())
    assert all(isinstance(e, TargetError) and isinstance(e.__cause__, WorkerDied) for e in errors)
    assert "the batch worker stopped" in str(errors[0])
    b.close()


def test_many_concurrent_callers_each_get_their_own_result() -> None:
    def run(batch: list[int]) -> list[str]:
        return [f"reply to {x}" for x in batch]

    b = MicroBatcher(run, max_size=7, label="test", key=lambda x: x % 3, length=lambda x: -x)

    async def main() -> list[str]:
        return list(await asyncio.gather(*(b.call(i) for i in range(200))))

    assert asyncio.run(main()) == [f"reply to {i}" for i in range(200)]
    assert sum(b.batch_sizes) == 200 and max(b.batch_sizes) == 7
    b.close()


def test_cancelled_callers_are_dropped_before_their_batch() -> None:
    gate = Gate()
    b = batcher(gate, max_size=4)

    async def main() -> list[Any]:
        first = await start_one(b, gate)
        keep, drop = b.submit(1), b.submit(2)
        drop.cancel()
        gate.release.set()
        return [await first, await keep]

    assert asyncio.run(main()) == [0, 10]
    assert gate.batches == [[0], [1]]
    b.close()


def test_submit_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        batcher(lambda batch: batch).submit(1)
