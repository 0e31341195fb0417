"""Fault tolerance of the OpenAI-compatible target against real faulty servers on 127.0.0.1.

Fault plans are schedules by call number, so each test knows exactly which attempts fail and
checks the retry counters to the unit. Backoff settings are tiny to keep the tests fast; where
a wait is the point (Retry-After, timeouts, the outage limit), it is bounded from below by
what was asked and from above loosely, since CI machines are slow.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from _runs import load_report, run_mtmcs

from pytest_mtmcs.chat import GenParams, user
from pytest_mtmcs.errors import OutageError, ServerRefused, TargetError, error_kind
from pytest_mtmcs.targets import TargetOptions, make_target
from pytest_mtmcs.targets.openai_compat import OpenAICompatTarget
from pytest_mtmcs.testing import FaultKind, FaultPlan, MockOpenAIServer, refusing_url

PARAMS = GenParams(temperature=0.0, max_tokens=32)
FAST: dict[str, Any] = {"backoff_base_s": 0.001, "backoff_cap_s": 0.005, "timeout_s": 5.0}
KEY = "sk-sentinel-4f9d2c71e0b8a6"


def target(srv: MockOpenAIServer, **options: Any) -> OpenAICompatTarget:
    built = make_target(f"openai+{srv.base_url}:acme/vlm", TargetOptions(**{**FAST, **options}))
    assert isinstance(built, OpenAICompatTarget)
    return built


def ask(t: OpenAICompatTarget, n: int = 1) -> list[str]:
    """n sequential calls in one event loop; the reply texts."""
    async def go() -> list[str]:
        try:
            return [(await t.respond((user(f"question {i}"),), PARAMS)).text for i in range(n)]
        finally:
            await t.aclose()
    return asyncio.run(go())


@pytest.mark.parametrize(("kind", "reason"), [
    ("http_500", "http_500"), ("http_503", "http_503"), ("drop", "connection"),
    ("malformed", "malformed"),
])
def test_a_burst_of_faults_is_retried_and_counted(kind: FaultKind, reason: str) -> None:
    with MockOpenAIServer(faults=FaultPlan.burst(kind, first=3)) as srv:
        t = target(srv, retries=4)
        assert ask(t) == ["Mock reply to: question 0"]
        calls = srv.calls
    assert [c.fault for c in calls] == [kind] * 3 + [None]
    stats = t.stats
    assert stats["retries_by_reason"] == {reason: 3} and stats["retries"] == 3
    assert (stats["calls"], stats["ok"], stats["failed"], stats["attempts"]) == (1, 1, 0, 4)


def test_every_kind_in_one_call_and_the_sdk_does_not_retry_too() -> None:
    plan = FaultPlan(schedule={0: "http_500", 1: "http_429", 2: "drop", 3: "malformed", 4: "hang",
                               5: "http_503"}, retry_after_s=0.05, hang_s=30)
    with MockOpenAIServer(faults=plan) as srv:
        t = target(srv, retries=6, timeout_s=0.3)
        assert ask(t) == ["Mock reply to: question 0"]
        assert len(srv.calls) == 7  # one request per attempt: nothing retried behind our back
    assert t.stats["retries_by_reason"] == {"http_500": 1, "http_429": 1, "connection": 1,
                                            "malformed": 1, "timeout": 1, "http_503": 1}


def test_retry_after_is_honoured_and_capped() -> None:
    with MockOpenAIServer(faults=FaultPlan.burst("http_429", first=2, retry_after_s=0.25)) as srv:
        t = target(srv)
        started = time.perf_counter()
        ask(t)
        elapsed = time.perf_counter() - started
    assert t.stats["retries_by_reason"] == {"http_429": 2}
    assert elapsed >= 0.5, elapsed  # waited Retry-After twice, not the tiny backoff
    with MockOpenAIServer(faults=FaultPlan.burst("http_429", first=1, retry_after_s=3600)) as srv:
        t = target(srv, retry_after_cap_s=0.1)
        started = time.perf_counter()
        ask(t)
        elapsed = time.perf_counter() - started
    assert 0.1 <= elapsed < 600, elapsed  # an hour asked, the cap honoured


def test_a_hung_request_is_cut_at_the_timeout_and_retried() -> None:
    with MockOpenAIServer(faults=FaultPlan(schedule={0: "hang", 1: "hang"}, hang_s=30)) as srv:
        t = target(srv, timeout_s=0.25)
        started = time.perf_counter()
        assert ask(t) == ["Mock reply to: question 0"]
        elapsed = time.perf_counter() - started
        statuses = [(c.fault, c.completed) for c in srv.calls]
    assert statuses == [("hang", False), ("hang", False), (None, True)]
    assert t.stats["retries_by_reason"] == {"timeout": 2}
    assert 0.5 <= elapsed < 30, elapsed  # cut at the timeout twice, not held for the 30 s hang


@pytest.mark.parametrize(("kind", "message"), [
    ("http_503", "answered HTTP 503 for model 'acme/vlm' after 2 retries: Injected fault: server"),
    ("drop", "after 2 retries"),
    ("malformed", "answered with a body that is not valid JSON"),
])
def test_giving_up_names_url_cause_and_retries(kind: FaultKind, message: str) -> None:
    with MockOpenAIServer(faults=FaultPlan.always(kind)) as srv:
        t = target(srv, retries=2)
        with pytest.raises(TargetError, match="after 2 retries") as info:
            ask(t)
        assert len(srv.calls) == 3
        assert srv.base_url in str(info.value) and message in str(info.value)
    assert not isinstance(info.value, OutageError)
    assert (t.stats["failed"], t.stats["retries"], t.stats["attempts"]) == (1, 2, 3)


@pytest.mark.parametrize(("kind", "status", "said"), [
    ("http_401", 401, "refused the key in $MTMCS_SENTINEL_KEY: HTTP 401 for model 'acme/vlm'"),
    ("http_403", 403, "refused the key in $MTMCS_SENTINEL_KEY: HTTP 403 for model 'acme/vlm'"),
    ("http_404", 404, "answered HTTP 404 for model 'acme/vlm': Injected fault: The model "
                      "`acme/vlm` does not exist"),
    ("http_400", 400, "answered HTTP 400 for model 'acme/vlm' (a client error, not retried)"),
    (None, 404, "answered HTTP 404 for model 'acme/vlm': Invalid URL"),
])
def test_client_errors_fail_at_once_without_the_key(kind: FaultKind | None, status: int, said: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTMCS_SENTINEL_KEY", KEY)
    with MockOpenAIServer(faults=FaultPlan.always(kind) if kind else None) as srv:
        url = srv.base_url if kind else srv.base_url.replace("/v1", "/nope")  # 404: wrong path
        t = make_target(f"openai+{url}:acme/vlm", TargetOptions(api_key_env="MTMCS_SENTINEL_KEY",
                                                                 **FAST))
        assert isinstance(t, OpenAICompatTarget)
        with pytest.raises(TargetError) as info:
            ask(t, 2)  # the second call of a refused run sends no request
        calls = srv.calls
    err = info.value
    assert f"{url} {said}" in str(err) and err.status == status, str(err)
    refused = status in (401, 403, 404)
    assert isinstance(err, ServerRefused) is refused
    assert error_kind(err) == ("config" if refused else "target")  # exit 4, not 75
    if kind:  # (a wrong path is not a chat call: the mock logs none)
        assert len(calls) == 1 and calls[0].headers["authorization"] == f"Bearer {KEY}"
    if kind == "http_401":  # the server echoed the key it was sent; we did not pass it on
        assert "Incorrect API key provided: [redacted]" in str(err)
    assert KEY not in f"{err} {err!r} {err.args} {err.__cause__!r} {err.__context__!r}"
    assert KEY not in t.identity() and KEY not in json.dumps(t.stats)
    assert t.stats["retries"] == 0 and t.stats["attempts"] == 1


def fail_until_outage(t: OpenAICompatTarget, limit: int = 100_000) -> tuple[float, int]:
    """Call until OutageError; (seconds it took, TargetErrors before it)."""
    async def go() -> tuple[float, int]:
        started, errors = time.perf_counter(), 0
        try:
            while errors < limit:
                try:
                    await t.respond((user("are you there?"),), PARAMS)
                except OutageError:
                    return time.perf_counter() - started, errors
                except TargetError:
                    errors += 1
        finally:
            await t.aclose()  # its connections belong to this event loop
        raise AssertionError(f"no OutageError after {limit} failed calls")
    return asyncio.run(go())


def check_outage(url: str) -> None:
    """Calls to a dead `url` fail (after retries) until 0.3 s of failures, then fail fast."""
    t = make_target(f"openai+{url}:m", TargetOptions(**FAST, retries=1, max_outage_s=0.3))
    assert isinstance(t, OpenAICompatTarget)
    took, errors = fail_until_outage(t)
    assert took >= 0.3 and errors >= 1  # failing calls first, each after its retries
    sent = t.stats["attempts"]
    with pytest.raises(OutageError, match=r"has been down for [\d.]+ s \(longer than "
                                          r"--mtmcs-max-outage 0.3 s\): stopping the run") as info:
        ask(t)
    assert t.stats["attempts"] == sent  # fast: no request (nor backoff) once the circuit is open and t.stats["outage_errors"] == 2
    assert info.value.url == url and info.value.down_s > 0.3 and info.value.max_outage_s == 0.3


def test_outage_of_a_server_answering_503() -> None:
    with MockOpenAIServer(faults=FaultPlan.always("http_503")) as srv:
        check_outage(srv.base_url)


def test_outage_of_a_server_that_refuses_connections() -> None:
    with refusing_url() as url:  # held closed: no other test's server can take the port
        check_outage(url)


def test_a_success_ends_the_failure_streak() -> None:
    """Two streaks of failures, each shorter than the limit, together longer: no outage; a
    third streak that outlasts the limit opens the circuit. Time is an injected clock, moved
    by the test between calls, so a slow machine cannot stretch a streak."""
    now = [0.0]
    with MockOpenAIServer() as srv:
        t = OpenAICompatTarget("acme/vlm", srv.base_url, TargetOptions(
            **FAST, retries=0, max_outage_s=1.0), clock=lambda: now[0])

        async def streak(calls: int) -> None:
            srv.set_faults(FaultPlan.always("http_500"))
            for _ in range(calls):  # failing calls 0.25 s apart (exact in binary)
                with pytest.raises(TargetError) as info:
                    await t.respond((user("q"),), PARAMS)
                assert not isinstance(info.value, OutageError)
                now[0] += 0.25

        async def go() -> None:
            try:
                for _ in range(2):
                    await streak(3)  # failing for 0.5 s (0.75 s to the success), the limit is 1 s
                    srv.set_faults(None)
                    await t.respond((user("q"),), PARAMS)  # ends the streak
                await streak(5)  # the last one 1.0 s into the streak: not longer than the limit
                assert now[0] - 1.5 == 1.25  # and now the streak is 1.25 s old
                with pytest.raises(OutageError):
                    await t.respond((user("q"),), PARAMS)
            finally:
                await t.aclose()
        asyncio.run(go())
    assert t.stats["outage_errors"] == 1 and t.stats["ok"] == 2


@pytest.mark.parametrize("xdist", [(), ("-n2",)], ids=["one-process", "n2"])
def test_a_whole_run_against_a_faulty_server_scores_every_dialogue(
        pytester: pytest.Pytester, dataset: Path, xdist: tuple[str, ...]) -> None:
    """pytest --mtmcs against a server failing ~20% of calls: all scored, retries in its log."""
    log = pytester.path / "server.jsonl"
    plan = FaultPlan(rate=0.2, kinds=("http_500", "http_503", "http_429", "drop", "malformed"),
                     seed=11, retry_after_s=0.05)
    with MockOpenAIServer(faults=plan, log_path=str(log), latency_s=0.01) as srv:
        result = run_mtmcs(pytester, dataset, "--mtmcs-retries=8", "--mtmcs-concurrency=8", *xdist,
                           target=f"openai+{srv.base_url}:acme/vlm")
    outcomes = result.parseoutcomes()
    assert "errors" not in outcomes and "error" not in outcomes, result.stdout.str()
    assert outcomes["passed"] + outcomes["failed"] == 48  # 16 dialogues and 32 questions
    assert result.ret in (0, 1)  # a verdict, not an infrastructure failure (75)
    assert all(d["verdict"] != "error" for d in load_report(pytester)["dialogues"])
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    answered = {r["sha256"] for r in lines if r["fault"] is None and r["status"] == 200}
    faulted = [r for r in lines if r["fault"] is not None]
    assert len(answered) == 40 + 32  # every distinct request answered once ...
    assert len(lines) == len(answered) + len(faulted)  # ... and nothing else asked twice
    assert len(faulted) >= 8 and Counter(r["fault"] for r in faulted).keys() == set(plan.kinds)
    assert {r["sha256"] for r in faulted} <= answered  # every faulted request was retried
    # the report counts the retries by reason, added up over xdist workers
    reason = {"http_500": "http_500", "http_503": "http_503", "http_429": "http_429",
              "drop": "connection", "malformed": "malformed"}
    calls = load_report(pytester)["calls"]["target"]
    assert calls["retries_by_reason"] == dict(Counter(reason[r["fault"]] for r in faulted))
    assert (calls["calls"], calls["ok"], calls["failed"]) == (len(answered), len(answered), 0)
    assert calls["attempts"] == len(lines)
    result.stdout.fnmatch_lines([f"target: {len(answered)} calls, {len(lines)} requests, "
                                 f"{len(faulted)} retries (*), 0 failed"])
