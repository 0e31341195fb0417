"""The real server as its own judge, and behind guardrail stacks."""

from __future__ import annotations

from pathlib import Path

import pytest
from _data import row, write_dataset
from _realserver import RealServer
from _runs import load_report, run_mtmcs

DIALOGUES = ("--mtmcs-split=type_a", "--mtmcs-modality=unimodal", "--mtmcs-temperature=0",
             "--mtmcs-max-tokens=8", "--mtmcs-concurrency=1", "--mtmcs-timeout=300",
             "--mtmcs-skip-questions")


def test_the_same_server_as_judge(pytester: pytest.Pytester, tmp_path: Path,
                                  real_server: RealServer) -> None:
    data = write_dataset(tmp_path / "ds", {"type_a": [row(0)]})
    before = real_server.answered()
    result = run_mtmcs(pytester, data, *DIALOGUES, f"--mtmcs-judge={real_server.spec()}",
                       "--mtmcs-judge-max-tokens=16", target=real_server.spec())
    report = load_report(pytester)
    calls = report["calls"]
    # 4 target calls, one judgement per dialogue, all through the one server
    assert (calls["target"]["ok"], calls["judge"]["ok"]) == (4, 2)
    assert calls["judge"]["sent"] == {"max_tokens=16 temperature=0": 2}
    assert real_server.answered() - before == 6
    assert len(report["dialogues"]) == 2
    for d in report["dialogues"]:
        # SmolLM2 cannot score: a judgement it wrote is read, or the dialogue errors saying so
        assert d["judge"] is not None or (d["verdict"] == "error" and "judge" in d["reason"]), d
    assert result.ret in (0, 1)  # no infrastructure or configuration trouble


def test_guardrail_stacks_none_dpp_self_reflection(pytester: pytest.Pytester, tmp_path: Path,
                                                    real_server: RealServer) -> None:
    data = write_dataset(tmp_path / "ds", {"type_a": [row(0)]})
    before = real_server.answered()
    # The critic is a separate (canned) model: self-reflection's critiques have a budget of
    # their own, 256 tokens, minutes each on a busy 2-core CPU; the server drafts and revises.
    result = run_mtmcs(pytester, data, *DIALOGUES, "--mtmcs-guardrail=none,dpp,self-reflection",
                       "--mtmcs-guard-model=baseline:comply", "-k", "unsafe",
                       target=real_server.spec())
    report = load_report(pytester)
    stacks = sorted((d["guardrail"], d["verdict"]) for d in report["dialogues"])
    assert [g for g, _ in stacks] == ["dpp", "none", "self-reflection"]
    assert all(v in ("pass", "fail") for _, v in stacks), report["dialogues"]
    calls = report["calls"]["target"]
    # 3 turns a stack; self-reflection's drafts are the bare target's own replies (cached),
    # its revisions are new calls
    assert calls["failed"] == 0 and calls["ok"] == 9 == real_server.answered() - before
    assert calls["sent"] == {"max_tokens=8 temperature=0": 9}
    outcomes = result.parseoutcomes()
    assert outcomes.get("error", 0) == 0
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 3
