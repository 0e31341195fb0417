"""Fault plans for `MockOpenAIServer`: which calls fail, and how.

A plan is pure data, and `FaultPlan.fault_for(i)` is a pure function of the plan and the call
number, so a failing run can be replayed exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, cast, get_args

FaultKind = Literal["http_500", "http_503", "http_429", "hang", "drop", "malformed", "http_400",
                    "http_401", "http_403", "http_404", "reset", "html", "null_content",
                    "empty_choices", "oversized", "gzip_bomb", "non_utf8", "text_plain", "drip"]
"""Transient faults clients retry: http_500 / http_503 / http_429 (that status in OpenAI's error
shape, 429 with Retry-After); hang: hold the request open unanswered; drop: close without a
response (FIN); reset: abort the connection (RST) without a response; malformed: 200 with a
truncated JSON body.

Client errors clients must not retry: http_400; http_401 (echoes the presented key, as some
servers do, so tests can check that clients redact it); http_403 (forbidden); http_404 (the
model does not exist). `FaultPlan.message` replaces their message.

Hostile 200 answers: html (a web page, Content-Type text/html); null_content (a completion
whose message content is null); empty_choices (`"choices": []`); oversized (a completion whose
text is `oversized_bytes` long, ignoring max_tokens); gzip_bomb (the same, gzip-compressed to a
small body with Content-Encoding gzip, which was not asked for); non_utf8 (a completion whose body holds
bytes that are not UTF-8); text_plain (a good completion labelled Content-Type text/plain);
drip (a good completion sent one byte every `drip_s` seconds)."""
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)


def _check_kind(kind: object, where: str) -> FaultKind:
    if kind not in FAULT_KINDS:
        raise ValueError(f"{where}: unknown fault kind {kind!r}; allowed: {', '.join(FAULT_KINDS)}")
    return cast(FaultKind, kind)


@dataclass(frozen=True)
class FaultPlan:
    """Which calls fail and how: a fixed schedule first, then a seeded random rate.

    Call i gets `schedule[i]` if present; otherwise, with probability `rate`, one of `kinds`.
    The random draw is a hash of (seed, i), so a plan fails the same call numbers whatever the
    thread interleaving. Kinds: see `FaultKind` (transient faults, client errors and hostile
    200 answers).

    Example:
        FaultPlan(schedule={0: "http_500", 1: "http_429"})
        FaultPlan.burst("http_503", first=3)
        FaultPlan(rate=0.05, kinds=("http_500", "drop"), seed=7)
    """

    schedule: Mapping[int, FaultKind] = field(default_factory=dict)
    """Call number -> fault; wins over `rate`."""
    rate: float = 0.0
    """Probability that an unscheduled call fails, in [0, 1]."""
    kinds: tuple[FaultKind, ...] = ("http_500", "http_503", "http_429", "drop")
    """Kinds the random rate draws from (default: the transient ones clients retry)."""
    seed: int = 0
    """Seed of the random draw."""
    retry_after_s: float = 1.0
    """Value of the Retry-After header on http_429 answers, in seconds."""
    hang_s: float = 30.0
    """How long `hang` holds a request before closing it unanswered (shorter if the server stops)."""
    message: str | None = None
    """The error message of the HTTP-status faults, in place of their own; `{key}` becomes the
    bearer token the call presented and `{model}` the model it asked for (plain replacement,
    so any other text, ANSI escapes and markup included, is sent as it is)."""
    oversized_bytes: int = 10 * 1024 * 1024
    """Length of the reply text of an `oversized` answer."""
    drip_s: float = 0.05
    """Pause between the bytes of a `drip` answer."""

    def __post_init__(self) -> None:
        sched = {int(i): _check_kind(k, f"FaultPlan.schedule[{i!r}]") for i, k in self.schedule.items()}
        if any(i < 0 for i in sched):
            raise ValueError(f"FaultPlan.schedule: call numbers start at 0, got {sorted(sched)}")
        object.__setattr__(self, "schedule", MappingProxyType(sched))
        object.__setattr__(self, "kinds", tuple(_check_kind(k, "FaultPlan.kinds") for k in self.kinds))
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"FaultPlan.rate: expected a probability in [0, 1], got {self.rate!r}")
        if self.rate > 0 and not self.kinds:
            raise ValueError("FaultPlan.kinds: a positive rate needs at least one kind")
        if self.retry_after_s < 0 or self.hang_s < 0 or self.drip_s < 0 or self.oversized_bytes < 0:
            raise ValueError("FaultPlan.retry_after_s, hang_s, drip_s and oversized_bytes must be >= 0")

    @classmethod
    def burst(cls, kind: FaultKind, first: int = 3, **kwargs: Any) -> FaultPlan:
        """Calls 0 .. first-1 fail with `kind`; e.g. `FaultPlan.burst("http_500", first=3)`."""
        return cls(schedule={i: kind for i in range(first)}, **kwargs)

    @classmethod
    def always(cls, kind: FaultKind, **kwargs: Any) -> FaultPlan:
        """Every call fails with `kind`."""
        return cls(rate=1.0, kinds=(kind,), **kwargs)

    def fault_for(self, index: int) -> FaultKind | None:
        """The fault of call number `index`, or None; a pure function of the plan and index."""
        if index in self.schedule:
            return self.schedule[index]
        if self.rate <= 0.0:
            return None
        digest = hashlib.blake2b(f"{self.seed}:{index}".encode(), digest_size=16).digest()
        if int.from_bytes(digest[:8], "big") / 2.0**64 >= self.rate:
            return None
        return self.kinds[int.from_bytes(digest[8:], "big") % len(self.kinds)]

