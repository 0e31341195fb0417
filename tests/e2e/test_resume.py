"""kill -9 a real `pytest --mtmcs` mid-run, run the same command again: it resumes from the store.

The run is started as a user starts it (the `pytest` console script, an `openai+http://...`
target spec, a store path) against a mock server with latency, so it takes a few seconds. The
mock model's reply names the request it answers (a digest of the request body), so the replies
stored in the sqlite store say exactly which requests were stored before the kill, and the
server's call log of the second run says which were made again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from _data import small_dataset
from _runs import pytest_command

from pytest_mtmcs.testing import MockOpenAIServer

ROWS = 4
"""Rows per split: 32 dialogues, 64 intent questions, 144 distinct calls."""
CALLS = ROWS * ((8 + 8) + (12 + 8))
"""Distinct calls of a whole run: per row, Type A makes 4 turn calls per modality (safe and
unsafe share R1 and R2), Type B 6; each row and modality asks 4 questions."""
CONCURRENCY = 4
LATENCY_S = 0.1


def tag(body: dict[str, Any]) -> str:
    """The mock model's reply: a digest of the whole request body, so a reply names its request."""
    return "reply-" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]



def wait_for_answers(srv: MockOpenAIServer, proc: subprocess.Popen[bytes], n: int, log: Path,
                     timeout_s: float = 120.0) -> None:
    """Block until the server has answered `n` calls; fail at once if the run exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            srv.wait_for_calls(n, timeout=0.5, completed=True)
            return
        except TimeoutError:
            if proc.poll() is not None:
                pytest.fail(f"the run exited ({proc.returncode}) before {n} calls were answered:\n"
                            + log.read_text(errors="replace")[-3000:])
            if time.monotonic() > deadline:
                raise


def stored_replies(store: Path) -> tuple[list[str], set[str], str]:
    """(call keys, reply texts, integrity_check verdict) of the store's call cache."""
    db = sqlite3.connect(store)
    try:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        rows = db.execute("SELECT key, reply FROM calls").fetchall()
    finally:
        db.close()
    return [k for k, _ in rows], {json.loads(r)["text"] for _, r in rows}, integrity


def test_killed_run_resumes_from_the_store(tmp_path: Path) -> None:
    data = small_dataset(tmp_path / "ds", ROWS)
    sandbox = tmp_path / "run"
    sandbox.mkdir()
    store = sandbox / "store.sqlite"
    report = sandbox / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    with MockOpenAIServer(reply=tag, latency_s=LATENCY_S) as srv:
        cmd = [*pytest_command(), "--mtmcs", f"--mtmcs-data={data}",
               f"--mtmcs-target=openai+{srv.base_url}:acme/vlm-7b", f"--mtmcs-store={store}",
               f"--mtmcs-report={report}", f"--mtmcs-concurrency={CONCURRENCY}", "-q"]
        with open(sandbox / "first.log", "wb") as out:
            proc = subprocess.Popen(cmd, cwd=sandbox, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
            try:
                # a third of the run answered: the rest cannot be done before the kill below
                # (96 calls at 0.1 s with 4 in flight take at least 2.4 s)
                wait_for_answers(srv, proc, CALLS // 3, sandbox / "first.log")
            finally:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
        first = srv.calls
        assert proc.returncode == -signal.SIGKILL
        assert not report.exists(), "the first run finished before it was killed"

        keys, stored, integrity = stored_replies(store)
        assert integrity == "ok"
        assert len(keys) == len(set(keys)) == len(stored)
        answered = {tag(c.body) for c in first if c.completed}
        made_first = {tag(c.body) for c in first}
        assert len(made_first) == len(first) < CALLS, "the first run made a request twice"
        # every stored reply is one the server gave; at most the calls in flight were lost
        # (a reply the server has sent may still be on its way into the store at the kill)
        assert stored <= answered
        assert CALLS // 3 - CONCURRENCY <= len(stored) and len(made_first - stored) <= CONCURRENCY

        srv.reset()
        second = subprocess.run(cmd, cwd=sandbox, capture_output=True, text=True, env=env,
                                timeout=300, check=False)
        made_second = [tag(c.body) for c in srv.calls]

    tail = second.stdout.strip().splitlines()[-1]
    assert second.returncode == 1, second.stdout[-3000:] + second.stderr[-3000:]  # mock never refuses
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|error)", tail)}
    assert "error" not in counts, tail
    assert counts["passed"] + counts["failed"] == ROWS * 2 * (4 + 8), tail  # 4 dialogues + 8 questions a row

    # nothing answered and stored before the kill was asked again; only calls in flight at the
    # kill (at most --mtmcs-concurrency) may repeat; every request made once over both runs
    assert not stored & set(made_second), "a call stored before the kill was made again"
    repeated = made_first & set(made_second)
    assert len(repeated) <= CONCURRENCY, repeated
    assert len(made_second) == len(set(made_second)), "the second run made a request twice"
    assert len(stored | set(made_second)) == CALLS

    # every dialogue scored exactly once, none errored
    dialogues = json.loads(report.read_text())["dialogues"]
    ids = [d["id"] for d in dialogues]
    assert len(ids) == len(set(ids)) == ROWS * 2 * 4
    assert {d["verdict"] for d in dialogues} <= {"pass", "fail"}
    assert sum(d["cached_calls"] > 0 for d in dialogues) > 0, "nothing came from the store"

    keys_after, _, integrity_after = stored_replies(store)
    assert integrity_after == "ok" and len(keys_after) == CALLS
