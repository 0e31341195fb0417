"""One micro-batcher for every local model: `hf:` targets (text and vision) and Llama Guard.

Callers on an event loop each hand in one request and await its own result; the batcher cuts
the waiting requests into batches and runs the batch function on one dedicated worker thread,
so the event loop stays free while the model computes.

    batcher = MicroBatcher(run_batch, max_size=16, label="hf:model (/models/x): generate",
                           key=lambda r: r.params, length=lambda r: len(r.ids))
    reply = await batcher.call(request)

Batching.

- Every event loop has its own queue and drain task (futures belong to one loop), so one
  batcher serves successive `asyncio.run` calls, and loops on several threads at once. All of
  them share the single worker thread: the model never runs two batches at the same time.
- Before cutting a batch the drain task lets a burst of calls arrive: it yields to the loop
  while the queue keeps growing (at most `SETTLE_YIELDS` times) and, when `window_s` > 0 and
  the batch is not full yet, waits `window_s` once and yields again.
- A batch is the oldest waiting request plus up to `max_size - 1` others with an equal `key`
  (requests with different keys never share a batch). When more are compatible than fit, the
  window of similar `length` around the oldest is taken (less padding, ties by arrival); the
  oldest request is always served, so nothing starves.
- One batch per loop runs at a time; calls arriving meanwhile form the next batches.
- `batch_sizes` records the size of every call of the batch function, in order, the
  one-at-a-time retries below included.

Error policy: the only one, the same for every user.

1. A batch function that raises an `Exception` for a batch of several requests is called again
   once per request, each alone, so that one bad request (an unreadable image, a prompt the
   model rejects) fails only its own caller; the other callers get their results.
2. A request that fails alone fails its caller with a `TargetError` reading
   "{label} failed: {exception type}: {message}", whose `__cause__` is the original exception.
   A `TargetError` raised by the batch function reaches the caller unchanged.
3. A batch function that returns a number of results other than its batch size has failed
   (a `ValueError`, handled as in 1 and 2).
4. `close()` / `aclose()` fail every caller still waiting for a batch with `BatcherClosed` (a
   `TargetError`) and stop the worker thread after the batch in flight, whose callers still get
   their results. Closing is not final: a later call starts a new worker thread.
5. No caller waits forever: if the drain task dies (the batch function raised a
   `BaseException` such as KeyboardInterrupt on the worker thread, the task was cancelled when
   its loop shut down, or the batcher has a bug), every caller of the batch in flight and every
   waiting caller fails with a `TargetError` whose `__cause__` is that exception; then
   KeyboardInterrupt, SystemExit and cancellation propagate. The next call starts a new drain.

Callers cancelled while waiting are dropped before their batch is cut; a caller cancelled while
its batch runs is skipped when the results are handed out.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pytest_mtmcs.errors import TargetError

RequestT = TypeVar("RequestT")
ResultT = TypeVar("ResultT")

SETTLE_YIELDS = 16
"""Most times the drain task yields to the loop while the queue keeps growing."""


class BatcherClosed(TargetError):
    """The batcher was closed while this request waited for its batch (error policy 4)."""


@dataclass(eq=False)
class _Waiting(Generic[RequestT, ResultT]):
    """A request, its caller's future and what batches are cut by (compared by identity)."""

    request: RequestT
    future: asyncio.Future[ResultT]
    key: object
    length: int
    seq: int


@dataclass
class _LoopQueue(Generic[RequestT, ResultT]):
    """Waiting requests of one event loop and its drain task (None when no drain runs).

    Holds no reference to its loop once idle, so the weak per-loop map can forget closed loops.
    """

    waiting: list[_Waiting[RequestT, ResultT]] = field(default_factory=list)
    drain: asyncio.Task[None] | None = None


@dataclass(frozen=True)
class _Failed:
    """The error one request's caller gets (distinct from any result type)."""

    error: TargetError


