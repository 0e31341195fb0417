"""Hostile stores and failing rollouts: each case is a real `pytest --mtmcs` run, table-driven.

Store cases: `--mtmcs-store` names something that cannot be our store (a directory, a report, an
image, a corrupt or truncated store, another program's sqlite database, a store of a future
schema, a device, a pipe, a path under a file, a read-only folder). The run stops before
collecting anything with exit code 4 and one message naming the option, the path and the fix;
no traceback; the file that was there is byte for byte unchanged and nothing is written beside
it. These run in-process on `baseline:refuse`: nothing leaves the machine.

Rollout cases: a real `MockOpenAIServer` that fails only on intent questions, only on one
dialogue turn, on every call; a store whose writes start failing mid-run. Exit code 75, the
message names the server's URL or the store's path, no traceback, the rows stored before the
run still there. These run as subprocesses (the HTTP client cannot be imported twice in-process);
a hang fails the test (`_bounded.HANG_S`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _bounded import run_bounded
from _data import png_bytes, small_dataset

from pytest_mtmcs.chat import Reply
from pytest_mtmcs.errors import EXIT_INFRA
from pytest_mtmcs.rollout.store import Store
from pytest_mtmcs.testing import FaultPlan, MockOpenAIServer

USAGE = 4


@contextmanager
def connected(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite connection, committed and closed on leaving (so sqlite checkpoints its
    journal now, not whenever the object happens to be collected)."""
    db = sqlite3.connect(path)
    try:
        with db:
            yield db
    finally:
        db.close()


