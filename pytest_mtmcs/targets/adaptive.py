"""How many calls one HTTP server is sent at once, adapted to what it sustains: policy, no I/O.

A single-stream server (`transformers serve` without continuous batching, Ollama with
OLLAMA_NUM_PARALLEL=1, llama.cpp with one slot) computes one request at a time: calls sent
together only queue there, each waits for all those before it, and a call whose client gave
up (a timeout) is computed anyway, delaying the next ones. `AdaptiveLimit` notices that and
sends fewer calls at once: additive increase, multiplicative decrease (AIMD).

- The baseline is the fastest call seen, per completion token (max_tokens when the server
  does not say, plus `PROMPT_TOKENS` for the prompt's share): the fastest call of a burst is
  the one that queued least. A window of calls sent one at a time (nothing queued: the
  server's own speed) rescales it: after each decrease on latency (a probe, as BBR's) and
  whenever the limit is 1.
- Every `window` calls, the median of their latencies over the baseline is judged: above
  `growth` (with a median call of at least `min_latency_s`, so that fast servers and
  scheduling noise never count) while more than one call may be in flight, the limit halves;
  at most `calm`, it rises by one, up to the cap.
- A timed-out call halves the limit at once (a timeout is the worst latency growth, and the
  abandoned request is still being computed).
- After a change, the calls already in flight are not judged: they were sent under the old
  limit.

The cap is `max_limit`, or, without one, the most calls seen in flight at once: the engine
bounds those by --mtmcs-concurrency, so the limit starts open (no bound of its own) and never
exceeds it. Lowering the limit is recorded in `events` and said by `lowered()`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["PROMPT_TOKENS", "AdaptiveLimit", "LimitEvent"]

PROMPT_TOKENS = 8
"""Tokens' worth of a call's fixed cost (reading the prompt, the round trip) in its latency per
token."""


@dataclass(frozen=True)
class LimitEvent:
    """One change of the limit."""

    at_s: float
    """Seconds since the limit was created (its clock)."""
    before: int
    """The limit before (the cap when it was open)."""
    after: int
    """The limit after."""
    reason: str
    """Why: `latency grew 4.1x over its baseline`, `timeouts`, or `no latency growth`."""


class AdaptiveLimit:
    """The number of calls one server may have in flight; see the module docstring.

    Use: `admits()` before sending (False: wait for a call to end), `take()` when one is sent,
    exactly one `release(latency_s, tokens=..., timed_out=...)` when it ends (`latency_s` None
    for a call that ended otherwise: failed, cancelled; it is then not judged). `clock` dates
    the events (tests inject one). Not thread-safe: used from one event loop.
    """

    def __init__(self, max_limit: int | None = None, *, clock: Callable[[], float] = time.monotonic,
                 window: int = 8, growth: float = 2.5, calm: float = 1.5,
                 min_latency_s: float = 0.25) -> None:
        if max_limit is not None and max_limit < 1:
            raise ValueError(f"max_limit must be >= 1 or None, got {max_limit!r}")
        if window < 1 or not growth > calm >= 1:
            raise ValueError(f"need window >= 1 and growth > calm >= 1, got {window!r}, "
                             f"{growth!r}, {calm!r}")
        self.max_limit = max_limit
        self.window, self.growth, self.calm, self.min_latency_s = window, growth, calm, min_latency_s
        self._clock = clock
        self._born = clock()
        self._limit: int | None = None  # None: open, i.e. at the cap
        self.in_flight = 0
        """Calls taken and not yet released."""
        self.peak = 0
        """The most calls in flight at once so far."""
        self.events: list[LimitEvent] = []
        """Every change of the limit, in order."""
        self._best: float | None = None  # the fastest seconds per token seen
        self._scale = 1.0  # the median ratio measured one call at a time: the baseline's own
        self._samples: list[tuple[float, float]] = []  # (latency / baseline, seconds) this window
        self._skip = 0  # calls still in flight that were sent before the last change
        self._probe = False  # measuring one call at a time after a decrease on latency

    @property
    def cap(self) -> int:
        """The highest the limit goes: `max_limit`, else the most calls seen in flight (>= 1)."""
        return self.max_limit if self.max_limit is not None else max(1, self.peak)

    @property
    def limit(self) -> int | None:
        """The calls that may be in flight at once; None while open (bounded only by the cap)."""
        return self._limit

    def admits(self) -> bool:
        """True when one more call may be sent now."""
        bound = 1 if self._probe else self._limit if self._limit is not None else self.max_limit
        return bound is None or self.in_flight < bound

    def take(self) -> None:
        """A call was sent."""
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    def release(self, latency_s: float | None, *, size: int | None = None,
                tokens: int | None = None, timed_out: bool = False) -> None:
        """A call ended: after `latency_s` seconds with `tokens` completion tokens (None: not
        known: `size`, the max_tokens it asked for, stands in), or timed out, or (latency_s
        None) otherwise."""
        self.in_flight = max(0, self.in_flight - 1)
        stale = self._skip > 0  # sent before the last change
        self._skip -= stale
        current = self._limit if self._limit is not None else self.cap
        if timed_out:
            # One halving per burst of timeouts: a call sent before a decrease was answered by it.
            answered = stale and bool(self.events) and self.events[-1].after < self.events[-1].before
            if current > 1 and not answered:
                self._set(max(1, current // 2), "timeouts")
            return
        if stale or latency_s is None:
            return
        # Per token generated (else asked for), plus a few for the prompt's own share, so that
        # a one-token intent answer and a 48-token reply compare.
        per_token = latency_s / (PROMPT_TOKENS + max(0, tokens if tokens is not None else size or 0))
        if self._best is None or per_token < self._best:
            self._best = per_token
        best = self._best
        self._samples.append((per_token / best if best > 0 else 1.0, latency_s))
        if len(self._samples) < self.window:
            return
        ratio = statistics.median(s[0] for s in self._samples)
        raw = statistics.median(s[1] for s in self._samples)
        self._samples.clear()
        if current == 1 or self._probe:
            # Sent one at a time: nothing queued, so this is the server's own speed.
            self._scale = ratio
            if self._probe:  # measured: now the halved limit applies
                self._probe = False
                return
        ratio /= self._scale
        if ratio > self.growth and raw >= self.min_latency_s and current > 1:
            self._set(max(1, current // 2), f"latency grew {ratio:.1f}x over its baseline")
            self._probe = True
        elif ratio <= self.calm and self._limit is not None and current < self.cap:
            self._set(current + 1, "no latency growth")

    def _set(self, new: int, reason: str) -> None:
        before = self._limit if self._limit is not None else self.cap
        self._limit = None if (self.max_limit is None and new >= self.cap) else new
        self.events.append(LimitEvent(self._clock() - self._born, before, new, reason))
        self._samples.clear()
        self._skip = self.in_flight  # sent under the old limit: not judged

    def lowered(self) -> str | None:
        """`calls in flight lowered 16 -> 2 (latency grew 4.1x over its baseline)`, naming the
        first bound and the lowest reached, with each distinct reason, and where it ended when it
        rose again; None when it was never lowered."""
        down = [e for e in self.events if e.after < e.before]
        if not down:
            return None
        reasons: list[str] = []
        for e in down:
            kind = e.reason.split(" ", 1)[0]
            if all(r.split(" ", 1)[0] != kind for r in reasons):
                reasons.append(e.reason)
        lowest = min(e.after for e in down)
        end = self._limit if self._limit is not None else self.cap
        line = (f"calls in flight lowered {down[0].before} -> {lowest} at {down[0].at_s:.0f} s "
                f"({'; '.join(reasons)})")
        return line if end == lowest else f"{line}, {end} at the end"
