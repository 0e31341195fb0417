"""The store's writer: one thread that makes every write of an engine, in order.

A write can wait on sqlite's lock (another process committing, up to the busy timeout), so it
must never run on the engine's event loop, where it would stall every other call in flight.
`StoreWriter.run(fn, *args)` hands `fn` to one thread and awaits its result: writes happen in
the order they were asked for, one at a time, and a failure is raised to the caller that
asked, never lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["StoreWriter"]

_T = TypeVar("_T")


class StoreWriter:
    """One writer thread for one engine's store writes (FIFO, one at a time)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtmcs-store-writer")

    async def run(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run `fn(*args, **kwargs)` on the writer thread and return (or raise) what it did."""
        return await asyncio.wrap_future(self._pool.submit(fn, *args, **kwargs))

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue `fn(*args)` without waiting for it (a cleanup that must not be cancelled
        with its caller); its failure is dropped."""
        self._pool.submit(fn, *args)

    def close(self) -> None:
        """Finish the queued writes, then end the thread."""
        self._pool.shutdown(wait=True)
