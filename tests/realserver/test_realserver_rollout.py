"""Whole runs against a real `transformers serve` (SmolLM2-135M-Instruct, CPU, temperature 0).

Small on purpose: one row of Type A, unimodal, a few tokens a turn, one call in flight (the
server computes one request at a time; concurrent ones only slow each other down).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from _data import row, small_dataset, write_dataset
from _realserver import RealServer
from _runs import load_report, run_mtmcs

SMALL = ("--mtmcs-split=type_a", "--mtmcs-modality=unimodal", "--mtmcs-temperature=0",
         "--mtmcs-max-tokens=8", "--mtmcs-concurrency=1", "--mtmcs-timeout=300")


def test_intent_questions_are_all_answered_and_a_warm_rerun_asks_nothing(
        pytester: pytest.Pytester, tmp_path: Path, real_server: RealServer) -> None:
    data = small_dataset(tmp_path / "ds", 1)
    before = real_server.answered()
    result = run_mtmcs(pytester, data, *SMALL, target=real_server.spec())
    report = load_report(pytester)
    # 2 dialogues (Type A's safe and unsafe share R1 and R2: 4 calls) and 4 intent questions
    assert len(report["dialogues"]) == 2 and len(report["questions"]) == 4
    assert all(d["verdict"] in ("pass", "fail") for d in report["dialogues"]), report["dialogues"]
    assert all(q["verdict"] in ("pass", "fail") for q in report["questions"]), report["questions"]
    # every answer was read: parsed to a letter / true-false, or counted unparsed (wrong)
    for q in report["questions"]:
        assert q["parsed"] is not None or (q["correct"] is False and q["verdict"] == "fail")
    calls = report["calls"]["target"]
    assert (calls["calls"], calls["ok"], calls["failed"], calls["retries"]) == (8, 8, 0, 0)
    # what the server was sent: the turns' budget, and the intent questions' own
    assert calls["sent"] == {"max_tokens=8 temperature=0": 4, "max_tokens=32 temperature=0": 2,
                             "max_tokens=64 temperature=0": 2}
    assert real_server.answered() - before == 8  # the server's own log agrees
    outcomes = result.parseoutcomes()
    assert outcomes.get("error", 0) == 0
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 6

    again = run_mtmcs(pytester, data, *SMALL, target=real_server.spec())
    assert real_server.answered() - before == 8  # the warm re-run asked the server nothing
    warm = load_report(pytester)
    assert all(d["calls"] == 0 and d["cached_calls"] == 3 for d in warm["dialogues"])
    assert "target" not in warm["calls"]
    # temperature 0: the same verdicts, answers and parses
    assert again.parseoutcomes() == outcomes
    strip = ("cached", "cached_calls", "calls")
    assert [{k: v for k, v in q.items() if k not in strip} for q in warm["questions"]] == [
        {k: v for k, v in q.items() if k not in strip} for q in report["questions"]]


def test_replies_are_greedy_and_equal_the_in_process_hf_target(
        real_server: RealServer, smollm2_folder: Path) -> None:
    from pytest_mtmcs.chat import GenParams, user
    from pytest_mtmcs.targets import TargetOptions, make_target
    from pytest_mtmcs.targets.hf import load

    params = GenParams(temperature=0, max_tokens=12)
    convs = [(user("What is the capital of France?"),),
             (user("hi"),)]
    remote = make_target(real_server.spec(), TargetOptions(timeout_s=300))
    local = load(str(smollm2_folder), TargetOptions())

    async def ask() -> tuple[list[str], list[str]]:
        try:
            theirs = [(await remote.respond(c, params)).text for c in convs]
            ours = [r.text for r in await local.respond_many(convs, params)]
        finally:
            await remote.aclose()
            await local.aclose()
        return theirs, ours

    theirs, ours = asyncio.run(ask())
    assert theirs[0] == "The capital of France is Paris."
    assert theirs == ours  # byte-identical to the in-process target on the same weights


def test_a_wrong_model_name_is_a_configuration_error_quoting_the_server(
        pytester: pytest.Pytester, tmp_path: Path, real_server: RealServer) -> None:
    data = write_dataset(tmp_path / "ds", {"type_a": [row(0)]})
    statuses = len(real_server.chat_statuses())
    result = run_mtmcs(pytester, data, *SMALL, "--mtmcs-skip-questions",
                       target=f"openai+{real_server.base_url}:smollm2")
    assert result.ret == 4  # a usage error, not an outage (75)
    result.stdout.fnmatch_lines(["*HTTP 400 for model 'smollm2'*Server is pinned to *; "
                                 "requested 'smollm2'*"])
    assert real_server.chat_statuses()[statuses:] == [400]  # asked once, then no more requests
