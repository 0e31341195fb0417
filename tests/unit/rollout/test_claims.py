"""Row claims of xdist workers' engines, through a real store's work queue."""

from __future__ import annotations

from pathlib import Path

from pytest_mtmcs.rollout.claims import RowClaims
from pytest_mtmcs.rollout.store import Store
from pytest_mtmcs.rollout.workqueue import WorkQueue


def _claims(store: Store, owner: str) -> RowClaims:
    claims = RowClaims(WorkQueue(store, "run-1", owner))
    for key in ("a/safe", "a/unsafe", "dpp/a/safe"):
        claims.add("type_a/1", key)
    claims.add("type_a/2", "b/safe")
    return claims


def test_the_first_worker_holds_a_row_and_rolls_its_dialogues_next(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    gw0, gw1 = _claims(store, "gw0"), _claims(store, "gw1")
    assert gw0.holds("type_a/1", lambda key: False) == (True, ["a/safe", "a/unsafe", "dpp/a/safe"])
    assert gw0.holds("type_a/1", lambda key: False) == (True, [])  # asked once, remembered
    assert gw1.holds("type_a/1", lambda key: False) == (False, [])
    assert gw0.is_held("type_a/1") and not gw1.is_held("type_a/1")
    assert not gw0.is_held("type_a/2")  # never asked


def test_a_row_is_done_when_its_last_unstarted_job_finishes(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    gw0 = _claims(store, "gw0")
    gw0.holds("type_a/1", lambda key: key == "a/safe")  # already started: not counted
    assert gw0.job_done("type_a/1") is False
    assert gw0.job_done("type_a/1") is True
    gw0.row_done("type_a/1")
    assert store.queue_state("run-1", "type_a/1") == ("gw0", True)


def test_a_taken_over_row_finishes_with_its_one_job(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    gw1 = _claims(store, "gw1")
    gw1.took_over("type_a/2")
    assert gw1.is_held("type_a/2")
    assert gw1.job_done("type_a/2") is True