class MicroBatcher(Generic[RequestT, ResultT]):
    """Collects requests from event loops into batches for one worker thread (see the module doc).

    `run(batch)` runs on the worker thread and returns one result per request, in the batch's
    order. `key(request)`: requests whose keys are not equal (`==`) never share a batch
    (default: all compatible). `length(request)`: the size that picks similar requests when
    more are compatible than fit (default: 0). `label` (or a callable returning it, for names
    known only later) opens every error message, e.g. "hf:tiny (/models/tiny): generate".
    Keys and lengths are computed once, on the caller's loop, when the request is submitted.
    """

    def __init__(self, run: Callable[[list[RequestT]], Sequence[ResultT]], *, max_size: int,
                 label: str | Callable[[], str],
                 key: Callable[[RequestT], object] | None = None,
                 length: Callable[[RequestT], int] | None = None,
                 window_s: float = 0.0, thread_name: str = "mtmcs-batch") -> None:
        self.run = run
        self.max_size = max(1, max_size)
        """Most requests per batch (at least 1)."""
        self.window_s = window_s
        """Seconds the drain task waits once for more requests before cutting a batch (0: none)."""
        self.batch_sizes: list[int] = []
        """Size of every call of `run` so far, in order (tests and benchmarks read it)."""
        self._label = label
        self._key = key
        self._length = length
        self._thread_name = thread_name
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                                _LoopQueue[RequestT, ResultT]] = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()  # guards _queues and _executor across threads
        self._executor: ThreadPoolExecutor | None = None
        self._seq = itertools.count()

    @property
    def label(self) -> str:
        """What error messages start with."""
        return self._label if isinstance(self._label, str) else self._label()

    # -- callers (event loop) -----------------------------------------------------------------

    def submit(self, request: RequestT) -> asyncio.Future[ResultT]:
        """Queue `request` on the running loop; the future settles with its result or error.

        Must be called on a running event loop (RuntimeError otherwise). Queueing is
        synchronous: requests submitted one after another without awaiting are all waiting
        when the drain task first looks.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            queue = self._queues.get(loop)
            if queue is None:
                queue = self._queues[loop] = _LoopQueue()
        waiting = _Waiting(request, loop.create_future(),
                           None if self._key is None else self._key(request),
                           0 if self._length is None else self._length(request), next(self._seq))
        queue.waiting.append(waiting)
        if queue.drain is None or queue.drain.done():
            queue.drain = loop.create_task(self._drain(queue), name=f"{self._thread_name}-drain")
        return waiting.future

    async def call(self, request: RequestT) -> ResultT:
        """`request`'s result, computed in some batch; raises TargetError per the error policy."""
        return await self.submit(request)

    # -- closing --------------------------------------------------------------------------------

    def close(self) -> None:
        """Fail waiting callers with BatcherClosed, then stop the worker thread, waiting for the
        batch in flight. Callable from any thread but the worker thread; from inside a running
        loop prefer `aclose`, which does not block that loop."""
        self._fail_waiting()
        executor = self._take_executor()
        if executor is not None:
            executor.shutdown(wait=True)

    async def aclose(self) -> None:
        """`close()` for event loops: waits for the batch in flight off the loop."""
        self._fail_waiting()
        executor = self._take_executor()
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, True)

    def _take_executor(self) -> ThreadPoolExecutor | None:
        with self._lock:
            executor, self._executor = self._executor, None
        return executor

    def _fail_waiting(self) -> None:
        """Fail every loop's waiting callers, on that loop's own thread (futures are not
        thread-safe); a closed loop has nobody left awaiting, so it is skipped."""
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        with self._lock:
            queues = list(self._queues.items())
        for loop, queue in queues:
            if loop is current:
                self._fail_queue(queue)
            else:
                try:
                    loop.call_soon_threadsafe(self._fail_queue, queue)
                except RuntimeError:  # the loop is closed
                    pass

    def _fail_queue(self, queue: _LoopQueue[RequestT, ResultT]) -> None:
        waiting, queue.waiting = queue.waiting, []
        for w in waiting:
            if not w.future.done():
                w.future.set_exception(self._closed())

    def _closed(self, cause: BaseException | None = None) -> BatcherClosed:
        error = BatcherClosed(f"{self.label}: the batcher was closed before this request ran")
        error.__cause__ = cause
        return error

    # -- the drain task (event loop) ------------------------------------------------------------

    async def _drain(self, queue: _LoopQueue[RequestT, ResultT]) -> None:
        loop = asyncio.get_running_loop()
        batch: list[_Waiting[RequestT, ResultT]] = []
        try:
            while True:
                await self._settle(queue)
                queue.waiting = [w for w in queue.waiting if not w.future.done()]  # cancelled
                if not queue.waiting:
                    return
                batch = self._cut(queue)
                requests = [w.request for w in batch]
                try:
                    job = loop.run_in_executor(self._worker(), self._run_isolated, requests)
                except RuntimeError as exc:  # close() shut the worker down just now
                    outcomes: list[ResultT | _Failed] = [_Failed(self._closed(exc)) for _ in batch]
                else:
                    outcomes = await job
                for w, outcome in zip(batch, outcomes, strict=True):
                    if w.future.done():  # its caller was cancelled meanwhile
                        continue
                    if isinstance(outcome, _Failed):
                        w.future.set_exception(outcome.error)
                    else:
                        w.future.set_result(outcome)
                batch = []
        except BaseException as exc:  # policy 5: no caller may wait forever
            stranded, queue.waiting = [*batch, *queue.waiting], []
            for w in stranded:
                if not w.future.done():
                    error = TargetError(f"{self.label}: the batch worker stopped before answering "
                                        f"({type(exc).__name__}: {exc})")
                    error.__cause__ = exc
                    w.future.set_exception(error)
            if isinstance(exc, (KeyboardInterrupt, SystemExit, asyncio.CancelledError)):
                raise
        finally:
            queue.drain = None

    async def _settle(self, queue: _LoopQueue[RequestT, ResultT]) -> None:
        """Let a burst of calls reach the queue: yield while it grows, wait `window_s` once."""
        for wait in (0.0, self.window_s) if self.window_s > 0 else (0.0,):
            if len(queue.waiting) >= self.max_size:
                return
            if wait:
                await asyncio.sleep(wait)
            for _ in range(SETTLE_YIELDS):
                before = len(queue.waiting)
                await asyncio.sleep(0)
                if len(queue.waiting) == before or len(queue.waiting) >= self.max_size:
                    break

    def _cut(self, queue: _LoopQueue[RequestT, ResultT]) -> list[_Waiting[RequestT, ResultT]]:
        """The oldest request plus up to max_size-1 others of its key, close in length."""
        oldest = queue.waiting[0]
        same = [w for w in queue.waiting if w.key == oldest.key]
        if len(same) > self.max_size:
            same.sort(key=lambda w: (w.length, w.seq))
            at = same.index(oldest)
            lo = max(0, min(at - self.max_size // 2, len(same) - self.max_size))
            same = same[lo:lo + self.max_size]
        chosen = set(same)
        queue.waiting = [w for w in queue.waiting if w not in chosen]
        return same

    def _worker(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1,
                                                    thread_name_prefix=self._thread_name)
            return self._executor

    # -- the worker thread ----------------------------------------------------------------------

    def _run_isolated(self, requests: list[RequestT]) -> list[ResultT | _Failed]:
        """Policies 1-3: the batch at once; if that raises, each request alone."""
        try:
            self.batch_sizes.append(len(requests))
            results: list[ResultT | _Failed] = list(self.run(requests))
            if len(results) != len(requests):
                raise ValueError(f"the batch function returned {len(results)} results for "
                                 f"{len(requests)} requests")
            return results
        except Exception as exc:  # policies 1-3: every failure must reach its caller
            if len(requests) > 1:
                return [self._run_isolated([r])[0] for r in requests]
            if isinstance(exc, TargetError):
                return [_Failed(exc)]
            error = TargetError(f"{self.label} failed: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            return [_Failed(error)]


__all__ = ["SETTLE_YIELDS", "BatcherClosed", "MicroBatcher"]
