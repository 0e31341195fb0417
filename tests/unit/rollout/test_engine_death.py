"""When the store fails under the engine, nothing waits forever: the shared future of a request
whose reply cannot be written is settled, and an engine whose worker loop or heartbeat fails
settles every open future with the reason and ends its thread.

The store faults are real: a trigger in the store file makes sqlite refuse the write, exactly
as a full disk or a held lock would reach the engine. Every wait below is on an event (a
future, `Engine.finished`); the timeouts only turn a hang into a failure.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from pytest_mtmcs.chat import Conversation, GenParams, Reply, user
from pytest_mtmcs.dataset import DataSelection, load_cases
from pytest_mtmcs.rollout.calls import CallCache
from pytest_mtmcs.rollout.engine import Engine, EngineStopped
from pytest_mtmcs.rollout.progress import Progress
from pytest_mtmcs.rollout.store import Store
from pytest_mtmcs.rollout.store_errors import StoreError
from pytest_mtmcs.rollout.workqueue import WorkQueue
from pytest_mtmcs.targets.base import Target

HANG_S = 60.0
"""Only a hang gets anywhere near this."""


def refuse(store: Path, table: str, *, when: str = "1", event: str = "INSERT") -> None:
    """Make sqlite refuse every `event` on `table` (while `when` holds) in the store file."""
    with closing(sqlite3.connect(store)) as db, db:
        db.execute(f"CREATE TRIGGER refuse_{table} BEFORE {event} ON {table} WHEN {when} "
                   f"BEGIN SELECT RAISE(ABORT, 'injected: database is locked'); END")


class GatedTarget(Target):
    """Answers once `gate` opens; `entered` is set when the first call arrives."""

    spec = "gated"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.calls = 0
        self.engine: Engine | None = None
        self.late = 0
        """Calls that started after `engine` had failed (there must be none)."""

    async def respond(self, conversation: Conversation, params: GenParams) -> Reply:
        self.calls += 1
        if self.engine is not None and self.engine.failure is not None:
            self.late += 1
        self.entered.set()
        await self.gate.wait()
        return Reply(text="Sure, here you go.")


def test_a_reply_that_cannot_be_stored_settles_every_waiter(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = Store(path)
    refuse(path, "calls")
    told: list[StoreError] = []

    async def main() -> list[BaseException | tuple[Reply, bool]]:
        target = GatedTarget()
        cache = CallCache(store, Progress(), concurrency=2, target=target,
                          on_store_error=told.append)
        asks = [asyncio.create_task(cache.call(target, (user("hi"),), GenParams()))
                for _ in range(3)]
        await target.entered.wait()  # the other two joined the first's flight by now
        target.gate.set()
        results = await asyncio.wait_for(asyncio.gather(*asks, return_exceptions=True), HANG_S)
        assert target.calls == 1
        return results

    results = asyncio.run(main())
    assert all(isinstance(r, StoreError) for r in results), results
    assert f"store {path}: cannot write a reply" in str(results[0])
    assert "injected: database is locked" in str(results[0])
    assert len(told) == 1  # the engine is told once, whoever catches what


def _cases(dataset: Path) -> list[object]:
    return list(load_cases(DataSelection(data=str(dataset), splits=("type_a",), limit=1)))


def _assert_dead(eng: Engine, cause: str) -> None:
    eng.finished.result(timeout=HANG_S)  # the thread ended
    assert not eng.alive
    assert isinstance(eng.failure, StoreError) and cause in str(eng.failure)
    for job_id, question in (("type_a-0000-unimodal-safe", "mcq0"),
                             ("type_a-0000-multimodal-unsafe", "tf0")):
        with pytest.raises(EngineStopped, match="the rollout engine stopped: store .*" + cause):
            eng.dialogue(job_id).result(timeout=HANG_S)
        with pytest.raises(EngineStopped):
            eng.question(job_id, question).result(timeout=HANG_S)


def test_a_row_claim_that_fails_ends_the_engine_and_settles_every_future(
        dataset: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = Store(path)
    refuse(path, "claims")  # the worker loop's first row claim fails
    eng = Engine(GatedTarget(), store, params=GenParams(), concurrency=2,
                 queue=WorkQueue(store, "run-1", "gw0"))
    for case in _cases(dataset):
        eng.add(case)  # type: ignore[arg-type]
    eng.start()
    _assert_dead(eng, "cannot write a row claim")
    eng.stop()


def test_a_heartbeat_that_fails_ends_the_engine_and_settles_every_future(
        dataset: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = Store(path)
    queue = WorkQueue(store, "run-1", "gw0")  # its first beat is stored; every later one fails
    refuse(path, "owners", when="EXISTS (SELECT 1 FROM owners WHERE owner = NEW.owner)")
    eng = Engine(GatedTarget(), store, params=GenParams(), concurrency=2, queue=queue,
                 prefetch=False)  # nothing rolls out: only the heartbeat touches the store
    for case in _cases(dataset):
        eng.add(case)  # type: ignore[arg-type]
    eng.start()
    _assert_dead(eng, "cannot write the heartbeat")
    eng.stop()


def test_a_dialogue_that_cannot_be_stored_stops_the_engine(dataset: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = Store(path)
    refuse(path, "dialogues")
    target = GatedTarget()
    target.gate.set()
    eng = Engine(target, store, params=GenParams(), concurrency=1)
    target.engine = eng
    for case in _cases(dataset):
        eng.add(case)  # type: ignore[arg-type]
    eng.start()
    _assert_dead(eng, "cannot write a dialogue")
    assert target.calls >= 3 and target.late == 0  # no call started once the engine had died
    eng.stop()
