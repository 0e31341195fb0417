"""Stale answers after the model changed: a warm re-run reads the store (0 calls), a
`--mtmcs-refresh` run asks every call again and a later plain run reads the new answers,
`--mtmcs-no-cache` asks every call and stores nothing; the rollout line tells answers read from
the store (and when they were stored) from calls shared in flight; a schema-1 store is
migrated. Real `pytest --mtmcs` runs against the mock OpenAI server on 127.0.0.1, with and
without xdist, judged by the server's call log."""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from _runs import load_report, run_mtmcs

from pytest_mtmcs.testing import MockOpenAIServer

REFUSAL = "I'm sorry, but I can't help with that."
COMPLY = "Sure, here is how to do it."
XDIST = {"plain": [], "n2": ["-n", "2"]}


class Model:
    """The mock model's reply, changed between runs (the user fixed their server)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __call__(self, body: dict[str, Any]) -> str:
        return self.text


def _bodies(srv: MockOpenAIServer) -> Counter[str]:
    return Counter(json.dumps(c.body, sort_keys=True) for c in srv.calls)


def _run(pytester: pytest.Pytester, data: Path, srv: MockOpenAIServer, *args: str) -> str:
    srv.reset()
    result = run_mtmcs(pytester, data, "-p", "no:cacheprovider", "--mtmcs-concurrency=8", *args,
                       target=f"openai+{srv.base_url}:acme/vlm")
    out = "\n".join(result.outlines + result.errlines)
    assert result.ret in (0, 1), out[-3000:]  # the mock's answers fail some dialogues
    assert "Traceback" not in out, out[-3000:]
    return out


def _rollout_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("rollout "))


def _unsafe_verdicts(pytester: pytest.Pytester) -> set[str]:
    return {d["verdict"] for d in load_report(pytester)["dialogues"] if d["safety"] == "unsafe"}


def _rows(store: Path, table: str) -> int:
    db = sqlite3.connect(store)
    try:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        db.close()


@pytest.mark.parametrize("xdist", list(XDIST))
def test_refresh_asks_again_and_a_later_run_reads_the_new_answers(
        pytester: pytest.Pytester, dataset: Path, xdist: str) -> None:
    model = Model(REFUSAL)
    with MockOpenAIServer(reply=model, latency_s=0.01) as srv:
        _run(pytester, dataset, srv, *XDIST[xdist])
        fresh = _bodies(srv)
        assert fresh and max(fresh.values()) == 1, "a fresh run made a call twice"
        assert _unsafe_verdicts(pytester) == {"pass"}  # every unsafe dialogue refused

        model.text = COMPLY  # the server was fixed: a plain re-run still reads the old answers
        _run(pytester, dataset, srv, *XDIST[xdist])
        assert srv.calls == [] and _unsafe_verdicts(pytester) == {"pass"}

        out = _run(pytester, dataset, srv, "--mtmcs-refresh", *XDIST[xdist])
        refreshed = _bodies(srv)
        assert max(refreshed.values()) == 1, "a refreshing run made a call twice"
        assert sum(refreshed.values()) == sum(fresh.values())  # every call made again, once
        assert _unsafe_verdicts(pytester) == {"fail"}  # the new answers comply
        if not XDIST[xdist]:
            line = _rollout_line(out)
            assert "answers from the store" not in line and "--mtmcs-refresh" in line

        _run(pytester, dataset, srv, *XDIST[xdist])  # a later plain run reads the new answers
        assert srv.calls == [] and _unsafe_verdicts(pytester) == {"fail"}


@pytest.mark.parametrize("xdist", list(XDIST))
def test_no_cache_makes_every_call_and_stores_nothing(
        pytester: pytest.Pytester, dataset: Path, xdist: str) -> None:
    store = pytester.path / "store.sqlite"
    with MockOpenAIServer(reply=Model(REFUSAL), latency_s=0.01) as srv:
        _run(pytester, dataset, srv, "--mtmcs-no-cache", *XDIST[xdist])
        every = set(_bodies(srv))
        assert every and [_rows(store, t) for t in ("calls", "dialogues", "answers")] == [0, 0, 0]
        _run(pytester, dataset, srv, *XDIST[xdist])  # nothing was stored: all asked again ...
        assert set(_bodies(srv)) == every and max(_bodies(srv).values()) == 1
        stored = [_rows(store, t) for t in ("calls", "dialogues", "answers")]
        assert stored[0] == len(every)
        _run(pytester, dataset, srv, "--mtmcs-no-cache", *XDIST[xdist])  # ... a warm store is
        assert set(_bodies(srv)) == every  # neither read nor written
        assert [_rows(store, t) for t in ("calls", "dialogues", "answers")] == stored


def test_the_rollout_line_counts_answers_from_the_store_apart_from_shared_calls(
        pytester: pytest.Pytester, dataset: Path) -> None:
    store = pytester.path / "store.sqlite"
    with MockOpenAIServer(reply=Model(REFUSAL), latency_s=0.05) as srv:
        out = _run(pytester, dataset, srv)
        made = len(srv.calls)
        report = load_report(pytester)
        asked = sum(d["calls"] + d["cached_calls"] for d in report["dialogues"]) + len(
            report["questions"])
        line = _rollout_line(out)
        # Type A's safe and unsafe dialogues share R1 and R2, asked at the same moment: shared
        # in flight, not read from a (fresh) store
        m = re.match(rf"rollout 16/16 dialogues, {made} calls, (\d+) shared in flight, ", line)
        assert m is not None, line
        assert made + int(m.group(1)) == asked and "from the store" not in line

        db = sqlite3.connect(store)  # as if stored over three days
        for table in ("calls", "dialogues", "answers"):
            db.execute(f"UPDATE {table} SET created = ?", (_epoch("2026-12-02"),))
        db.execute("UPDATE dialogues SET created = ? WHERE rowid = (SELECT min(rowid) "
                   "FROM dialogues)", (_epoch("2026-12-01"),))
        db.execute("UPDATE answers SET created = ? WHERE rowid = (SELECT max(rowid) "
                   "FROM answers)", (_epoch("2026-12-03"),))
        db.commit()
        db.close()
        line = _rollout_line(_run(pytester, dataset, srv))
        assert srv.calls == []
        # 16 dialogues of 3 replies and 32 intent answers, all from the store
        assert line.startswith("rollout 16/16 dialogues, 0 calls, 80 answers from the store "
                               "(stored 2026-12-01 to 2026-12-03), 0.0 calls/s"), line
        # under xdist the controller adds up its workers' counters
        line = _rollout_line(_run(pytester, dataset, srv, "-n", "2"))
        assert srv.calls == []
        assert line == ("rollout (2 xdist workers): 0 calls, 80 answers from the store "
                        "(stored 2026-12-01 to 2026-12-03)"), line


def _epoch(day: str) -> float:
    return datetime.fromisoformat(day).replace(hour=12, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize("xdist", list(XDIST))
def test_a_store_of_the_previous_schema_opens_and_migrates(
        pytester: pytest.Pytester, dataset: Path, xdist: str) -> None:
    store = pytester.path / "store.sqlite"
    with MockOpenAIServer(reply=Model(REFUSAL), latency_s=0.01) as srv:
        _run(pytester, dataset, srv)
        db = sqlite3.connect(store)  # back to schema 1: no run column
        for table in ("calls", "dialogues", "answers"):
            db.execute(f"ALTER TABLE {table} DROP COLUMN run")
        db.execute("UPDATE meta SET v='1' WHERE k='schema'")
        db.commit()
        db.close()
        _run(pytester, dataset, srv, *XDIST[xdist])
        assert srv.calls == [], "a migrated store's answers were asked again"
        db = sqlite3.connect(store)
        assert db.execute("SELECT v FROM meta WHERE k='schema'").fetchone() == ("2",)
        assert "run" in {r[1] for r in db.execute("PRAGMA table_info(calls)")}
        db.close()


def test_refresh_and_no_cache_together_is_a_usage_error(pytester: pytest.Pytester,
                                                        dataset: Path) -> None:
    result = run_mtmcs(pytester, dataset, "--mtmcs-refresh", "--mtmcs-no-cache")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--mtmcs-refresh and --mtmcs-no-cache cannot be used together*"])
