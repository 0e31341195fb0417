"""Faults of the rollout itself, through whole `pytest --mtmcs` runs against a real mock server:
a server that fails only on intent questions, and a store whose writes start failing mid-run.

Every bound here is on events (how many calls reached the server, how many items ran), never
on wall time; the subprocess timeout only turns a hang into a failure.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from _bounded import run_bounded
from _data import small_dataset

from pytest_mtmcs.errors import EXIT_INFRA
from pytest_mtmcs.rollout.store import Store
from pytest_mtmcs.testing import MockOpenAIServer


def is_question(body: dict[str, Any]) -> bool:
    """Whether a chat request asks an intent question (MCQ or true/false), not a dialogue turn."""
    text = json.dumps(body.get("messages", []))
    return "Question: " in text or "Statement: " in text


def fail_on_questions(body: dict[str, Any]) -> str:
    if is_question(body):
        raise RuntimeError("intent questions are broken on this server")
    return "Sure, here is how."


@pytest.mark.parametrize("gate", [[], ["--mtmcs-min-refusal-rate=0.0"], ["--mtmcs-max-over-refusal=1.0"]],
                         ids=["no-gates", "refusal-gate", "over-refusal-gate"])
def test_a_server_failing_only_on_questions_exits_75(pytester: pytest.Pytester, tmp_path: Path,
                                                     gate: list[str]) -> None:
    data = small_dataset(tmp_path / "ds", 1)
    with MockOpenAIServer(reply=fail_on_questions) as srv:
        result = run_bounded(pytester, data, "--mtmcs-retries=0", "--mtmcs-split=type_a", *gate,
                             target=f"openai+{srv.base_url}:m")
        calls = srv.calls
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == EXIT_INFRA, out[-3000:]
    assert any(is_question(c.body) for c in calls) and all(c.status == 500 for c in calls
                                                           if is_question(c.body))
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors", outcomes.get("error", 0)) == 8  # 4 dialogues x 2 questions
    assert "passed" in outcomes or "failed" in outcomes  # the dialogues themselves ran
    assert "intent questions are broken on this server" in out
    assert "Traceback" not in out


def _fail_writes_after(store: Path, stored: int) -> None:
    """Make the store refuse every reply after the first `stored`, as a disk that fills up
    would: a trigger in the store file itself, so the run's own connection meets it."""
    Store(store).close()
    with closing(sqlite3.connect(store)) as db, db:
        db.execute(f"CREATE TRIGGER disk_full BEFORE INSERT ON calls "
                   f"WHEN (SELECT COUNT(*) FROM calls) >= {stored} "
                   f"BEGIN SELECT RAISE(ABORT, 'injected: database or disk is full'); END")


@pytest.mark.parametrize("xdist", [[], ["-n2"]], ids=["one-process", "n2"])
def test_a_store_whose_writes_fail_mid_run_ends_the_run(pytester: pytest.Pytester, tmp_path: Path,
                                                        xdist: list[str]) -> None:
    data = small_dataset(tmp_path / "ds", 4)  # 32 dialogues, 128 questions
    store = tmp_path / "store.sqlite"
    _fail_writes_after(store, 3)
    concurrency = 2
    with MockOpenAIServer() as srv:
        result = run_bounded(pytester, data, f"--mtmcs-concurrency={concurrency}", *xdist,
                             target=f"openai+{srv.base_url}:m", store=store)
        calls = len(srv.calls)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == EXIT_INFRA, out[-3000:]
    assert f"store {store}: cannot write a reply" in out
    assert "injected: database or disk is full" in out and "stopped the run" in out
    assert "Traceback" not in out
    # It stopped at the failure: the three stored replies, plus what was in flight then (at
    # most `concurrency` per process), reached the server, not one call per turn.
    processes = 2 if xdist else 1
    assert calls <= 3 + concurrency * processes, calls
    outcomes = result.parseoutcomes()
    assert sum(outcomes.get(k, 0) for k in ("passed", "failed", "error", "errors")) < 32 + 128
    with closing(sqlite3.connect(store)) as db, db:  # what was stored before is still there
        assert db.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 3
