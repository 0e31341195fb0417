"""Rollout progress: the counters the terminal shows while the engine runs ahead of the items."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Progress:
    """Counters the terminal shows while rollout runs ahead of the items."""

    total: int = 0
    done: int = 0
    calls: int = 0
    cached: int = 0
    judge_calls: int = 0
    helper_calls: int = 0
    """Calls of guardrails' helper models (checkers, scorers)."""
    errors: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    def line(self) -> str:
        """One status line, e.g. `rollout 120/288 dialogues, 360 calls (12 cached), 3.1 calls/s`."""
        elapsed = max((self.finished or time.monotonic()) - self.started, 1e-9)
        rate = self.calls / elapsed
        eta = ""
        if self.done and self.done < self.total and self.finished is None:
            eta = f", ETA {elapsed / self.done * (self.total - self.done):.0f} s"
        judged = f", judge {self.judge_calls} calls" if self.judge_calls else ""
        if self.helper_calls:
            judged += f", guardrail helpers {self.helper_calls} calls"
        return (f"rollout {self.done}/{self.total} dialogues, {self.calls} calls "
                f"({self.cached} cached){judged}, {rate:.1f} calls/s{eta}")
