"""Row claims of one xdist worker's engine: which rows it rolls out, and when each is done.

Under xdist every worker queues every job, but a row's jobs share calls, so workers claim whole
rows through the shared `WorkQueue` (see workqueue.py). `RowClaims` remembers the answer for
each row this worker has asked about, counts the jobs of a held row still to finish, and marks
the row done in the queue when the last one has. The engine calls it under its own lock.
"""

from __future__ import annotations

from collections.abc import Callable

from pytest_mtmcs.rollout.workqueue import WorkQueue

__all__ = ["RowClaims"]


class RowClaims:
    """This worker's claims on the rows (work-queue units) of its jobs."""

    def __init__(self, queue: WorkQueue) -> None:
        self.queue = queue
        self._rows: dict[str, list[str]] = {}
        """unit -> the keys of its jobs, in queueing order."""
        self._held: dict[str, bool] = {}
        """unit -> whether this worker holds it (absent: not asked yet)."""
        self._left: dict[str, int] = {}
        """unit held -> how many of its jobs are still to finish."""

    def add(self, unit: str, key: str) -> None:
        """Note a queued job of `unit`."""
        self._rows.setdefault(unit, []).append(key)

    def holds(self, unit: str, started: Callable[[str], bool]) -> tuple[bool, list[str]]:
        """Whether this worker holds `unit`, claiming it on first sight. On a fresh claim also
        the keys of the row's jobs, to roll out next (they share calls); `started(key)` tells
        which of them need not be counted as still to finish."""
        mine = self._held.get(unit)
        if mine is not None:
            return mine, []
        mine = self._held[unit] = self.queue.claim(unit)
        if not mine:
            return False, []
        keys = self._rows.get(unit, [])
        self._left[unit] = sum(not started(k) for k in keys)
        return True, keys

    def is_held(self, unit: str) -> bool:
        """Whether this worker holds `unit` (False when it never asked)."""
        return bool(self._held.get(unit))

    def took_over(self, unit: str) -> None:
        """The worker that held `unit` died and this one took it over to roll out one job."""
        self._held[unit] = True
        self._left[unit] = 1

    def job_done(self, unit: str) -> bool:
        """One job of held `unit` finished; True when it was the row's last (call `row_done`
        outside the engine's lock)."""
        self._left[unit] -= 1
        return self._left[unit] <= 0

    def row_done(self, unit: str) -> None:
        """Mark held `unit` done in the queue: its replies are all in the store."""
        self.queue.done(unit)