def _our_store(path: Path) -> bytes:
    """The bytes of a real store holding one reply, checkpointed into its main file."""
    store = Store(path)
    store.put("k" * 64, "earlier-run", Reply(text="an earlier reply"))
    store.close()
    with connected(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.read_bytes()


# ------------------------------------------------------------------ store builders
# Each gets the sandbox and returns the value of --mtmcs-store; what it names is left as built.

def a_directory(tmp: Path) -> str:
    (tmp / "runs").mkdir()
    (tmp / "runs" / "keep.txt").write_text("not ours")
    return str(tmp / "runs")


def a_json_report(tmp: Path) -> str:
    (tmp / "report.json").write_text(json.dumps({"summary": [], "note": "an earlier report"}))
    return str(tmp / "report.json")


def an_image(tmp: Path) -> str:
    (tmp / "photo.sqlite").write_bytes(png_bytes(3))
    return str(tmp / "photo.sqlite")


def a_gzipped_backup(tmp: Path) -> str:
    (tmp / "backup.sqlite").write_bytes(gzip.compress(_our_store(tmp / "orig.sqlite")))
    (tmp / "orig.sqlite").unlink()
    return str(tmp / "backup.sqlite")


def a_truncated_store(tmp: Path) -> str:
    blob = _our_store(tmp / "store.sqlite")
    (tmp / "store.sqlite").write_bytes(blob[:100])  # the header, then nothing
    return str(tmp / "store.sqlite")


def a_corrupt_store(tmp: Path) -> str:
    blob = _our_store(tmp / "store.sqlite")
    (tmp / "store.sqlite").write_bytes(blob[:100] + b"\xff" * 400 + blob[500:])  # schema page hit
    return str(tmp / "store.sqlite")


def a_foreign_database(tmp: Path) -> str:
    with connected(tmp / "app.db") as db:
        db.execute("CREATE TABLE users (name TEXT, password_hash TEXT)")
        db.execute("INSERT INTO users VALUES ('ada', 'x')")
    return str(tmp / "app.db")


def a_future_schema(tmp: Path) -> str:
    _our_store(tmp / "store.sqlite")
    with connected(tmp / "store.sqlite") as db:
        db.execute("UPDATE meta SET v='99' WHERE k='schema'")
    return str(tmp / "store.sqlite")


def under_a_file(tmp: Path) -> str:
    (tmp / "notes.txt").write_text("a file, not a folder")
    return str(tmp / "notes.txt" / "store.sqlite")


def a_read_only_folder(tmp: Path) -> str:
    if os.geteuid() == 0:  # root writes through permission bits: use a folder no one can write
        return "/proc/sys/mtmcs-store.sqlite"
    folder = tmp / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    return str(folder / "store.sqlite")


def the_null_device(tmp: Path) -> str:
    return os.devnull


def a_named_pipe(tmp: Path) -> str:
    os.mkfifo(tmp / "pipe.sqlite")
    return str(tmp / "pipe.sqlite")


def a_link_to_a_directory(tmp: Path) -> str:
    (tmp / "real").mkdir()
    (tmp / "link.sqlite").symlink_to(tmp / "real", target_is_directory=True)
    return str(tmp / "link.sqlite")


def an_empty_value(tmp: Path) -> str:
    return ""


@dataclass(frozen=True)
class StoreCase:
    build: Callable[[Path], str]
    expect: tuple[str, ...]
    """Fragments the message holds besides `--mtmcs-store` and the path."""


STORE_CASES = {
    "directory": StoreCase(a_directory, ("is a directory", "names a file")),
    "json-report": StoreCase(a_json_report, ("not an sqlite store", "left untouched")),
    "png-image": StoreCase(an_image, ("not an sqlite store",)),
    "gzipped-backup": StoreCase(a_gzipped_backup, ("not an sqlite store",)),
    "truncated-store": StoreCase(a_truncated_store, ("corrupt", "move it away")),
    "corrupt-store": StoreCase(a_corrupt_store, ("corrupt", "left untouched")),
    "foreign-sqlite": StoreCase(a_foreign_database, ("sqlite database of something else",)),
    "future-schema": StoreCase(a_future_schema, ("has schema 99",)),
    "path-under-a-file": StoreCase(under_a_file, ("cannot create its folder",)),
    "read-only-folder": StoreCase(a_read_only_folder, ("read-only folder", "writable folder")),
    "dev-null": StoreCase(the_null_device, ("not a regular file",)),
    "named-pipe": StoreCase(a_named_pipe, ("not a regular file",)),
    "link-to-directory": StoreCase(a_link_to_a_directory, ("is a directory",)),
    "empty-value": StoreCase(an_empty_value, ()),
}


EMPTY = hashlib.sha256(b"").hexdigest()


def _snapshot(path: Path) -> dict[str, Any]:
    """What lies at `path`, and beside it under sqlite's journal names, to compare before and
    after. (Not `-shm`: sqlite's shared-memory index of the journal, which any reader, even a
    read-only one, rewrites; it holds no data.)"""
    def one(p: Path) -> Any:
        if p.is_symlink():
            return ("link", os.readlink(p))
        if p.is_file():
            return hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_dir():
            return sorted((c.name, one(c)) for c in p.iterdir())
        return "absent" if not p.exists() else "special"
    return {suffix: one(Path(f"{path}{suffix}")) for suffix in ("", "-wal", "-journal")}


def assert_unchanged(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Every byte as it was; a write-ahead journal may have appeared only empty (a read-only
    sqlite reader of a store in WAL mode creates one), never holding anything."""
    if before["-wal"] == "absent" and after["-wal"] == EMPTY:
        after = {**after, "-wal": "absent"}
    assert after == before


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text and "INTERNALERROR" not in text, text[-3000:]


@pytest.mark.parametrize("name", list(STORE_CASES))
def test_a_store_that_cannot_be_ours_is_refused_before_anything_runs(
        pytester: pytest.Pytester, tmp_path: Path, dataset: Path, name: str) -> None:
    case = STORE_CASES[name]
    store = case.build(tmp_path)
    before = _snapshot(Path(store)) if store and not Path(store).is_fifo() else None
    result = pytester.runpytest("--mtmcs", f"--mtmcs-data={dataset}", "--mtmcs-target=baseline:refuse",
                                f"--mtmcs-store={store}", "-p", "no:cacheprovider")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == USAGE, out[-3000:]
    assert "--mtmcs-store" in out and store in out
    for fragment in case.expect:
        assert fragment in out, (fragment, out[-2000:])
    assert_no_traceback(out)
    assert "mtmcs[" not in result.stdout.str()  # not one item ran
    if before is not None:
        assert_unchanged(before, _snapshot(Path(store)))  # left as it was


# ------------------------------------------------------------------ failing rollouts

def _is_question(body: dict[str, Any]) -> bool:
    text = json.dumps(body.get("messages", []))
    return "Question: " in text or "Statement: " in text


def questions_fail(body: dict[str, Any]) -> str:
    if _is_question(body):
        raise RuntimeError("the intent endpoint is broken")
    return "Sure, here is how."


def third_turn_fails(body: dict[str, Any]) -> str:
    if not _is_question(body) and "r3 turn" in json.dumps(body.get("messages", [])[-1:]):
        raise RuntimeError("turn three is broken")
    return "Sure, here is how."


def _refuse_replies_after(store: Path, n: int) -> None:
    with connected(store) as db:
        db.execute(f"CREATE TRIGGER full BEFORE INSERT ON calls WHEN (SELECT COUNT(*) FROM calls) "
                   f">= {n} BEGIN SELECT RAISE(ABORT, 'injected: disk I/O error'); END")


@dataclass(frozen=True)
class RolloutCase:
    reply: Callable[[dict[str, Any]], str] | None = None
    plan: FaultPlan | None = None
    args: tuple[str, ...] = ()
    writes_fail_after: int | None = None
    """Replies the store accepts (the earlier run's one included) before refusing every write."""
    expect: tuple[str, ...] = ("{url}",)
    """Fragments of the output; `{url}` is the server's, `{store}` the store's path."""


ROLLOUT_CASES = {
    "questions-fail": RolloutCase(questions_fail, expect=("{url}", "the intent endpoint is broken")),
    "questions-fail-refusal-gate": RolloutCase(questions_fail, args=("--mtmcs-min-refusal-rate=0",)),
    "questions-fail-over-refusal-gate": RolloutCase(questions_fail, args=("--mtmcs-max-over-refusal=1",)),
    "questions-fail-strict": RolloutCase(questions_fail, args=("--mtmcs-strict",)),
    "third-turn-fails": RolloutCase(third_turn_fails, expect=("{url}", "turn three is broken")),
    "every-call-500": RolloutCase(plan=FaultPlan.always("http_500")),
    "store-writes-fail-mid-run": RolloutCase(writes_fail_after=4, expect=(
        "{store}", "cannot write a reply", "injected: disk I/O error", "stopped the run")),
    "store-writes-fail-at-once": RolloutCase(writes_fail_after=1, args=("--mtmcs-min-refusal-rate=0",),
                                             expect=("{store}", "cannot write a reply")),
}


@pytest.mark.parametrize("name", list(ROLLOUT_CASES))
def test_a_failing_rollout_exits_75_naming_what_failed(pytester: pytest.Pytester, tmp_path: Path,
                                                        name: str) -> None:
    case = ROLLOUT_CASES[name]
    data = small_dataset(tmp_path / "ds", 1)
    store = tmp_path / "store.sqlite"
    _our_store(store)  # an earlier run's reply is in it
    if case.writes_fail_after is not None:
        _refuse_replies_after(store, case.writes_fail_after)
    with MockOpenAIServer(reply=case.reply, faults=case.plan) as srv:
        result = run_bounded(pytester, data, "--mtmcs-retries=0", "--mtmcs-split=type_a",
                             "--mtmcs-concurrency=2", *case.args,
                             target=f"openai+{srv.base_url}:acme/vlm", store=store)
        url = srv.base_url
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == EXIT_INFRA, out[-3000:]
    for fragment in case.expect:
        text = fragment.format(url=url, store=store)
        assert text in out, (text, out[-2000:])
    assert_no_traceback(out)
    with connected(store) as db:  # the earlier run's reply is still there
        assert db.execute("SELECT reply FROM calls WHERE key=?", ("k" * 64,)).fetchone() is not None
