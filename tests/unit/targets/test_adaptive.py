"""The adaptive limit of calls in flight (`targets/adaptive.py`), driven call by call with a fake
clock: latencies are given, never measured."""

from __future__ import annotations

import pytest

from pytest_mtmcs.errors import SpecError
from pytest_mtmcs.targets import TargetOptions, make_target
from pytest_mtmcs.targets.adaptive import AdaptiveLimit, LimitEvent
from pytest_mtmcs.targets.openai_compat import OpenAICompatTarget
from pytest_mtmcs.targets.openai_spec import split_options
from pytest_mtmcs.targets.replicas import ReplicaPool
from pytest_mtmcs.targets.resilience import stats_line


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def burst(lim: AdaptiveLimit, n: int) -> None:
    for _ in range(n):
        assert lim.admits()
        lim.take()


def serial_burst(lim: AdaptiveLimit, n: int, s: float = 1.0) -> None:
    """n calls sent together to a server that answers one at a time (s seconds each): the
    k-th answer takes k*s."""
    burst(lim, n)
    for k in range(1, n + 1):
        lim.release(k * s, size=48, tokens=10)


def steady(lim: AdaptiveLimit, calls: int, latency: float) -> None:
    """`calls` calls, each sent as the previous ends, at `latency` seconds."""
    for _ in range(calls):
        lim.take()
        lim.release(latency, size=48, tokens=10)


def test_a_serial_server_halves_the_limit_and_says_why() -> None:
    clock = Clock()
    lim = AdaptiveLimit(8, clock=clock)
    assert lim.limit is None and lim.cap == 8 and lim.lowered() is None
    clock.now = 112.0
    serial_burst(lim, 8)  # median 4.5 s against the fastest call's 1 s
    assert lim.limit == 4
    assert lim.events == [LimitEvent(12.0, 8, 4, "latency grew 4.5x over its baseline")]
    burst(lim, 1)
    assert not lim.admits()  # first a probe: one call at a time, for the server's own speed
    lim.release(1.0, size=48, tokens=10)
    steady(lim, 7, latency=1.0)
    burst(lim, 4)
    assert not lim.admits()  # then the new limit: the fifth call waits
    assert lim.lowered() == ("calls in flight lowered 8 -> 4 at 12 s "
                             "(latency grew 4.5x over its baseline)")


def test_calls_in_flight_at_a_change_are_not_judged() -> None:
    lim = AdaptiveLimit(8, clock=Clock())
    burst(lim, 8)
    for k in range(1, 9):
        lim.release(k * 1.0, size=48, tokens=10)
        if k < 8:
            lim.take()  # the engine refills at once: 7 in flight at the decrease
    assert lim.limit == 4 and lim.in_flight == 7
    for _ in range(7):
        lim.release(20.0, size=48, tokens=10)  # sent under the old limit: slow, not judged
    assert lim.limit == 4 and len(lim.events) == 1


def test_growth_under_the_minimum_latency_is_noise() -> None:
    lim = AdaptiveLimit(8, clock=Clock())
    serial_burst(lim, 8, s=0.01)  # 4.5x, but a median of 45 ms
    assert lim.limit is None and lim.events == []


def test_a_timeout_halves_at_once_and_a_burst_of_them_halves_once() -> None:
    lim = AdaptiveLimit(16, clock=Clock())
    burst(lim, 16)
    lim.release(None, timed_out=True)
    assert lim.limit == 8 and lim.events[-1].reason == "timeouts"
    for _ in range(15):  # the rest of the burst, sent before the decrease, time out too
        lim.release(None, timed_out=True)
    assert lim.limit == 8 and len(lim.events) == 1
    burst(lim, 8)
    lim.release(None, timed_out=True)  # sent after it: halves again
    assert lim.limit == 4
    assert lim.lowered() == "calls in flight lowered 16 -> 4 at 0 s (timeouts)"


def test_it_never_drops_below_one_nor_rises_above_the_cap() -> None:
    lim = AdaptiveLimit(2, clock=Clock())
    for _ in range(5):
        burst(lim, 1)
        lim.release(None, timed_out=True)
        lim.take()  # a call sent after the decrease
        lim.release(None, timed_out=True)
    assert lim.limit == 1 and min(e.after for e in lim.events) == 1
    steady(lim, 8 * 10, latency=1.0)  # no growth, window after window
    assert lim.limit == 2  # back to the cap, not above
    assert [e.after for e in lim.events if e.reason == "no latency growth"] == [2]
    assert lim.lowered() == "calls in flight lowered 2 -> 1 at 0 s (timeouts), 2 at the end"


