"""Retry policy, the outage circuit and call counters of HTTP targets: policy, no I/O.

Kept apart from the HTTP code so each rule can be read (and tested) on its own:

- `retry_reason` says whether a failed attempt is worth another one, and under which name it
  is counted: `timeout`, `connection` (refused, reset, dropped), `malformed` (a 200 whose body
  is not a chat completion), `http_429`, `http_5NN`. Other 4xx answers are never retried: the
  same request would get the same answer.
- `backoff_delay` is exponential backoff with full jitter (uniform in [0, min(cap, base*2^n)]),
  which spreads the retries of many concurrent calls instead of sending them in waves.
- `retry_after_s` reads `retry-after-ms` or `Retry-After` (seconds or an HTTP date).
- `OutageCircuit` notices that a server has failed every call for longer than a limit.
- `CallStats` counts calls, attempts and retries by reason for the run's report; `stats_line`
  says them (and, when it happened, that the calls in flight were lowered: `adaptive.py`).
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any

from pytest_mtmcs.errors import OutageError


def retry_reason(status: int | None = None, *, timeout: bool = False, connection: bool = False,
                 malformed: bool = False) -> str | None:
    """The counter name of a retryable failure, or None when it must not be retried.

    `status` is the HTTP status of an error answer: 429 and 5xx are retryable, any other
    status is not. Without a status, the flags say what went wrong.
    """
    if status is not None:
        return f"http_{status}" if status == 429 or status >= 500 else None
    if timeout:
        return "timeout"
    if connection:
        return "connection"
    if malformed:
        return "malformed"
    return None


def backoff_delay(retry: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Seconds to wait before retry number `retry` (0 for the first): full jitter.

    Drawn uniformly from [0, min(cap_s, base_s * 2**retry)], so calls that failed together
    come back spread out rather than in one burst.
    """
    bound = min(cap_s, base_s * 2.0 ** min(retry, 62))  # the min keeps the power finite
    return rng.uniform(0.0, bound) if bound > 0 else 0.0


