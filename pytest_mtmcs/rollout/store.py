"""The sqlite store: a content-addressed cache of every model call.

A call's key is the sha256 of (target identity, the full request with images by digest, the
generation parameters), so a re-run with the same settings replays every reply from disk and a
run killed half way resumes where it stopped: each reply is committed in its own transaction
the moment it arrives (WAL mode, so concurrent readers and writers, including other xdist
workers, never see a torn write).

Two connections: reads go through one, writes through the other, so a read on the engine's
event loop never waits behind a write (the engine sends writes to one writer thread). Every
sqlite failure is raised as `StoreError`, naming the store's path and the fix: a store that
cannot be used at all (not sqlite, corrupt, a directory, a read-only folder) is found when it
is opened (`StoreUnusable`, a usage error), one that fails later (a disk gone read-only, a lock
held for longer than a minute) is infrastructure trouble. A file that is not our store is never
written, truncated or deleted.

Each stored answer records when it was written (`created`, from the store's `clock`) and by
which run (`run`), so a run can say how old the answers it read are, and a `--mtmcs-refresh`
run (`fresh_for=` its run id) reads only the answers it made itself while it overwrites the
older ones. The tables and their migration: store_schema.py.

Calls in flight are claimed in the store (`inflight`, with the holder's host, process id and
heartbeat in `holders`), so two runs sharing a store make each call once (see calls.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

from pytest_mtmcs.chat import Conversation, GenParams, Reply
from pytest_mtmcs.rollout.store_errors import (
    FIX,
    StoreError,
    StoreUnusable,
    check_path,
    inspect,
    unusable,
)
from pytest_mtmcs.rollout.store_schema import KEY_VERSION, SCHEMA, SCHEMA_VERSION, migrate

_T = TypeVar("_T")

Stamp = tuple[float, str | None]
"""When a stored answer was written (epoch seconds) and by which run (None: before runs were
recorded)."""

CallClaim = Literal["mine", "held", "done"]
"""What a claim on a call found: this engine now holds it, another holds it, or its reply is
already stored."""


def call_key(target_identity: str, conversation: Conversation, params: GenParams) -> str:
    """Content address of one call."""
    return _address({"target": target_identity, "messages": [m.key_view() for m in conversation],
                     "params": params.model_dump(exclude_none=True)})


def dialogue_key(target_identity: str, modality: str, turns: tuple[str, ...], seen: str,
                 params: GenParams) -> str:
    """Content address of a whole rollout: what the target is, what it is shown (the image's
    digest, or the caption standing in for it) and the user turns. The replies are a function
    of exactly these (and of the calls' own keys, which derive from them)."""
    return _address({"target": target_identity, "modality": modality, "turns": list(turns),
                     "seen": seen, "params": params.model_dump(exclude_none=True)})


def answer_key(rollout_key: str, prompt: str, params: GenParams) -> str:
    """Content address of an intent question's answer: the dialogue's rollout (which fixes the
    target stack, what it was shown and its replies) and the question's prompt text. A cache-warm
    run reads every answer with one bulk query instead of rebuilding each request."""
    return _address({"rollout": rollout_key, "prompt": prompt,
                     "params": params.model_dump(exclude_none=True)})


def _address(payload: dict[str, Any]) -> str:
    """sha256 of the payload's canonical JSON, with the key version in it."""
    blob = json.dumps({"v": KEY_VERSION, **payload}, sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class Store:
    """One sqlite file; safe to share between threads of a process and between processes.

    Raises `StoreUnusable` when `path` cannot be our store (checked before anything is
    written); after that every sqlite failure is a `StoreError` naming `path`.
    """

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        """When a row is written (epoch seconds): the wall clock, or a fixed one in tests."""
        check_path(self.path)
        inspect(self.path, SCHEMA_VERSION)
        self._lock = threading.Lock()
        """Guards the write connection."""
        self._rlock = threading.Lock()
        """Guards the read connection."""
        try:
            self._db = self._connect()
            self._rdb = self._connect()
            with self._lock:
                self._db.executescript(SCHEMA)
                self._db.execute("PRAGMA journal_mode=WAL")
                self.migrated_from = migrate(self._db)
                """The schema the store had when opened (`SCHEMA_VERSION` when current)."""
        except sqlite3.Error as exc:
            self._close_all()
            raise StoreUnusable(unusable(self.path, exc)) from None
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(6).hex()}"
        """This process's name on the calls it claims (see `claim_call`)."""

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), timeout=60.0, check_same_thread=False,
                             isolation_level=None)
        db.execute("PRAGMA busy_timeout=60000")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Turn a sqlite failure into a `StoreError` naming the store and `what` failed."""
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(self.path, what, f"{exc} (check the disk and the file's "
                             f"permissions, or {FIX})") from None

    def _read(self, what: str, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._guard(f"cannot read {what}"), self._rlock:
            return fn(self._rdb)

    def _write(self, what: str, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._guard(f"cannot write {what}"), self._lock:
            return fn(self._db)

    def get(self, key: str, *, fresh_for: str | None = None) -> Reply | None:
        """The cached reply for a call key, or None (see `get_dated`)."""
        found = self.get_dated(key, fresh_for=fresh_for)
        return None if found is None else found[0]

    def get_dated(self, key: str, *,
                  fresh_for: str | None = None) -> tuple[Reply, Stamp] | None:
        """The cached reply for a call key and when and by which run it was stored, or None.
        `fresh_for`: a run id; only a reply that run stored counts (`--mtmcs-refresh`)."""
        row = self._read("a reply", lambda db: db.execute(
            "SELECT reply, created, run FROM calls WHERE key=?" + _RUN, _args(key, fresh_for)
        ).fetchone())
        return (Reply.model_validate_json(row[0]), (float(row[1]), row[2])) if row else None

    def put(self, key: str, target_identity: str, reply: Reply, *, run: str | None = None) -> None:
        """Record a reply (replacing one stored before), and release this process's claim on
        the call, in one committed transaction; `run`: the run that made it."""
        blob = reply.model_dump_json()

        def put(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.execute("INSERT OR REPLACE INTO calls (key, target, reply, created, run) "
                           "VALUES (?, ?, ?, ?, ?)",
                           (key, target_identity, blob, self.clock(), run))
                db.execute("DELETE FROM inflight WHERE key=? AND owner=?", (key, self.owner))
        self._write("a reply", put)

    def put_dialogue(self, key: str, replies: list[Reply], verdicts: list[dict[str, Any]],
                     detector: int, run: str | None = None) -> None:
        """Record a finished rollout's replies, and the refusal detector's verdicts on them
        (valid for detector version `detector` only), under its dialogue key."""
        blob = json.dumps({"replies": [r.model_dump(mode="json") for r in replies],
                           "verdicts": verdicts, "detector": detector})
        self._write("a dialogue", lambda db: db.execute(
            "INSERT OR REPLACE INTO dialogues (key, replies, created, run) VALUES (?, ?, ?, ?)",
            (key, blob, self.clock(), run)))

    def get_dialogues(self, keys: list[str],
                      detector: int) -> dict[str, tuple[list[Reply], list[dict[str, Any]] | None]]:
        """The stored rollouts among `keys` (see `get_dialogues_dated`), without their dates."""
        return {k: (r, v) for k, (r, v, _) in self.get_dialogues_dated(keys, detector).items()}

    def get_dialogues_dated(self, keys: list[str], detector: int, *, fresh_for: str | None = None
                            ) -> dict[str, tuple[list[Reply], list[dict[str, Any]] | None, Stamp]]:
        """The stored rollouts among `keys` in one pass (chunks of 500 keys per query): replies,
        the verdicts when they were made by detector version `detector` (else None), and when
        and by which run they were stored. `fresh_for`: only those that run stored."""
        out: dict[str, tuple[list[Reply], list[dict[str, Any]] | None, Stamp]] = {}
        for key, blob, created in self._rows_by_key(
                "SELECT key, replies, created, run FROM dialogues", keys, fresh_for):
            data = json.loads(blob)
            if isinstance(data, list):  # written before verdicts were stored
                data = {"replies": data}
            replies = [Reply.model_validate(r) for r in data["replies"]]
            out[key] = (replies, data["verdicts"] if data.get("detector") == detector else None,
                        created)
        return out

    def put_answer(self, key: str, answer: str, run: str | None = None) -> None:
        """Record an intent question's answer text under its `answer_key`."""
        self._write("an answer", lambda db: db.execute(
            "INSERT OR REPLACE INTO answers (key, answer, created, run) VALUES (?, ?, ?, ?)",
            (key, answer, self.clock(), run)))

    def get_answers(self, keys: list[str]) -> dict[str, str]:
        """The stored answers among `keys` in one pass (chunks of 500 keys per query)."""
        return {k: a for k, (a, _) in self.get_answers_dated(keys).items()}

    def get_answers_dated(self, keys: list[str], *,
                          fresh_for: str | None = None) -> dict[str, tuple[str, Stamp]]:
        """The stored answers among `keys` and when and by which run each was stored
        (`fresh_for`: only those that run stored)."""
        return {k: (a, c) for k, a, c in self._rows_by_key(
            "SELECT key, answer, created, run FROM answers", keys, fresh_for)}

    def _rows_by_key(self, select: str, keys: list[str],
                     fresh_for: str | None = None) -> list[tuple[str, str, Stamp]]:
        """The (key, text, (created, run)) rows of `select` (which reads key, text, created and
        run of one table) whose `key` is among `keys` (and, with `fresh_for`, that run wrote),
        500 keys per query (sqlite bounds the parameters of one statement)."""
        rows: list[tuple[str, str, Stamp]] = []
        run = "" if fresh_for is None else " AND run=?"
        for i in range(0, len(keys), 500):
            chunk = [*keys[i:i + 500], *([] if fresh_for is None else [fresh_for])]
            marks = ",".join("?" * min(500, len(keys) - i))
            found = self._read("stored rollouts", lambda db, c=chunk, m=marks: db.execute(  # type: ignore[misc]
                f"{select} WHERE key IN ({m}){run}", c).fetchall())
            rows += [(k, text, (float(created), by)) for k, text, created, by in found]
        return rows

    # ---------------------------------------------------------------- calls in flight (runs)
    def claim_call(self, key: str, *, stale_after_s: float,
                   fresh_for: str | None = None) -> CallClaim:
        """Claim the call `key` for this process (one transaction, so atomic across processes):
        `done` when its reply is stored (with `fresh_for`: by that run), `mine` when this
        process now holds it (nobody did, or the holder stopped: its process is gone, or its
        heartbeat is older than `stale_after_s`), else `held`."""
        def claim(db: sqlite3.Connection) -> CallClaim:
            with _transaction(db):
                if db.execute("SELECT 1 FROM calls WHERE key=?" + _RUN,
                              _args(key, fresh_for)).fetchone():
                    return "done"
                db.execute("INSERT OR IGNORE INTO inflight (key, owner, since) VALUES (?, ?, ?)",
                           (key, self.owner, time.time()))
                holder = str(db.execute("SELECT owner FROM inflight WHERE key=?",
                                        (key,)).fetchone()[0])
                if holder == self.owner:
                    return "mine"
                if _alive(db, holder, stale_after_s):
                    return "held"
                db.execute("UPDATE inflight SET owner=?, since=? WHERE key=?",
                           (self.owner, time.time(), key))
                return "mine"
        return self._write("a call claim", claim)

    def call_waiting(self, key: str, *, stale_after_s: float,
                     fresh_for: str | None = None) -> tuple[Reply | None, bool]:
        """For a process waiting on another's claim: (the reply if stored, with `fresh_for` by
        that run; whether a live holder still has the call in flight). Reads only."""
        def look(db: sqlite3.Connection) -> tuple[str | None, bool]:
            row = db.execute("SELECT reply FROM calls WHERE key=?" + _RUN,
                             _args(key, fresh_for)).fetchone()
            if row is not None:
                return str(row[0]), False
            held = db.execute("SELECT owner FROM inflight WHERE key=?", (key,)).fetchone()
            return None, held is not None and _alive(db, str(held[0]), stale_after_s)
        blob, held = self._read("a reply", look)
        return (Reply.model_validate_json(blob) if blob is not None else None), held

    def release_call(self, key: str) -> None:
        """Give up this process's claim on `key` (its call failed)."""
        self._write("a call claim", lambda db: db.execute(
            "DELETE FROM inflight WHERE key=? AND owner=?", (key, self.owner)))

    def beat_holder(self) -> None:
        """Say this process is alive (its claimed calls are in flight)."""
        self._write("the heartbeat", lambda db: db.execute(
            "INSERT OR REPLACE INTO holders (owner, host, pid, heartbeat) VALUES (?, ?, ?, ?)",
            (self.owner, socket.gethostname(), os.getpid(), time.time())))

    def release_all(self) -> None:
        """Drop every claim of this process and its heartbeat (the engine stopped)."""
        def drop(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.execute("DELETE FROM inflight WHERE owner=?", (self.owner,))
                db.execute("DELETE FROM holders WHERE owner=?", (self.owner,))
        self._write("the call claims", drop)

    # ---------------------------------------------------------------- work queue (xdist)
    # Each method is one statement, so each is atomic across processes (see workqueue.py).
    def queue_claim(self, run: str, unit: str, owner: str) -> tuple[str, bool]:
        """Claim `unit` for `owner` unless someone holds it; returns (holder, done)."""
        def claim(db: sqlite3.Connection) -> tuple[str, bool]:
            db.execute("INSERT OR IGNORE INTO claims (run, unit, owner) VALUES (?, ?, ?)",
                       (run, unit, owner))
            row = db.execute("SELECT owner, done FROM claims WHERE run=? AND unit=?",
                             (run, unit)).fetchone()
            return str(row[0]), bool(row[1])
        return self._write("a row claim", claim)

    def queue_state(self, run: str, unit: str) -> tuple[str | None, bool]:
        """(holder, done) of a unit; (None, False) when unclaimed."""
        row = self._read("a row claim", lambda db: db.execute(
            "SELECT owner, done FROM claims WHERE run=? AND unit=?", (run, unit)).fetchone())
        return (None, False) if row is None else (str(row[0]), bool(row[1]))

    def queue_take_over(self, run: str, unit: str, old: str, new: str) -> bool:
        """Move an unfinished unit from `old` to `new`, only if `old` still holds it."""
        cur = self._write("a row claim", lambda db: db.execute(
            "UPDATE claims SET owner=? WHERE run=? AND unit=? AND owner=? AND done=0",
            (new, run, unit, old)))
        return cur.rowcount == 1

    def queue_done(self, run: str, unit: str, owner: str) -> None:
        """Mark a unit done (by its holder)."""
        self._write("a row claim", lambda db: db.execute(
            "UPDATE claims SET done=1 WHERE run=? AND unit=? AND owner=?", (run, unit, owner)))

    def queue_beat(self, run: str, owner: str, now: float) -> None:
        """Record that `owner` is alive."""
        self._write("the heartbeat", lambda db: db.execute(
            "INSERT OR REPLACE INTO owners (run, owner, heartbeat) VALUES (?, ?, ?)",
            (run, owner, now)))

    def queue_heartbeat(self, run: str, owner: str) -> float | None:
        """When `owner` last said it was alive."""
        row = self._read("the heartbeat", lambda db: db.execute(
            "SELECT heartbeat FROM owners WHERE run=? AND owner=?", (run, owner)).fetchone())
        return None if row is None else float(row[0])

    def count(self) -> int:
        """Number of cached calls."""
        return int(self._read("the calls", lambda db: db.execute(
            "SELECT COUNT(*) FROM calls").fetchone()[0]))

    def close(self) -> None:
        """Close the connections."""
        with self._lock, self._rlock:
            self._close_all()

    def _close_all(self) -> None:
        for db in (getattr(self, "_db", None), getattr(self, "_rdb", None)):
            if db is not None:
                db.close()


_RUN = " AND (? IS NULL OR run=?)"
"""The condition of a read `fresh_for` a run (none: any row), with `_args`."""


def _args(key: str, fresh_for: str | None) -> tuple[str | None, ...]:
    return key, fresh_for, fresh_for


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taking the write lock up front (no upgrade deadlock)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _alive(db: sqlite3.Connection, owner: str, stale_after_s: float) -> bool:
    """Whether the process `owner` (a holder of calls) is alive: its heartbeat is recent and,
    on this host, its process still exists."""
    row = db.execute("SELECT host, pid, heartbeat FROM holders WHERE owner=?",
                     (owner,)).fetchone()
    if row is None or time.time() - float(row[2]) > stale_after_s:
        return False
    host, pid = str(row[0]), int(row[1])
    return host != socket.gethostname() or _pid_alive(pid)


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would end the process there: trust the heartbeat
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, owned by someone else
        return True
    return True
