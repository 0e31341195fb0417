"""The sqlite store: a content-addressed cache of every model call.

A call's key is the sha256 of (target identity, the full request with images by digest, the
generation parameters), so a re-run with the same settings replays every reply from disk and a
run killed half way resumes where it stopped: each reply is committed in its own transaction
the moment it arrives (WAL mode, so concurrent readers and writers, including other xdist
workers, never see a torn write).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from pytest_mtmcs.chat import Conversation, GenParams, Reply

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dialogues (
    key TEXT PRIMARY KEY,
    replies TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    answer TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    reply TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    run TEXT NOT NULL,
    unit TEXT NOT NULL,
    owner TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run, unit)
);
CREATE TABLE IF NOT EXISTS owners (
    run TEXT NOT NULL,
    owner TEXT NOT NULL,
    heartbeat REAL NOT NULL,
    PRIMARY KEY (run, owner)
);
"""


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
    """sha256 of the payload's canonical JSON, with the schema version in it."""
    blob = json.dumps({"v": SCHEMA_VERSION, **payload}, sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class Store:
    """One sqlite file; safe to share between threads of a process and between processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), timeout=60.0, check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=60000")
        with self._lock:
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT v FROM meta WHERE k='schema'").fetchone()
            if row is None:
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)",
                                 (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise RuntimeError(f"store {self.path} has schema {row[0]}, this version reads "
                                   f"{SCHEMA_VERSION}; use another --mtmcs-store or delete it")

    def get(self, key: str) -> Reply | None:
        """The cached reply for a call key, or None."""
        with self._lock:
            row = self._db.execute("SELECT reply FROM calls WHERE key=?", (key,)).fetchone()
        return Reply.model_validate_json(row[0]) if row else None

    def put(self, key: str, target_identity: str, reply: Reply) -> None:
        """Record a reply (its own committed transaction)."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO calls (key, target, reply, created) VALUES (?, ?, ?, ?)",
                (key, target_identity, reply.model_dump_json(), time.time()),
            )

    def put_dialogue(self, key: str, replies: list[Reply], verdicts: list[dict[str, Any]],
                     detector: int) -> None:
        """Record a finished rollout's replies, and the refusal detector's verdicts on them
        (valid for detector version `detector` only), under its dialogue key."""
        blob = json.dumps({"replies": [r.model_dump(mode="json") for r in replies],
                           "verdicts": verdicts, "detector": detector})
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO dialogues (key, replies, created) VALUES (?, ?, ?)",
                             (key, blob, time.time()))

    def get_dialogues(self, keys: list[str],
                      detector: int) -> dict[str, tuple[list[Reply], list[dict[str, Any]] | None]]:
        """The stored rollouts among `keys` in one pass (chunks of 500 keys per query): replies,
        and the verdicts when they were made by detector version `detector` (else None)."""
        out: dict[str, tuple[list[Reply], list[dict[str, Any]] | None]] = {}
        for key, blob in self._rows_by_key("SELECT key, replies FROM dialogues", keys):
            data = json.loads(blob)
            if isinstance(data, list):  # written before verdicts were stored
                data = {"replies": data}
            replies = [Reply.model_validate(r) for r in data["replies"]]
            out[key] = (replies, data["verdicts"] if data.get("detector") == detector else None)
        return out

    def put_answer(self, key: str, answer: str) -> None:
        """Record an intent question's answer text under its `answer_key`."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO answers (key, answer, created) VALUES (?, ?, ?)",
                             (key, answer, time.time()))

    def get_answers(self, keys: list[str]) -> dict[str, str]:
        """The stored answers among `keys` in one pass (chunks of 500 keys per query)."""
        return dict(self._rows_by_key("SELECT key, answer FROM answers", keys))

    def _rows_by_key(self, select: str, keys: list[str]) -> list[tuple[str, str]]:
        """The rows of `select` (which reads one table) whose `key` is among `keys`, 500 keys
        per query (sqlite bounds the parameters of one statement)."""
        rows: list[tuple[str, str]] = []
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            with self._lock:
                rows += self._db.execute(
                    f"{select} WHERE key IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        return rows

    # ---------------------------------------------------------------- work queue (xdist)
    # Each method is one statement, so each is atomic across processes (see workqueue.py).
    def queue_claim(self, run: str, unit: str, owner: str) -> tuple[str, bool]:
        """Claim `unit` for `owner` unless someone holds it; returns (holder, done)."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO claims (run, unit, owner) VALUES (?, ?, ?)",
                             (run, unit, owner))
            row = self._db.execute("SELECT owner, done FROM claims WHERE run=? AND unit=?",
                                   (run, unit)).fetchone()
        return str(row[0]), bool(row[1])

    def queue_state(self, run: str, unit: str) -> tuple[str | None, bool]:
        """(holder, done) of a unit; (None, False) when unclaimed."""
        with self._lock:
            row = self._db.execute("SELECT owner, done FROM claims WHERE run=? AND unit=?",
                                   (run, unit)).fetchone()
        return (None, False) if row is None else (str(row[0]), bool(row[1]))

    def queue_take_over(self, run: str, unit: str, old: str, new: str) -> bool:
        """Move an unfinished unit from `old` to `new`, only if `old` still holds it."""
        with self._lock:
            cur = self._db.execute("UPDATE claims SET owner=? WHERE run=? AND unit=? AND owner=? "
                                   "AND done=0", (new, run, unit, old))
        return cur.rowcount == 1

    def queue_done(self, run: str, unit: str, owner: str) -> None:
        """Mark a unit done (by its holder)."""
        with self._lock:
            self._db.execute("UPDATE claims SET done=1 WHERE run=? AND unit=? AND owner=?",
                             (run, unit, owner))

    def queue_beat(self, run: str, owner: str, now: float) -> None:
        """Record that `owner` is alive."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO owners (run, owner, heartbeat) "
                             "VALUES (?, ?, ?)", (run, owner, now))

    def queue_heartbeat(self, run: str, owner: str) -> float | None:
        """When `owner` last said it was alive."""
        with self._lock:
            row = self._db.execute("SELECT heartbeat FROM owners WHERE run=? AND owner=?",
                                   (run, owner)).fetchone()
        return None if row is None else float(row[0])

    def count(self) -> int:
        """Number of cached calls."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()
