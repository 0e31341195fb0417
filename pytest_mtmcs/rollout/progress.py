"""Rollout progress: the counters the terminal shows while the engine runs ahead of the items."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal

CacheMode = Literal["use", "refresh", "off"]
"""How a run uses the answers in the store: read and write them (`use`), ask every call again
and overwrite them (`refresh`, --mtmcs-refresh), neither read nor write them (`off`,
--mtmcs-no-cache)."""

_MODE_NOTE = {"use": "", "refresh": " (--mtmcs-refresh: older answers asked again)",
              "off": " (--mtmcs-no-cache: the store's answers neither read nor written)"}


@dataclass
class Progress:
    """Counters the terminal shows while rollout runs ahead of the items."""

    total: int = 0
    done: int = 0
    calls: int = 0
    stored: int = 0
    """Answers (replies, intent answers, judgements) read from the store, stored by an earlier
    run."""
    shared: int = 0
    """Answers shared with an identical request of this run (two dialogues awaiting the same
    call, here or in another xdist worker, in flight or made a moment before): made once,
    counted once in `calls` (or in the other process's)."""
    stored_first: float | None = None
    """When the oldest answer read from the store was stored (epoch seconds)."""
    stored_last: float | None = None
    """When the newest answer read from the store was stored (epoch seconds)."""
    judge_calls: int = 0
    helper_calls: int = 0
    """Calls of guardrails' helper models (checkers, scorers)."""
    errors: int = 0
    mode: CacheMode = "use"
    run: str | None = None
    """This run's id: an answer it stored itself (another xdist worker of it, or an identical
    request made earlier in the run) counts as shared, not as read from the store."""
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def cached(self) -> int:
        """Answers not made by this run's own calls: read from the store, or shared in flight."""
        return self.stored + self.shared

    def note_stored(self, created: float, run: str | None = None, n: int = 1) -> None:
        """`n` answers read from the store, stored at `created` (epoch seconds) by `run`: by
        an earlier run they count as from the store, by this one as shared."""
        if run is not None and run == self.run:
            self.shared += n
            return
        self.stored += n
        if self.stored_first is None or created < self.stored_first:
            self.stored_first = created
        if self.stored_last is None or created > self.stored_last:
            self.stored_last = created

    def line(self) -> str:
        """One status line, e.g. `rollout 288/288 dialogues, 0 calls, 864 answers from the
        store (stored 2026-12-01 to 2026-12-03), 12 shared in flight, 0.0 calls/s` (dates as
        UTC days)."""
        elapsed = max((self.finished or time.monotonic()) - self.started, 1e-9)
        rate = self.calls / elapsed
        eta = ""
        if self.done and self.done < self.total and self.finished is None:
            eta = f", ETA {elapsed / self.done * (self.total - self.done):.0f} s"
        text = f"rollout {self.done}/{self.total} dialogues, {self.calls} calls{self.answers()}"
        return f"{text}, {rate:.1f} calls/s{eta}{_MODE_NOTE[self.mode]}"

    def answers(self, *, shared: bool = True) -> str:
        """Where the answers came from besides this run's calls, e.g. `, 864 answers from the
        store (stored 2026-12-01), 12 shared in flight, judge 40 calls`."""
        text = ""
        if self.stored:
            text += f", {self.stored} answers from the store ({self.stored_days()})"
        if self.shared and shared:
            text += f", {self.shared} shared in flight"
        if self.judge_calls:
            text += f", judge {self.judge_calls} calls"
        if self.helper_calls:
            text += f", guardrail helpers {self.helper_calls} calls"
        return text

    def counts(self) -> dict[str, object]:
        """The counters an xdist worker sends the controller (see `merged_line`)."""
        return {"calls": self.calls, "stored": self.stored, "shared": self.shared,
                "stored_first": self.stored_first, "stored_last": self.stored_last,
                "judge_calls": self.judge_calls, "helper_calls": self.helper_calls,
                "mode": self.mode}

    def stored_days(self) -> str:
        """`stored 2026-12-01 to 2026-12-03` (`stored 2026-12-03` for one day), UTC days."""
        if self.stored_first is None or self.stored_last is None:
            return "stored at an unknown date"
        first, last = utc_day(self.stored_first), utc_day(self.stored_last)
        return f"stored {first}" if first == last else f"stored {first} to {last}"


def utc_day(epoch: float) -> str:
    """The UTC day of an epoch time, e.g. `2026-12-03`."""
    return datetime.fromtimestamp(epoch, tz=timezone.utc).date().isoformat()


def merged_line(parts: list[dict[str, object]]) -> str:
    """The xdist controller's rollout line, from its workers' `Progress.counts()`. Every worker
    queues every selected dialogue and the work queue has each rolled out by one of them, the
    others reading its answers: so calls are added up (each was made once), answers from the
    store are the most any worker read (each reads all of them), with their days, and answers
    shared within the run are not shown (a worker reading another's counts them too)."""
    total = Progress()
    for part in parts:
        for name in ("calls", "judge_calls", "helper_calls"):
            setattr(total, name, getattr(total, name) + int(part.get(name) or 0))  # type: ignore[call-overload]
        total.stored = max(total.stored, int(part.get("stored") or 0))  # type: ignore[call-overload]
        for name, pick in (("stored_first", min), ("stored_last", max)):
            value = part.get(name)
            if isinstance(value, (int, float)):
                mine = getattr(total, name)
                setattr(total, name, value if mine is None else pick(mine, value))
        if part.get("mode") in _MODE_NOTE:
            total.mode = part["mode"]  # type: ignore[assignment]
    return (f"rollout ({len(parts)} xdist workers): {total.calls} calls"
            f"{total.answers(shared=False)}{_MODE_NOTE[total.mode]}")