def test_it_rises_by_one_per_window_without_growth() -> None:
    lim = AdaptiveLimit(16, clock=Clock())
    serial_burst(lim, 16)  # 16 -> 8 on the first window
    assert lim.limit == 8
    steady(lim, 8, latency=1.0)  # the probe, one at a time: no change
    assert lim.limit == 8
    steady(lim, 8, latency=1.0)  # as fast as one at a time: no growth
    assert lim.limit == 9
    steady(lim, 8, latency=1.2)
    assert lim.limit == 10
    assert [(e.before, e.after) for e in lim.events] == [(16, 8), (8, 9), (9, 10)]


def test_short_answers_and_long_replies_in_one_window_are_no_growth() -> None:
    """Compared per token generated (with the prompt's share): a one-token intent answer is not
    slower than a 48-token reply."""
    lim = AdaptiveLimit(8, clock=Clock())
    for _ in range(4):
        burst(lim, 2)
        lim.release(0.5, size=8, tokens=1)  # 0.5 s a token
        lim.release(2.4, size=48, tokens=48)  # 0.05 s a token
    assert lim.events == []


def test_one_call_at_a_time_rescales_the_baseline() -> None:
    """A fluke fast call must not keep the limit down for good: at 1 in flight the median
    becomes the baseline, and the limit rises again."""
    lim = AdaptiveLimit(4, clock=Clock())
    steady(lim, 1, latency=0.1)  # a fluke: ten times faster than the server ever is again
    steady(lim, 7, latency=1.0)
    assert lim.limit == 2  # 10x "growth" while 4 may be in flight
    steady(lim, 8, latency=1.0)  # the probe: 1 s is the server's own speed
    assert lim.limit == 2
    steady(lim, 8, latency=1.0)
    assert lim.limit == 3
    assert [e.reason for e in lim.events] == ["latency grew 10.0x over its baseline",
                                              "no latency growth"]


def test_without_a_max_the_cap_is_the_most_calls_seen_in_flight() -> None:
    lim = AdaptiveLimit(clock=Clock())
    assert lim.cap == 1 and lim.admits()
    serial_burst(lim, 8)
    assert lim.cap == 8 and lim.limit == 4
    assert (lim.lowered() or "").startswith("calls in flight lowered 8 -> 4")
    steady(lim, 8 * 6, latency=1.0)  # the probe, then +1 a window
    assert lim.limit is None  # open again: bounded by the engine alone


@pytest.mark.parametrize("bad", [{"max_limit": 0}, {"window": 0}, {"growth": 1.2, "calm": 1.5}])
def test_bad_settings_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AdaptiveLimit(**bad)  # type: ignore[arg-type]


def test_the_pool_passes_over_a_replica_at_its_adaptive_limit() -> None:
    clock = Clock()
    pool = ReplicaPool(["http://a/v1"], clock=clock, adaptive=True)
    taken = [pool.take() for _ in range(8)]
    assert all(r is not None for r in taken)
    r = taken[0]
    assert r is not None and r.adaptive is not None
    for k in range(1, 9):
        pool.release(r, ok=True, latency_s=float(k), size=48, tokens=10)
    assert r.adaptive.limit == 4
    assert [pool.take() is not None for _ in range(2)] == [True, False]  # the probe: one
    assert pool.lowered() == ("calls in flight lowered 8 -> 4 at 0 s "
                              "(latency grew 4.5x over its baseline)")
    off = ReplicaPool(["http://a/v1"], clock=clock)
    assert off.replicas[0].adaptive is None and off.lowered() is None


@pytest.mark.parametrize(("rest", "images", "adaptive"), [
    ("+http://h/v1:m", "yes", True), ("+http://h/v1:m?adaptive=no", "yes", False),
    ("+http://h/v1:m?images=no&adaptive=NO", "no", False), ("+http://h/v1:m?adaptive=yes", "yes", True),
])
def test_adaptive_no_in_the_spec_turns_it_off(rest: str, images: str, adaptive: bool) -> None:
    assert split_options(rest) == ("+http://h/v1:m", images, adaptive)
    target = make_target(f"openai{rest}", TargetOptions())
    assert isinstance(target, OpenAICompatTarget)
    assert all((r.adaptive is not None) is adaptive for r in target._pool.replicas)


def test_a_bad_adaptive_value_says_what_is_allowed() -> None:
    with pytest.raises(SpecError, match=r"adaptive='maybe' is not one of yes, no"):
        split_options("+http://h/v1:m?adaptive=maybe")


def test_the_summary_line_says_it_only_when_lowered() -> None:
    stats = {"calls": 3, "attempts": 3, "retries": 0, "failed": 0}
    assert stats_line("target", stats) == "target: 3 calls, 3 requests, 0 retries, 0 failed"
    lowered = {**stats, "lowered": "calls in flight lowered 8 -> 2 at 2 s (timeouts)"}
    assert stats_line("target", lowered).splitlines() == [
        "target: 3 calls, 3 requests, 0 retries, 0 failed",
        "target: calls in flight lowered 8 -> 2 at 2 s (timeouts)"]