def retry_after_s(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """The wait a server asked for, in seconds (>= 0), or None when it asked for none.

    Reads `retry-after-ms` (OpenAI's own, more precise) first, then `Retry-After` as delta
    seconds or an HTTP date (RFC 9110 10.2.3); unparseable values count as absent. `now` is a
    Unix time (default: the current one), for the HTTP-date form.
    """
    if not headers:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
            if math.isfinite(ms) and ms >= 0:
                return ms / 1000.0
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT; a zoneless parse means just that
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class OutageCircuit:
    """Notices when a server has been failing continuously for longer than `max_outage_s`.

    The streak starts at the first failed attempt after the last success (of any replica) and
    ends at the next success. `check()` raises OutageError once the streak is older than the
    limit; with no streak, or a younger one, it does nothing. A success resets the streak, so
    a server that comes back is used again (in practice the run stops at the first
    OutageError). Non-retryable answers (a 400, 401, 404) prove the server is up and say
    nothing about an outage: they neither start nor end a streak.
    """

    def __init__(self, max_outage_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_outage_s = max_outage_s
        self._clock = clock
        self.failing_since: float | None = None
        """clock() at the first failure of the current streak; None while healthy."""

    def success(self) -> None:
        """A call succeeded: the streak (if any) is over."""
        self.failing_since = None

    def failure(self) -> None:
        """An attempt failed retryably: start the streak unless one is running."""
        if self.failing_since is None:
            self.failing_since = self._clock()

    def down_s(self) -> float:
        """How long the current streak has lasted (0 when there is none)."""
        return 0.0 if self.failing_since is None else self._clock() - self.failing_since

    def time_left(self) -> float:
        """Seconds until the circuit opens (inf with no streak; 0 once open)."""
        if self.failing_since is None:
            return math.inf
        return max(0.0, self.failing_since + self.max_outage_s - self._clock())

    def check(self, url: str) -> None:
        """Raise OutageError naming `url` when the streak is older than the limit."""
        if self.failing_since is None:
            return
        down = self._clock() - self.failing_since
        if down > self.max_outage_s or self.max_outage_s <= 0:
            raise OutageError(
                f"{url} has been down for {down:.1f} s (longer than --mtmcs-max-outage "
                f"{self.max_outage_s:g} s): stopping the run", url=url, down_s=down,
                max_outage_s=self.max_outage_s)


@dataclass
class CallStats:
    """Counters of one target's calls; `as_dict()` is JSON-ready for the run's report.

    `calls`: respond() calls; `ok`/`failed`: how they ended (OutageError included in
    `failed`); `attempts`: HTTP requests sent; `retries`: attempts after a failed one, by
    reason; `failures`: failed attempts by reason (a call that gives up adds a failure with
    no retry); `outage_errors`: calls refused by the open outage circuit; `cut`: replies cut at
    the reply cap; `sent`: the generation settings the server was actually sent (e.g.
    "max_tokens=48 temperature=0"), with the number of calls sent each.
    """

    calls: int = 0
    ok: int = 0
    failed: int = 0
    attempts: int = 0
    outage_errors: int = 0
    cut: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        """A snapshot: {calls, ok, failed, attempts, retries, retries_by_reason,
        failures_by_reason, outage_errors, cut_replies, sent}."""
        return {"calls": self.calls, "ok": self.ok, "failed": self.failed,
                "attempts": self.attempts, "retries": sum(self.retries.values()),
                "retries_by_reason": dict(sorted(self.retries.items())),
                "failures_by_reason": dict(sorted(self.failures.items())),
                "outage_errors": self.outage_errors, "cut_replies": self.cut,
                "sent": dict(sorted(self.sent.items()))}


def sent_settings(body: Mapping[str, Any]) -> str:
    """The generation settings of a request body as one key (every field but the model and
    the messages, sorted), e.g. "max_tokens=48 temperature=0": what the report records the
    server was sent."""
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in sorted(body.items()) if k not in ("model", "messages"))


def merge_stats(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Two `stats` snapshots of the same target added up (e.g. from two xdist workers):
    counts are summed, counters by reason and per-replica counters merged key by key;
    `max_in_flight` takes the larger figure (each worker's own peak, not a joint one)."""
    out: dict[str, Any] = dict(a)
    for key, value in b.items():
        mine = out.get(key)
        if mine is None:
            out[key] = value
        elif isinstance(value, Mapping) and isinstance(mine, Mapping):
            out[key] = merge_stats(mine, value)
        elif key == "max_in_flight":
            out[key] = max(mine, value)
        elif isinstance(value, (int, float)) and isinstance(mine, (int, float)):
            out[key] = mine + value
    return out


def stats_line(role: str, stats: Mapping[str, Any]) -> str:
    """One terminal line: "target: 1,204 calls, 1,210 requests, 6 retries (http_503 4,
    timeout 2), 0 failed"; and a second one only when the adaptive limit lowered the calls in
    flight: "target: calls in flight lowered 16 -> 2 at 9 s (latency grew 4.1x over its
    baseline)"."""
    reasons = ", ".join(f"{k} {v:,}" for k, v in stats.get("retries_by_reason", {}).items())
    retries = f"{stats.get('retries', 0):,} retries" + (f" ({reasons})" if reasons else "")
    line = (f"{role}: {stats.get('calls', 0):,} calls, {stats.get('attempts', 0):,} requests, "
            f"{retries}, {stats.get('failed', 0):,} failed")
    failed = ", ".join(f"{k} {v:,}" for k, v in stats.get("failures_by_reason", {}).items())
    if stats.get("failed") and failed:
        line += f" (failed attempts: {failed})"
    if stats.get("cut_replies"):
        line += f", {stats['cut_replies']:,} replies cut at the reply cap"
    cooled = {url: r.get("cooldowns", 0) for url, r in stats.get("replicas", {}).items()}
    if len(cooled) > 1:
        line += f"; {len(cooled)} replicas, {sum(cooled.values()):,} cool-downs"
    if stats.get("lowered"):
        line += f"\n{role}: {stats['lowered']}"
    return line
