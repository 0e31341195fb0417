"""The calls in flight adapt to the server (`targets/adaptive.py`): whole runs against the mock
server answering one call at a time (a single-stream server) and answering in parallel.

What the server saw is read from the server itself: its reply function records how many calls
it had received and not yet answered (queued ones included) as it answers each one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _runs import load_report, run_mtmcs

from pytest_mtmcs.testing import MockOpenAIServer

REPLY = "I can't help with that."


def run(pytester: pytest.Pytester, dataset: Path, *, serial: bool, options: str = ""
        ) -> tuple[pytest.RunResult, list[int], dict[str, Any]]:
    """One run at concurrency 8; (the result, the calls in flight as the server answered each
    call, in the order answered, the report's target counters)."""
    seen: list[int] = []
    box: list[MockOpenAIServer] = []

    def reply(body: dict[str, Any]) -> str:
        seen.append(box[0].in_flight)
        return REPLY

    with MockOpenAIServer(reply=reply, latency_s=0.1, serial=serial) as srv:
        box.append(srv)
        result = run_mtmcs(pytester, dataset, "--mtmcs-concurrency=8",
                           target=f"openai+{srv.base_url}:acme/vlm{options}")
    outcomes = result.parseoutcomes()
    assert "errors" not in outcomes and "error" not in outcomes, result.stdout.str()
    assert result.ret in (0, 1), result.stdout.str()
    return result, seen, load_report(pytester)["calls"]["target"]


def test_a_single_stream_server_gets_fewer_calls_in_flight_and_the_summary_says_why(
        pytester: pytest.Pytester, dataset: Path) -> None:
    result, seen, calls = run(pytester, dataset, serial=True)
    assert max(seen[:8]) == 8  # the first burst: --mtmcs-concurrency calls queued at the server
    tail = seen[len(seen) * 2 // 3:]
    assert len(tail) >= 15 and max(tail) <= 2, seen  # then one or two at a time
    assert calls["lowered"].startswith("calls in flight lowered 8 -> "), calls
    assert "latency grew" in calls["lowered"]
    result.stdout.fnmatch_lines(["target: * calls, * requests, 0 retries, 0 failed",
                                 "target: calls in flight lowered 8 -> * at * s (latency grew "
                                 "*x over its baseline)*"])


def test_a_server_that_keeps_up_keeps_every_call_in_flight(
        pytester: pytest.Pytester, dataset: Path) -> None:
    result, seen, calls = run(pytester, dataset, serial=False)
    assert max(seen) == 8
    assert "lowered" not in calls
    assert "calls in flight lowered" not in result.stdout.str()


def test_adaptive_no_keeps_every_call_in_flight_even_for_a_single_stream_server(
        pytester: pytest.Pytester, dataset: Path) -> None:
    result, seen, calls = run(pytester, dataset, serial=True, options="?adaptive=no")
    assert max(seen[len(seen) // 2:]) >= 6, seen  # still queued deep at the server
    assert "lowered" not in calls
    assert "calls in flight lowered" not in result.stdout.str()
