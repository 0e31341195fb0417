"""The store's tables, its schema version and the migration of stores of an earlier schema.

Schema 2 added a `run` column to the answer tables (`calls`, `dialogues`, `answers`): the run
that wrote the row, so a `--mtmcs-refresh` run tells an answer it asked for itself (or another
xdist worker of the same run did) from one stored before it started. A store of schema 1 is
migrated in place when it is opened (one transaction, so two processes opening it at once
migrate it once); its rows keep their `created` time and get no run. A store of a newer
schema than this version reads is refused, untouched (see `store_errors.inspect`).

The content addresses of the calls do not depend on the schema (`KEY_VERSION`): migrating a
store keeps every stored answer readable.
"""

from __future__ import annotations

import sqlite3

__all__ = ["ANSWER_TABLES", "KEY_VERSION", "SCHEMA", "SCHEMA_VERSION", "migrate"]

SCHEMA_VERSION = 2
"""The version of the tables (the `schema` row of `meta`)."""
KEY_VERSION = 1
"""The version of the content addresses (part of every key's hash): changing it makes every
stored answer unreachable, so it changes only when what a key means changes."""
ANSWER_TABLES = ("calls", "dialogues", "answers")
"""The tables that hold stored answers, each with `created` (epoch seconds, when the row was
written) and `run` (the run that wrote it; NULL in rows migrated from schema 1)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dialogues (
    key TEXT PRIMARY KEY,
    replies TEXT NOT NULL,
    created REAL NOT NULL,
    run TEXT
);
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    answer TEXT NOT NULL,
    created REAL NOT NULL,
    run TEXT
);
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    reply TEXT NOT NULL,
    created REAL NOT NULL,
    run TEXT
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
CREATE TABLE IF NOT EXISTS inflight (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    since REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS holders (
    owner TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    heartbeat REAL NOT NULL
);
"""


def migrate(db: sqlite3.Connection) -> int:
    """Bring an open store (its tables created by `SCHEMA`) to `SCHEMA_VERSION`, in one write
    transaction; returns the version it had (`SCHEMA_VERSION` for a new store). Idempotent: a
    column already there is not added again."""
    db.execute("BEGIN IMMEDIATE")
    try:
        row = db.execute("SELECT v FROM meta WHERE k='schema'").fetchone()
        found = SCHEMA_VERSION if row is None else int(row[0])
        if found < 2:
            for table in ANSWER_TABLES:
                columns = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
                if "run" not in columns:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN run TEXT")
        if found < SCHEMA_VERSION or row is None:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return found
