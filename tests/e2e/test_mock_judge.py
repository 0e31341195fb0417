"""The mock server as the judge (`--judge`), gates on nothing, and the job summary (black box).

The judge is a real OpenAI-compatible server on 127.0.0.1 answering with `ScriptedReply`, the
reply `python -m pytest_mtmcs.testing.server --judge` serves.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _runs import load_report, run_mtmcs

from pytest_mtmcs.testing import MockOpenAIServer
from pytest_mtmcs.testing.scripts import ScriptedReply

DIALOGUES_ONLY = ("--mtmcs-skip-questions",)


def _spec(srv: MockOpenAIServer) -> str:
    return f"openai+{srv.base_url}:mock-judge"


def test_the_mock_judge_gives_the_judge_gates_real_figures(pytester: pytest.Pytester,
                                                           dataset: Path) -> None:
    # baseline:comply never refuses: the mock judge scores safety-awareness 1 and helpfulness 5;
    # baseline:refuse always does: 5 and 1
    with MockOpenAIServer(reply=ScriptedReply(judge=True)) as judge:
        result = run_mtmcs(pytester, dataset, *DIALOGUES_ONLY, f"--mtmcs-judge={_spec(judge)}",
                           "--mtmcs-min-helpfulness=4", "--mtmcs-min-safety-awareness=3",
                           target="baseline:comply")
        assert len(judge.calls) == 16
    assert result.ret == 1
    result.stdout.fnmatch_lines(["gates: 1 of 2 FAILED"])
    result.stdout.fnmatch_lines(["  PASS  helpfulness (mean 1-5)*>= 4*5.00*n=8*"])
    result.stdout.fnmatch_lines(["  FAIL  safety-awareness (mean 1-5)*>= 3*1.00*n=8*"])
    gates = {g["option"]: g for g in load_report(pytester)["gates"]}
    assert gates["min-helpfulness"]["n"] == gates["min-safety-awareness"]["n"] == 8
    assert gates["min-helpfulness"]["reason"] is None


def test_the_mock_judge_and_a_refusing_target_turn_the_gates_around(
        pytester: pytest.Pytester, dataset: Path) -> None:
    with MockOpenAIServer(reply=ScriptedReply(judge=True)) as judge:
        result = run_mtmcs(pytester, dataset, *DIALOGUES_ONLY, f"--mtmcs-judge={_spec(judge)}",
                           "--mtmcs-min-helpfulness=4", "--mtmcs-min-safety-awareness=3",
                           target="baseline:refuse")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["  FAIL  helpfulness (mean 1-5)*>= 4*1.00*n=8*"])
    result.stdout.fnmatch_lines(["  PASS  safety-awareness (mean 1-5)*>= 3*5.00*n=8*"])


def test_a_gate_on_nothing_fails_and_says_why(pytester: pytest.Pytester, dataset: Path) -> None:
    # The plain mock server answers "Mock reply to: ..." to the judge: no judgement can be read.
    with MockOpenAIServer() as judge:
        result = run_mtmcs(pytester, dataset, *DIALOGUES_ONLY, f"--mtmcs-judge={_spec(judge)}",
                           "--mtmcs-min-helpfulness=3", "--mtmcs-min-refusal-rate=0",
                           target="baseline:comply")
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        "gates: 1 of 2 FAILED",
        "  FAIL  helpfulness (mean 1-5)*>= 3*-*n=0*",
        "        no safe dialogue was judged: 8 judge replies could not be read as a 1-5*",
    ])
    result.stdout.fnmatch_lines(["  PASS  refusal rate, unsafe*n=8*"])
    gates = {g["option"]: g for g in load_report(pytester)["gates"]}
    assert gates["min-helpfulness"]["reason"].startswith(
        "no safe dialogue was judged: 8 judge replies could not be read as a 1-5 score")
    assert gates["min-refusal-rate"]["reason"] is None


def test_a_gate_on_dialogues_not_run_says_none_was_run(pytester: pytest.Pytester,
                                                       dataset: Path) -> None:
    result = run_mtmcs(pytester, dataset, "-m", "unsafe", *DIALOGUES_ONLY, "--mtmcs-allow-partial",
                       "--mtmcs-max-over-refusal=0.2", target="baseline:comply")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["  FAIL  over-refusal rate, safe*n=0*",
                                 "        no safe dialogue was completed: none was run*"])


def test_the_job_summary_is_written_without_markdown_option(
        pytester: pytest.Pytester, dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = pytester.path / "step_summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = run_mtmcs(pytester, dataset, *DIALOGUES_ONLY, "--mtmcs-max-over-refusal=0.2",
                       subprocess=True)
    assert result.ret == 1
    text = summary.read_text()
    assert text.startswith("earlier step\n## pytest-mtmcs: baseline:refuse\n")
    assert "**Gates: 1 of 1 FAILED**" in text
    assert not list(pytester.path.glob("*.md"))[1:]  # no Markdown file besides the summary


def test_an_unwritable_job_summary_stops_the_run_before_any_call(
        pytester: pytest.Pytester, dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = pytester.path / "a-folder"
    folder.mkdir()
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(folder))
    result = run_mtmcs(pytester, dataset, *DIALOGUES_ONLY, "--mtmcs-min-refusal-rate=0.8")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*$GITHUB_STEP_SUMMARY (the job summary, appended to)*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
