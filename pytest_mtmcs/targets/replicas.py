"""Spreading one target's calls over replicas of the same model, with cool-downs.

A replicated target (`openai+URL1|URL2|URL3:MODEL`) sends each attempt to the replica with
the fewest calls in flight, taking ties in turn (round robin), never more than
`per_replica_limit` at once to one replica. A replica whose attempt failed retryably leaves the
rotation for a cool-down that doubles with each consecutive failure (base, 2*base, ... up to a
cap; at least the server's Retry-After); a success on it, even of a call that was already in
flight, brings it straight back. When no replica can take a call, the call waits for the first
one that can (a slot freed, a cool-down over).

A pool of one replica never cools down: there is nowhere else to send the retry, and one
call's fault would otherwise hold up every other call; its retry waits out its own backoff.

A retry waits for a healthy replica (one whose last attempt succeeded) while there is one,
even a busy one, rather than go to a replica that is failing and whose cool-down just ended:
a dead server behind a slow survivor (a CPU server answers in seconds, the cool-downs start at
one) would otherwise eat every retry of a call and fail it. Fresh calls still go to such a
replica once its cool-down is over, which is how it is found back.

Each replica may also carry an `AdaptiveLimit` (`adaptive=True`): the calls it may have in
flight, lowered when its latency grows with them or its calls time out (a single-stream
server), raised again when it keeps up; a replica at its limit is passed over like one at
`per_replica_limit`. It is per replica since replicas can be unlike servers.

The pool is plain state plus futures created in the running loop, so it can be built outside
any event loop and used from the one the engine runs.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_mtmcs.targets.adaptive import AdaptiveLimit


@dataclass(eq=False)  # compared by identity: each is one server's mutable state
class Replica:
    """One server of a replicated target, and what the pool knows about it."""

    url: str
    """Its base URL (`http://host:port/v1`)."""
    client: Any = None
    """The HTTP client talking to it, created by the target on first use."""
    in_flight: int = 0
    """Attempts sent to it and not yet finished."""
    streak: int = 0
    """Consecutive retryable failures since its last success."""
    out_until: float = 0.0
    """clock() until which it is out of the rotation."""
    attempts: int = 0
    """Attempts sent to it so far."""
    failures: int = 0
    """Its attempts that failed retryably."""
    cooldowns: int = 0
    """Times it was taken out of the rotation."""
    max_in_flight: int = 0
    """The most attempts it had in flight at once."""
    adaptive: AdaptiveLimit | None = None
    """Its adaptive limit of calls in flight (None: off)."""

    def as_dict(self) -> dict[str, Any]:
        """Its counters, JSON-ready."""
        return {"attempts": self.attempts, "failures": self.failures, "cooldowns": self.cooldowns,
                "max_in_flight": self.max_in_flight}


class ReplicaPool:
    """Chooses the replica of each attempt; see the module docstring for the rules.

    Use: `r = pool.take()` (None when none is free), else `r = await pool.wait_take(max_wait_s)`
    in a loop until it returns one; then exactly one `pool.release(r, ...)` once the attempt is
    over.
    """

    def __init__(self, urls: Sequence[str], *, per_replica_limit: int = 0,
                 cooldown_base_s: float = 1.0, cooldown_cap_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, adaptive: bool = False) -> None:
        if not urls:
            raise ValueError("ReplicaPool needs at least one URL")
        self.limit = max(0, per_replica_limit)
        self.replicas = [Replica(u, adaptive=AdaptiveLimit(self.limit or None, clock=clock)
                                 if adaptive else None) for u in urls]
        self.cooldown_base_s = cooldown_base_s
        self.cooldown_cap_s = cooldown_cap_s
        self._clock = clock
        self._next = 0  # round-robin start: the replica after the last one chosen
        self._waiters: list[asyncio.Future[None]] = []

    def _usable(self, r: Replica, now: float) -> bool:
        return (r.out_until <= now and (not self.limit or r.in_flight < self.limit)
                and (r.adaptive is None or r.adaptive.admits()))

    def _eligible(self, r: Replica, retry: bool) -> bool:
        """A retry goes only to healthy replicas while any replica is healthy."""
        return not retry or r.streak == 0 or all(x.streak > 0 for x in self.replicas)

    def can_fail_over(self, r: Replica) -> bool:
        """True when a replica other than `r` could take a retry right now."""
        now = self._clock()
        return any(x is not r and self._usable(x, now) and self._eligible(x, True)
                   for x in self.replicas)

    def pick(self, retry: bool = False) -> Replica | None:
        """The replica the next attempt goes to (least in flight, ties in turn), or None when
        every one is cooling down or at its limit (for a `retry`, every healthy one, while
        any is healthy). Advances the round robin; reserves nothing."""
        reps, now = self.replicas, self._clock()
        if len(reps) == 1:  # the common case: no choice to make
            r = reps[0]
            return r if self._usable(r, now) else None
        best: Replica | None = None
        best_i = 0
        n = len(reps)
        for k in range(n):
            i = (self._next + k) % n
            r = reps[i]
            if not self._usable(r, now) or not self._eligible(r, retry):
                continue
            if best is None or r.in_flight < best.in_flight:
                best, best_i = r, i
        if best is not None:
            self._next = (best_i + 1) % n
        return best

    def take(self, retry: bool = False) -> Replica | None:
        """Reserve a slot on the replica `pick(retry)` chooses; None when none is usable now,
        or when calls are already waiting for one (first come, first served)."""
        return None if self._waiters else self._take(retry)

    def _take(self, retry: bool = False) -> Replica | None:
        r = self.pick(retry)
        if r is not None:
            r.in_flight += 1
            r.attempts += 1
            r.max_in_flight = max(r.max_in_flight, r.in_flight)
            if r.adaptive is not None:
                r.adaptive.take()
        return r

    async def wait_take(self, max_wait_s: float, retry: bool = False) -> Replica | None:
        """`take()`, else queue and wait (at most `max_wait_s`) for the next change that may
        free a replica (a finished attempt, the end of a cool-down), then try once more; None
        when that found none either. Callers loop, re-checking their own deadlines in between.
        Woken waiters try in the order they queued, before any newcomer."""
        r = None if self._waiters else self._take(retry)  # behind earlier waiters, if any
        if r is not None:
            return r
        loop = asyncio.get_running_loop()
        now = self._clock()
        wake = min([now + max_wait_s, *(x.out_until for x in self.replicas if x.out_until > now)])
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.append(fut)
        # inf: only a finished attempt can free a slot (every replica at its limit, none cooling)
        timer = loop.call_later(wake - now, _resolve, fut) if wake < math.inf else None
        try:
            await fut
        finally:
            if timer is not None:
                timer.cancel()
            if fut in self._waiters:
                self._waiters.remove(fut)
        r = self._take(retry)
        if r is not None and self._waiters:
            self._wake_all()  # pass it on: a newcomer may have queued behind a free slot
        return r

    def release(self, r: Replica, *, ok: bool | None, retry_after_s: float | None = None,
                latency_s: float | None = None, size: int | None = None,
                tokens: int | None = None, timed_out: bool = False) -> None:
        """End an attempt on `r`: `ok=True` a success (back in rotation at once), `ok=False` a
        retryable failure (cool-down unless it is the only replica), `ok=None` neither (a
        non-retryable answer, or the call was cancelled). The adaptive limit, if any, judges
        a success's `latency_s` (`size`: max_tokens asked, `tokens`: completion tokens) and a
        `timed_out` failure."""
        r.in_flight -= 1
        if r.adaptive is not None:
            r.adaptive.release(latency_s if ok else None, size=size, tokens=tokens,
                               timed_out=timed_out)
        if ok:
            r.streak = 0
            r.out_until = 0.0
        elif ok is False:
            r.failures += 1
            r.streak += 1
            if len(self.replicas) > 1:
                cool = min(self.cooldown_cap_s, self.cooldown_base_s * 2.0 ** min(r.streak - 1, 62))
                cool = max(cool, retry_after_s or 0.0)
                until = self._clock() + cool
                if until > r.out_until:
                    if r.out_until <= self._clock():
                        r.cooldowns += 1
                    r.out_until = until
        self._wake_all()

    def _wake_all(self) -> None:
        # Every waiter re-picks: few calls wait at once, and a woken one that finds nothing
        # free simply waits again, so nobody is left asleep while a slot is free. They stay
        # listed until they ran, so a newcomer's `take()` cannot jump the queue meanwhile.
        for fut in self._waiters:
            _resolve(fut)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """url -> that replica's counters."""
        return {r.url: r.as_dict() for r in self.replicas}

    def lowered(self) -> str | None:
        """What the adaptive limits lowered (`AdaptiveLimit.lowered`), each replica's named
        when there are several; None when none was lowered."""
        said = [(r.url, r.adaptive.lowered()) for r in self.replicas if r.adaptive is not None]
        said = [(url, text) for url, text in said if text]
        if len(self.replicas) == 1 or not said:
            return said[0][1] if said else None
        return "; ".join(f"{url}: {text}" for url, text in said)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
