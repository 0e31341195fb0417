"""The engine's thread and event loop, and how it dies: the part of `Engine` that is not
about dialogues.

The loop runs in a daemon thread: `4 * worker_slots` worker tasks and one heartbeat task. When
any of them raises (a store that cannot be written, a bug in a worker's loop or in the
heartbeat), or the loop itself fails, the engine is dead: `_die` records the cause in
`failure`, settles every open future at once with `EngineStopped` naming it, stops new calls
(`_halt`) and cancels the tasks. `finished` is set when the thread has ended, whatever the
reason, so whoever waits on a result can wait on both and never on a dead engine.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from pytest_mtmcs.errors import MtmcsError
from pytest_mtmcs.rollout.jobs import EngineStopped, settle
from pytest_mtmcs.rollout.store_errors import StoreError
from pytest_mtmcs.rollout.writer import StoreWriter

__all__ = ["EngineLoop"]


class EngineLoop:
    """The thread, loop, tasks and failure of an engine; `Engine` supplies the work."""

    worker_slots: int
    """Request slots per model: the loop runs four worker tasks per slot."""

    def __init__(self) -> None:
        self.failure: BaseException | None = None
        """Why the engine stopped on its own (a store error, or a bug), once it did."""
        self.finished: Future[None] = Future()
        """Set when the engine's thread has ended, for whatever reason."""
        self._writer = StoreWriter()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ what Engine supplies
    def _open_futures(self) -> Iterator[Future[Any]]:
        """Every future an item may wait on."""
        raise NotImplementedError

    def _halt(self, exc: BaseException) -> None:
        """Stop starting anything new (the engine died of `exc`)."""
        raise NotImplementedError

    def _clear_queue(self) -> None:
        """Forget the jobs not started yet."""
        raise NotImplementedError

    async def _worker(self) -> None:
        raise NotImplementedError

    async def _beat(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        """Release models and claims as the loop ends."""
        raise NotImplementedError

    # ------------------------------------------------------------------ liveness and death
    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the calls in flight; unfinished futures get an error."""
        self._stopping = True
        self._clear_queue()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            self._writer.close()
        self._settle_all(MtmcsError("the run stopped before this dialogue was rolled out"))

    async def _write(self, fn: Any, *args: Any) -> None:
        """One store write on the writer thread; a failure stops the engine at once."""
        try:
            await self._writer.run(fn, *args)
        except StoreError as exc:
            self._die(exc)
            raise

    @property
    def alive(self) -> bool:
        """Whether the engine's thread is running and has not failed."""
        return self._thread is not None and not self.finished.done() and self.failure is None

    def stopped_error(self) -> EngineStopped:
        """The error of every item left waiting when the engine stopped on its own."""
        cause = self.failure
        if isinstance(cause, StoreError):
            err = EngineStopped(f"the rollout engine stopped: {cause}")
        elif cause is not None:
            err = EngineStopped(f"the rollout engine stopped on an internal error "
                                f"({type(cause).__name__}: {cause}); this is a bug in "
                                "pytest-mtmcs, please report it")
        else:
            err = EngineStopped("the rollout engine's thread ended before this result")
        err.__cause__ = cause
        return err

    def _die(self, exc: BaseException) -> None:
        """The engine cannot go on (`exc`: a store error, or a bug in its loop): settle every
        open future with the reason now, and end the loop's tasks (engine thread)."""
        if self.failure is not None:
            return
        self.failure = exc
        self._stopping = True
        self._halt(exc)
        self._settle_all(self.stopped_error())
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._cancel_tasks)
            except RuntimeError:  # the loop closed in between
                pass

    def _cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()

    def _settle_all(self, error: BaseException) -> None:
        """Settle every open future with `error` (those already settled keep their result)."""
        for fut in self._open_futures():
            settle(fut, error=error)

    def _wake(self) -> None:
        loop, event = self._loop, self._wakeup
        if loop is not None and event is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop closed in between
                pass

    # ------------------------------------------------------------------ the loop (engine thread)
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # the loop itself failed: the engine is dead all the same
            self._die(exc)
        finally:
            if self.failure is not None:
                self._settle_all(self.stopped_error())
            self._writer.close()
            self.finished.set_result(None)

    async def _main(self) -> None:
        self._wakeup = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        try:
            # Four times as many workers as request slots: a worker waiting for a request that
            # another dialogue already has in flight (Type A's shared R1/R2) holds no slot, and
            # neither does one waiting for another xdist worker's row (measured: 2x left slots
            # idle, 37.2 s against 42.6 s for 2,304 calls at concurrency 16).
            workers = [asyncio.create_task(self._guarded(self._worker()))
                       for _ in range(4 * self.worker_slots)]
            beat = asyncio.create_task(self._guarded(self._beat()))
            self._tasks = [*workers, beat]
            if self.failure is not None:  # died before the tasks existed
                self._cancel_tasks()
            await asyncio.gather(*workers, return_exceptions=True)
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
        finally:
            await self._close()

    async def _guarded(self, work: Any) -> None:
        """Run one of the loop's tasks; an exception ends the engine (`_die`)."""
        try:
            await work
        except asyncio.CancelledError:
            pass
        except BaseException as exc:
            self._die(exc)
