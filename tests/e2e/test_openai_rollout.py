"""Whole runs against a real OpenAI-compatible server on 127.0.0.1 (black box)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from _data import row, write_dataset
from _runs import load_report, run_mtmcs

from pytest_mtmcs.testing import MockOpenAIServer

DIALOGUES_ONLY = ("--mtmcs-skip-questions",)


def _spec(srv: MockOpenAIServer) -> str:
    return f"openai+{srv.base_url}:acme/vlm-7b"


def _user_texts(body: dict[str, Any]) -> list[str]:
    out = []
    for m in body["messages"]:
        c = m["content"]
        out.append(c if isinstance(c, str) else " ".join(p["text"] for p in c if p["type"] == "text"))
    return out


def _images(msg: dict[str, Any]) -> list[str]:
    c = msg["content"]
    return [] if isinstance(c, str) else [p["image_url"]["url"] for p in c if p["type"] == "image_url"]


def test_requests_follow_the_protocol(pytester: pytest.Pytester, dataset: Path) -> None:
    with MockOpenAIServer() as srv:
        result = run_mtmcs(pytester, dataset, *DIALOGUES_ONLY, "--mtmcs-temperature=0.3",
                           "--mtmcs-max-tokens=77", target=_spec(srv))
        calls = [c.body for c in srv.calls]
    result.assert_outcomes(passed=8, failed=8)  # mock replies never refuse
    # three turns per dialogue, identical requests made once: Type A's safe and unsafe
    # dialogues share R1 and R2 (4 calls per row and modality), Type B's do not (6).
    assert len(calls) == 2 * 2 * (4 + 6)
    assert len({_key(b) for b in calls}) == len(calls)
    by_first: dict[str, list[dict[str, Any]]] = {}
    for body in calls:
        assert body["model"] == "acme/vlm-7b"
        assert body["temperature"] == 0.3
        assert body.get("max_tokens", body.get("max_completion_tokens")) == 77
        by_first.setdefault(_user_texts(body)[0] + str(bool(_images(body["messages"][-1]))), []).append(body)
    for body in calls:
        msgs = body["messages"]
        roles = [m["role"] for m in msgs]
        n = (len(msgs) + 1) // 2
        assert roles == ["user", "assistant"] * (n - 1) + ["user"]  # growing history
        first = _user_texts(body)[0]
        multimodal = first.startswith("MM")
        for i, m in enumerate(msgs):
            imgs = _images(m)
            if multimodal and i == len(msgs) - 1:
                assert len(imgs) == 1 and imgs[0].startswith("data:image/png;base64,")
            else:
                assert imgs == []  # never on earlier messages, never in unimodal dialogues
        for i in range(1, len(msgs), 2):  # the model's own replies come back as assistant turns
            assert msgs[i]["content"].startswith("Mock reply to:")
    # Type A unsafe: r1, r2, unsafe_r3; Type B unsafe: unsafe_r1, r2, r3.
    third_turns = Counter(_user_texts(b)[-1] for b in calls if len(b["messages"]) == 5)
    for r in (0, 1):
        for fam in ("MM", "UM"):
            assert third_turns[f"{fam}{r} unsafe_r3 turn"] == 1  # Type A unsafe
            assert third_turns[f"{fam}{r} safe_r3 turn"] == 1  # Type A safe
            assert third_turns[f"{fam}{r} r3 turn"] == 2  # Type B safe and unsafe
    second_turns = Counter(_user_texts(b)[0] for b in calls if len(b["messages"]) == 3)
    assert second_turns["MM0 r1 turn"] == 1  # Type A: one shared R2 request
    assert second_turns["MM0 unsafe_r1 turn"] == 1 and second_turns["MM0 safe_r1 turn"] == 1


def test_questions_embed_the_transcript(pytester: pytest.Pytester, dataset: Path) -> None:
    with MockOpenAIServer(reply=lambda body: "B" if "Question:" in _user_texts(body)[-1] else
                          ("True" if "Statement:" in _user_texts(body)[-1] else "Happy to help.")) as srv:
        result = run_mtmcs(pytester, dataset, "-k", "type_a-0000-multimodal-unsafe",
                           target=_spec(srv))
        calls = [c.body for c in srv.calls]
    # the unsafe dialogue fails (never refused); mcq1 (truth B) and tf0 (truth True) pass,
    # tf1 (truth False) fails.
    result.assert_outcomes(passed=2, failed=2)
    questions = [b for b in calls if len(b["messages"]) == 1 and "Assistant:" in _user_texts(b)[0]]
    assert len(questions) == 3
    for b in questions:
        text = _user_texts(b)[0]
        assert "User: MM0 r1 turn\nAssistant: Happy to help." in text
        assert "User: MM0 unsafe_r3 turn" in text
        assert len(_images(b["messages"][0])) == 1
        assert b.get("max_tokens", b.get("max_completion_tokens")) in (64, 32)
    mcq = next(b for b in questions if "Question:" in _user_texts(b)[0])
    assert "A. benign goal\nB. harmful goal\nC. no goal\nD. other" in _user_texts(mcq)[0]


def test_second_run_makes_zero_calls(pytester: pytest.Pytester, dataset: Path) -> None:
    with MockOpenAIServer() as srv:
        first = run_mtmcs(pytester, dataset, target=_spec(srv))
        n_first = len(srv.calls)
        report_first = load_report(pytester)
        second = run_mtmcs(pytester, dataset, target=_spec(srv))
        assert len(srv.calls) == n_first
    assert n_first == 40 + 32  # distinct turn requests (see above) and the questions
    first.assert_outcomes(**second.parseoutcomes())  # type: ignore[arg-type]
    report_second = load_report(pytester)
    assert report_second["summary"] == report_first["summary"]
    assert all(d["cached_calls"] == 3 and d["calls"] == 0 for d in report_second["dialogues"])


def test_warm_run_reads_answers_in_bulk_and_reasks_a_reworded_question(
        pytester: pytest.Pytester, tmp_path: Path) -> None:
    """The store keeps whole dialogues and question answers apart from the per-call cache: with
    the call cache emptied, a warm run still makes no call; a question whose wording changed
    in the data is asked again, alone."""
    data = write_dataset(tmp_path / "ds", {s: [row(i) for i in range(2)] for s in ("type_a", "type_b")})
    with MockOpenAIServer(reply=lambda body: "B") as srv:
        first = run_mtmcs(pytester, data, target=_spec(srv))
        n_first = len(srv.calls)
        db = sqlite3.connect(pytester.path / "store.sqlite")
        with db:
            db.execute("DELETE FROM calls")
        db.close()
        srv.reset()
        second = run_mtmcs(pytester, data, target=_spec(srv))
        assert srv.calls == []
        first.assert_outcomes(**second.parseoutcomes())  # type: ignore[arg-type]
        questions = {q["id"]: q for q in load_report(pytester)["questions"]}
        assert len(questions) == 32 and all(q["cached"] for q in questions.values())
        assert {q["parsed"] for q in questions.values() if q["kind"] == "mcq"} == {"B"}

        reworded = row(1)
        reworded["multimodal_mcq"][1]["question"] = "multimodal unsafe question, reworded"
        write_dataset(data, {"type_a": [row(0), reworded], "type_b": [row(0), row(1)]})
        third = run_mtmcs(pytester, data, target=_spec(srv))
    asked = [_user_texts(c.body)[-1] for c in srv.calls]
    assert len(asked) == 1 and "multimodal unsafe question, reworded" in asked[0]
    assert n_first == 40 + 32
    first.assert_outcomes(**third.parseoutcomes())  # type: ignore[arg-type]


def test_unreachable_server_errors_items_with_url(pytester: pytest.Pytester, dataset: Path) -> None:
    with MockOpenAIServer() as srv:
        url = srv.base_url
    # the server is gone: the port is closed
    result = run_mtmcs(pytester, dataset, *DIALOGUES_ONLY, "--mtmcs-retries=1",
                       "--mtmcs-split=type_a", "--mtmcs-limit=1", target=f"openai+{url}:m")
    result.assert_outcomes(errors=4)
    result.stdout.fnmatch_lines([f"*TargetError: could not reach {url} after 1 retries*"])
    assert result.ret == 75
    report = load_report(pytester)
    assert [d["verdict"] for d in report["dialogues"]] == ["error"] * 4
    assert report["summary"][0]["errored"] == 2
    # questions alone selected: they error because their dialogue could not be rolled out,
    # and the run is still an outage (75), not a usage error or a safety failure
    result = run_mtmcs(pytester, dataset, "-m", "tf", "--mtmcs-retries=0", "--mtmcs-split=type_a",
                       "--mtmcs-limit=1", target=f"openai+{url}:m")
    result.assert_outcomes(errors=4, deselected=8)
    result.stdout.fnmatch_lines(["*its dialogue type_a-0000-*-unsafe errored: could not reach*"])
    assert result.ret == 75


@pytest.mark.parametrize("fault, message", [
    ("http_503", "answered HTTP 503"),
    ("malformed", "answered with a body that is not valid JSON"),
])
def test_server_faults_error_the_items(pytester: pytest.Pytester, dataset: Path, fault: str,
                                       message: str) -> None:
    from pytest_mtmcs.testing import FaultPlan

    with MockOpenAIServer(faults=FaultPlan.always(fault)) as srv:  # type: ignore[arg-type]
        url = srv.base_url
        result = run_mtmcs(pytester, dataset, *DIALOGUES_ONLY, "--mtmcs-retries=0",
                           "--mtmcs-split=type_b", "--mtmcs-limit=1", "--mtmcs-modality=unimodal",
                           target=_spec(srv))
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([f"*TargetError: {url} {message}*"])
    result.stdout.no_fnmatch_line("*Traceback*")
    assert result.ret == 75


def test_killed_run_resumes_without_repeating_calls(pytester: pytest.Pytester, dataset: Path) -> None:
    """kill -9 after half the dialogues, then the same command: nothing answered is asked again."""
    with MockOpenAIServer() as srv:
        srv.hold_after(20)  # answer half the 40 distinct calls, then hold the rest unanswered
        args = [sys.executable, "-m", "pytest", "--mtmcs", f"--mtmcs-data={dataset}",
                f"--mtmcs-target={_spec(srv)}", f"--mtmcs-store={pytester.path / 'store.sqlite'}",
                "--mtmcs-concurrency=4", "--mtmcs-skip-questions", "-p", "no:cacheprovider", "-q"]
        proc = subprocess.Popen(args, cwd=pytester.path, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            # all four workers held: each stored its previous reply before asking again
            while srv.held_count < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert srv.held_count == 4, "the run never reached the held calls"
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        answered = [c for c in srv.calls if c.completed]
        assert len(answered) == 20
        first_keys = {_key(c.body) for c in answered}
        srv.release()
        srv.reset()
        result = run_mtmcs(pytester, dataset, "--mtmcs-concurrency=4", *DIALOGUES_ONLY,
                           target=_spec(srv), subprocess=True)
        second = [_key(c.body) for c in srv.calls]
    result.assert_outcomes(passed=8, failed=8)
    assert not first_keys & set(second), "a call answered before the kill was made again"
    assert len(second) == len(set(second)) == 40 - 20


def _key(body: dict[str, Any]) -> str:
    import json

    return json.dumps(body["messages"], sort_keys=True)

