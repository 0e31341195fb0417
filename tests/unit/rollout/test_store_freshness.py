"""The store's answers over time: when each was stored, --mtmcs-refresh and --mtmcs-no-cache
through the call cache, the migration of a schema-1 store, and the rollout line's counts."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from pytest_mtmcs.build import cache_mode
from pytest_mtmcs.chat import Conversation, GenParams, Reply, user
from pytest_mtmcs.rollout.calls import CallCache
from pytest_mtmcs.rollout.progress import CacheMode, Progress
from pytest_mtmcs.rollout.store import Store, call_key
from pytest_mtmcs.rollout.store_schema import SCHEMA_VERSION
from pytest_mtmcs.targets.base import Target


def _at(day: str, hour: int = 12) -> float:
    """Epoch seconds of a UTC day and hour (a fixed clock, never the wall clock)."""
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=timezone.utc).timestamp()


class Counting(Target):
    """Answers `text`, counting its calls."""

    spec = "counting"

    def __init__(self, text: str) -> None:
        self.text = text
        self.calls = 0

    async def respond(self, conversation: Conversation, params: GenParams) -> Reply:
        self.calls += 1
        return Reply(text=self.text)


ASK: Conversation = (user("hi"),)


def _call(store: Store, target: Counting, mode: CacheMode = "use", run: str = "r",
          progress: Progress | None = None) -> tuple[Reply, bool]:
    cache = CallCache(store, progress or Progress(), concurrency=2, target=target, mode=mode,
                      run=run)
    return asyncio.run(cache.call(target, ASK, GenParams()))


def test_each_answer_records_when_it_was_stored(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite", clock=lambda: _at("2026-12-01"))
    _call(store, Counting("old"))
    progress = Progress()
    reply, cached = _call(Store(tmp_path / "s.sqlite"), Counting("new"), progress=progress)
    assert (reply.text, cached) == ("old", True)
    assert (progress.stored, progress.shared, progress.calls) == (1, 0, 0)
    assert progress.stored_first == progress.stored_last == _at("2026-12-01")


def test_refresh_asks_again_overwrites_and_a_plain_run_reads_the_new_answer(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    _call(Store(path, clock=lambda: _at("2026-12-01")), Counting("old"), run="first")
    fixed = Counting("fixed")
    progress = Progress(mode="refresh")
    store = Store(path, clock=lambda: _at("2026-12-04"))
    assert _call(store, fixed, "refresh", "second", progress) == (Reply(text="fixed"), False)
    assert (fixed.calls, progress.calls, progress.stored) == (1, 1, 0)
    # another worker of the same refreshing run reads it, and so does a later plain run
    worker = Counting("fixed")
    assert _call(Store(path), worker, "refresh", "second")[0].text == "fixed"
    assert worker.calls == 0
    later = Counting("unused")
    assert _call(Store(path), later, "use", "third") == (Reply(text="fixed"), True)
    assert later.calls == 0
    found = Store(path).get_dated(call_key(fixed.cache_identity(), ASK, GenParams()))
    assert found is not None and found[1] == (_at("2026-12-04"), "second")


def test_two_runs_refreshing_in_turn_each_call_once(tmp_path: Path) -> None:
    """A reply another refreshing run stored is made again once, then read: never a loop."""
    path = tmp_path / "s.sqlite"
    _call(Store(path), Counting("old"), run="earlier")
    a, b = Counting("a"), Counting("b")
    for target, run in ((a, "A"), (b, "B"), (a, "A"), (b, "B")):
        _call(Store(path), target, "refresh", run)
    assert (a.calls, b.calls) == (2, 2)  # each run's store object is new: a new call each time
    store = Store(path)
    cache_a = CallCache(store, Progress(), concurrency=2, target=a, mode="refresh", run="A")

    async def twice() -> list[tuple[Reply, bool]]:
        return [await cache_a.call(a, ASK, GenParams()) for _ in range(2)]

    results = asyncio.run(twice())
    assert a.calls == 3 and results[1] == (Reply(text="a"), True)  # one call, then its own reply


def test_no_cache_neither_reads_nor_writes(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    _call(Store(path), Counting("old"))
    target = Counting("new")
    progress = Progress(mode="off")
    for _ in range(2):
        assert _call(Store(path), target, "off", "x", progress) == (Reply(text="new"), False)
    assert (target.calls, progress.calls, progress.stored) == (2, 2, 0)
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*), min(run) FROM calls").fetchone() == (1, "r")
    assert db.execute("SELECT count(*) FROM inflight").fetchone() == (0,)
    db.close()
    assert "--mtmcs-no-cache" in progress.line()


def test_identical_requests_in_flight_count_as_shared_not_stored(tmp_path: Path) -> None:
    async def main() -> Progress:
        progress = Progress()
        target = Counting("x")
        cache = CallCache(Store(tmp_path / "s.sqlite"), progress, concurrency=2, target=target)
        await asyncio.gather(*(cache.call(target, ASK, GenParams()) for _ in range(3)))
        return progress

    progress = asyncio.run(main())
    assert (progress.calls, progress.shared, progress.stored, progress.cached) == (1, 2, 0, 2)
    progress.started, progress.finished = 0.0, 10.0
    assert progress.line() == "rollout 0/0 dialogues, 1 calls, 2 shared in flight, 0.1 calls/s"


def test_an_answer_this_run_stored_counts_as_shared_not_from_the_store(tmp_path: Path) -> None:
    """Another xdist worker of the run, or the same request made a moment before: not an
    answer of an earlier run."""
    path = tmp_path / "s.sqlite"
    _call(Store(path, clock=lambda: _at("2026-12-01")), Counting("x"), run="earlier")
    _call(Store(path), Counting("y"), "refresh", "now")
    progress = Progress(run="now")
    assert _call(Store(path), Counting("z"), "use", "now", progress) == (Reply(text="y"), True)
    assert (progress.stored, progress.shared) == (0, 1)
    later = Progress(run="later")
    _call(Store(path), Counting("z"), "use", "later", later)
    assert (later.stored, later.shared) == (1, 0)


def test_the_rollout_line_says_how_many_answers_came_from_the_store_and_when() -> None:
    p = Progress(total=288, done=288, shared=12, started=0.0, finished=4.0)
    p.note_stored(_at("2026-12-03", 23), "earlier", n=600)
    p.note_stored(_at("2026-12-01", 0), None, n=264)
    assert p.line() == ("rollout 288/288 dialogues, 0 calls, 864 answers from the store "
                        "(stored 2026-12-01 to 2026-12-03), 12 shared in flight, 0.0 calls/s")
    one = Progress(started=0.0, finished=1.0)
    one.note_stored(_at("2026-12-02", 1))
    one.note_stored(_at("2026-12-02", 22))
    assert "1 answers" not in one.line() and "(stored 2026-12-02)" in one.line()


V1_SCHEMA = """
CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE dialogues (key TEXT PRIMARY KEY, replies TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE answers (key TEXT PRIMARY KEY, answer TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE calls (key TEXT PRIMARY KEY, target TEXT NOT NULL, reply TEXT NOT NULL,
                    created REAL NOT NULL);
INSERT INTO meta VALUES ('schema', '1');
"""


def test_a_schema_1_store_is_migrated_and_keeps_its_answers(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    target = Counting("unused")
    key = call_key(target.cache_identity(), ASK, GenParams())
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    db.execute("INSERT INTO calls VALUES (?, 'counting', ?, ?)",
               (key, Reply(text="from v1").model_dump_json(), _at("2026-11-30")))
    db.commit()
    db.close()
    first, second = Store(path), Store(path)  # two processes opening it at once: migrated once
    assert (first.migrated_from, second.migrated_from) == (1, SCHEMA_VERSION)
    progress = Progress()
    assert _call(first, target, progress=progress) == (Reply(text="from v1"), True)
    assert target.calls == 0 and progress.stored_days() == "stored 2026-11-30"
    db = sqlite3.connect(path)
    assert db.execute("SELECT v FROM meta WHERE k='schema'").fetchone() == (str(SCHEMA_VERSION),)
    for table in ("calls", "dialogues", "answers"):
        assert "run" in {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
    db.close()
    # a refreshing run asks the migrated (run-less) answer again
    assert _call(Store(path), Counting("new"), "refresh", "r2")[0].text == "new"


def test_each_option_picks_its_cache_mode() -> None:
    # Both at once is refused by settings.check_settings (tests/e2e/test_refresh.py).
    assert cache_mode(cast(Any, SimpleNamespace(refresh=True, no_cache=False))) == "refresh"
    assert cache_mode(cast(Any, SimpleNamespace(refresh=False, no_cache=True))) == "off"
    assert cache_mode(cast(Any, SimpleNamespace(refresh=False, no_cache=False))) == "use"
