"""Replicated targets (spec, cache identity, spreading, fail-over, limits) against real mock
servers on 127.0.0.1, and the retry policy's pure parts (Retry-After, backoff, outage circuit)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest

from pytest_mtmcs.chat import GenParams, user
from pytest_mtmcs.errors import OutageError, SpecError, TargetError
from pytest_mtmcs.targets import TargetOptions, make_target
from pytest_mtmcs.targets.openai_compat import OpenAICompatTarget, parse_rest
from pytest_mtmcs.targets.replicas import ReplicaPool
from pytest_mtmcs.targets.resilience import (
    OutageCircuit,
    backoff_delay,
    retry_after_s,
    retry_reason,
)
from pytest_mtmcs.testing import FaultPlan, MockOpenAIServer, refusing_url

PARAMS = GenParams(temperature=0.0, max_tokens=32)
FAST: dict[str, Any] = {"backoff_base_s": 0.001, "backoff_cap_s": 0.005, "timeout_s": 5.0}


@contextmanager
def servers(n: int, **kwargs: Any) -> Iterator[list[MockOpenAIServer]]:
    with ExitStack() as stack:
        yield [stack.enter_context(MockOpenAIServer(**kwargs)) for _ in range(n)]


def replicated(srvs: list[MockOpenAIServer], **options: Any) -> OpenAICompatTarget:
    spec = "openai+" + "|".join(s.base_url for s in srvs) + ":acme/vlm"
    t = make_target(spec, TargetOptions(**{**FAST, **options}))
    assert isinstance(t, OpenAICompatTarget)
    return t


def ask(t: OpenAICompatTarget, n: int, *, concurrent: bool = False) -> list[str]:
    async def go() -> list[str]:
        calls = [t.respond((user(f"q{i}"),), PARAMS) for i in range(n)]
        try:
            if concurrent:
                return [r.text for r in await asyncio.gather(*calls)]
            return [(await c).text for c in calls]
        finally:
            await t.aclose()
    return asyncio.run(go())


# ------------------------------------------------------------------------------ spec and identity
@pytest.mark.parametrize(("rest", "url", "model"), [
    ("+http://10.0.0.1:8000/v1|http://10.0.0.2:8000/v1/:Qwen/Qwen3-VL-8B-Instruct",
     "http://10.0.0.1:8000/v1|http://10.0.0.2:8000/v1", "Qwen/Qwen3-VL-8B-Instruct"),
    ("+http://a:1/v1|https://b/v1|http://c:3:llama3.2-vision:11b",
     "http://a:1/v1|https://b/v1|http://c:3", "llama3.2-vision:11b"),
    ("+http://127.0.0.1:8000/v1:m", "http://127.0.0.1:8000/v1", "m"),  # one URL: as before
])
def test_replica_specs_parse(rest: str, url: str, model: str) -> None:
    assert parse_rest(rest) == (url, model)


@pytest.mark.parametrize(("spec", "match"), [
    ("openai+http://a/v1|:m", "replicas joined by '|'"),
    ("openai+http://a/v1||http://b/v1:m", "replicas joined by '|'"),
    ("openai+http://a/v1|ftp://b/v1:m", "replicas joined by '|'"),
    ("openai+http://a/v1|http://a/v1:m", "listed twice"),
    ("openai+file:no-such-replicas.txt:m", "cannot read the replica file no-such-replicas.txt"),
    ("openai+file:replicas.txt", "expected openai\\+file:PATH:MODEL"),
])
def test_bad_replica_specs(spec: str, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        make_target(spec)


def test_replica_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("replicas.txt").write_text("# the fleet\nhttp://10.0.0.1:8000/v1\n\n"
                                    "http://10.0.0.2:8000/v1/  # rack 2\n")
    t = make_target("openai+file:replicas.txt:Qwen/Qwen3:8b")
    assert isinstance(t, OpenAICompatTarget) and t.model == "Qwen/Qwen3:8b"
    assert t.replicas == ("http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1")
    assert t.describe() == "openai+file:replicas.txt:Qwen/Qwen3:8b (2 replicas)"
    Path("replicas.txt").write_text("http://10.0.0.1:8000/v1\n10.0.0.2:8000\n")
    with pytest.raises(SpecError, match=r"replica file replicas\.txt, line 2: '10\.0\.0\.2:8000' is not"):
        make_target("openai+file:replicas.txt:m")


def test_identity_ignores_which_replicas_and_never_holds_the_key(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sentinel-identity-77")
    a, b, c = "http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1", "http://10.0.0.3:8000/v1"
    ids = {make_target(f"openai+{urls}:acme/vlm").identity()
           for urls in (f"{a}|{b}", f"{b}|{a}", f"{a}|{b}|{c}", f"{c}|{a}")}
    assert len(ids) == 1
    assert "sk-sentinel" not in ids.pop()
    assert make_target(f"openai+{a}|{b}:other").identity() != make_target(f"openai+{a}|{b}:acme/vlm").identity()
    # a single URL keeps its URL in the identity, as before (servers may name every model alike)
    assert make_target(f"openai+{a}:acme/vlm").identity() == f"openai|{a}|acme/vlm"


# ------------------------------------------------------------------------------ spreading and fail-over
def test_sequential_calls_take_turns() -> None:
    with servers(3) as srvs:
        t = replicated(srvs)
        ask(t, 30)
        assert [len(s.calls) for s in srvs] == [10, 10, 10]
    assert t.stats["retries"] == 0
    assert [r["attempts"] for r in t.stats["replicas"].values()] == [10, 10, 10]


def test_concurrent_calls_go_to_the_least_busy() -> None:
    with servers(3, latency_s=0.2) as srvs:
        t = replicated(srvs)
        ask(t, 60, concurrent=True)
        counts = [len(s.calls) for s in srvs]
        peaks = [s.max_in_flight for s in srvs]
    assert counts == [20, 20, 20], counts  # least in flight first: an even spread
    assert all(p >= 5 for p in peaks), peaks  # and really at the same time


@pytest.mark.parametrize("how", ["down", "stopped", "always_503"])
def test_a_failing_replica_is_taken_out_and_the_others_answer(how: str) -> None:
    # "stopped": a port held closed, not a stopped server's port, which another test's server
    # (another xdist worker) may bind meanwhile and answer from.
    with servers(3) as srvs, refusing_url() as refused:
        bad, bad_url = srvs[1], srvs[1].base_url
        if how == "down":
            bad.set_down(True)  # connections reset
        elif how == "always_503":
            bad.set_faults(FaultPlan.always("http_503"))
        elif how == "stopped":
            bad_url = refused  # connections refused
        urls = [srvs[0].base_url, bad_url, srvs[2].base_url]
        t = OpenAICompatTarget("acme/vlm", "|".join(urls), TargetOptions(
            **FAST, cooldown_base_s=30))  # out for the whole test once it failed
        texts = ask(t, 30)
        good = [len(s.calls) for s in (srvs[0], srvs[2])]
    assert texts == [f"Mock reply to: q{i}" for i in range(30)]
    stats = t.stats
    assert stats["ok"] == 30 and sum(good) == 30
    assert stats["retries"] == 1  # one failed attempt, retried at once on another replica
    reason = "http_503" if how == "always_503" else "connection"
    assert stats["retries_by_reason"] == {reason: 1}
    assert stats["replicas"][bad_url]["cooldowns"] == 1 and stats["replicas"][bad_url]["failures"] == 1


def test_when_every_replica_is_out_the_call_waits_for_the_first_back() -> None:
    with servers(2, faults=FaultPlan.burst("http_503", first=1)) as srvs:
        t = replicated(srvs, cooldown_base_s=0.3)
        started = time.perf_counter()
        assert ask(t, 1) == ["Mock reply to: q0"]
        elapsed = time.perf_counter() - started
    assert t.stats["retries_by_reason"] == {"http_503": 2}  # one on each, then the first back
    assert 0.3 <= elapsed < 60, elapsed  # waited out a cool-down (0.3 s), not a retry storm


def test_a_success_ends_the_cool_downs() -> None:
    with servers(2) as srvs:
        srvs[0].set_faults(FaultPlan.always("http_500"))
        t = replicated(srvs, cooldown_base_s=0.2, cooldown_cap_s=0.3)
        a, b = t._pool.replicas
        ask(t, 1)  # a fails, b answers
        assert a.out_until > 0 and a.streak == 1 and b.streak == 0
        srvs[1].set_faults(FaultPlan.always("http_500"))  # now both fail
        with pytest.raises(TargetError, match="after 4 retries"):
            ask(t, 1)
        assert a.streak >= 2 and b.streak >= 2 and a.cooldowns >= 2
        srvs[0].set_faults(None)
        srvs[1].set_faults(None)
        deadline = time.monotonic() + 120  # a failure bound only: each ask takes ~0.3 s
        while (a.streak or b.streak) and time.monotonic() < deadline:
            ask(t, 1)  # each answers once its cool-down is over (at most 0.3 s)
    assert a.streak == b.streak == 0 and a.out_until == b.out_until == 0.0  # back in rotation


def test_per_replica_limit_holds() -> None:
    with servers(2, latency_s=0.1) as srvs:
        t = replicated(srvs, replica_concurrency=2)
        started = time.perf_counter()
        ask(t, 16, concurrent=True)
        elapsed = time.perf_counter() - started
        peaks = [s.max_in_flight for s in srvs]
        counts = [len(s.calls) for s in srvs]
    assert peaks == [2, 2], peaks
    assert sum(counts) == 16 and min(counts) >= 4, counts
    assert elapsed >= 16 / 4 * 0.1 * 0.9, elapsed  # 4 at a time, 0.1 s each


def test_calls_waiting_for_a_slot_go_first_come_first_served() -> None:
    with MockOpenAIServer(latency_s=0.02) as srv:
        t = make_target(f"openai+{srv.base_url}:m", TargetOptions(**FAST, replica_concurrency=1))
        assert isinstance(t, OpenAICompatTarget)
        assert ask(t, 10, concurrent=True) == [f"Mock reply to: q{i}" for i in range(10)]
        order = [c.body["messages"][0]["content"] for c in srv.calls]
        assert srv.max_in_flight == 1
    assert order == [f"q{i}" for i in range(10)]


def test_outage_counts_only_when_every_replica_fails() -> None:
    """One replica down for longer than the outage limit opens nothing while the other
    answers; both down, the circuit opens once the limit has passed. The clock is injected and
    moved by the test between calls (cool-downs of 0 s keep every replica in the rotation), so
    no streak can be stretched by a slow machine."""
    now = [0.0]
    with servers(2) as srvs:
        t = OpenAICompatTarget("acme/vlm", "|".join(s.base_url for s in srvs), TargetOptions(
            **FAST, max_outage_s=0.2, cooldown_base_s=0, cooldown_cap_s=0), clock=lambda: now[0])
        srvs[0].set_down(True)

        async def go() -> int:
            for _ in range(10):  # one replica down for 1 s, five times the limit
                await t.respond((user("q"),), PARAMS)
                now[0] += 0.125
            srvs[1].set_down(True)
            failed = 0
            while failed < 100:
                try:
                    await t.respond((user("q"),), PARAMS)
                except OutageError as exc:
                    assert t.url in str(exc)
                    return failed
                except TargetError:
                    failed += 1
                now[0] += 0.125
            raise AssertionError("no OutageError")

        async def run() -> int:
            try:
                return await go()
            finally:
                await t.aclose()
        failed = asyncio.run(run())
    assert t.stats["ok"] == 10 and t.stats["failures_by_reason"]["connection"] >= 10
    assert failed == 2  # failing at 0, 0.125 and 0.25 s: the third call finds the circuit open


# ------------------------------------------------------------------------------ the policy's pure parts
def test_pool_cool_downs_double_up_to_the_cap_and_respect_retry_after() -> None:
    now = [0.0]
    pool = ReplicaPool(["http://a/v1", "http://b/v1"], cooldown_base_s=1, cooldown_cap_s=5,
                       clock=lambda: now[0])
    a, b = pool.replicas
    cools = []
    for _ in range(5):
        assert {pool.take(), pool.take()} == {a, b}  # both free: one each
        pool.release(b, ok=True)
        pool.release(a, ok=False)
        cools.append(a.out_until - now[0])
        assert pool.pick() is b and pool.can_fail_over(b) is False and pool.can_fail_over(a)
        now[0] = a.out_until  # a is back
    assert cools == [1, 2, 4, 5, 5]
    assert pool.take() is a and pool.take() is b  # in turn
    pool.release(a, ok=False, retry_after_s=20)  # the server asked for more than the cap
    assert a.out_until - now[0] == 20 and a.cooldowns == 6
    pool.release(b, ok=None)  # neither success nor failure: nothing changes
    assert b.streak == 0 and b.out_until == 0
    a.in_flight += 1  # a call sent before the cool-down comes back fine
    pool.release(a, ok=True)
    assert a.out_until == 0 and a.streak == 0 and pool.pick() is not None


def test_a_single_replica_never_cools_down() -> None:
    pool = ReplicaPool(["http://a/v1"], cooldown_base_s=100)
    r = pool.take()
    assert r is not None
    pool.release(r, ok=False)
    assert pool.take() is r and r.out_until == 0 and r.streak == 1


def test_retry_reasons() -> None:
    assert [retry_reason(s) for s in (429, 500, 502, 503, 504)] == [
        "http_429", "http_500", "http_502", "http_503", "http_504"]
    assert [retry_reason(s) for s in (400, 401, 403, 404, 408, 409, 422)] == [None] * 7
    assert retry_reason(timeout=True) == "timeout" and retry_reason(connection=True) == "connection"
    assert retry_reason(malformed=True) == "malformed" and retry_reason() is None


def test_retry_after_forms() -> None:
    now = time.time()
    assert retry_after_s({"retry-after": "7"}) == 7.0
    assert retry_after_s({"retry-after": "0.25"}) == 0.25
    assert retry_after_s({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_s({"retry-after": formatdate(now + 30, usegmt=True)}, now=now) == pytest.approx(30, abs=1)
    assert retry_after_s({"retry-after": formatdate(now - 30, usegmt=True)}, now=now) == 0.0
    for bad in ("soon", "-3", "nan", "inf", ""):
        assert retry_after_s({"retry-after": bad}) is None
    assert retry_after_s({}) is None and retry_after_s(None) is None


def test_backoff_is_full_jitter_under_the_cap() -> None:
    rng = random.Random(3)
    for retry in range(12):
        bound = min(30.0, 0.5 * 2 ** retry)
        draws = [backoff_delay(retry, 0.5, 30.0, rng) for _ in range(200)]
        assert all(0 <= d <= bound for d in draws)
        assert max(draws) > 0.8 * bound and min(draws) < 0.2 * bound  # the whole range is used
    assert backoff_delay(10_000, 0.5, 30.0, rng) <= 30.0


def test_outage_circuit_with_a_clock() -> None:
    now = [100.0]
    circuit = OutageCircuit(60, clock=lambda: now[0])
    circuit.check("http://x/v1")  # healthy
    circuit.failure()
    now[0] = 130.0
    circuit.failure()  # the streak still starts at 100
    circuit.check("http://x/v1")
    assert circuit.time_left() == 30.0
    now[0] = 160.5
    with pytest.raises(OutageError, match=r"http://x/v1 has been down for 60.5 s \(longer than --mtmcs-max-outage 60 s\)"):
        circuit.check("http://x/v1")
    circuit.success()
    circuit.check("http://x/v1")
    assert circuit.down_s() == 0.0 and circuit.time_left() == float("inf")


def test_bad_retry_settings_are_spec_errors() -> None:
    with pytest.raises(SpecError, match=r"TargetOptions\.backoff_cap_s must be"):
        make_target("openai+http://127.0.0.1:9/v1:m", TargetOptions(backoff_cap_s=-1))
    with pytest.raises(SpecError, match="replica_concurrency"):
        make_target("openai+http://127.0.0.1:9/v1:m", TargetOptions(replica_concurrency=-2))
