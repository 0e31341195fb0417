"""The store's failures, and the checks made before the store is opened for writing.

`StoreUnusable` (a usage error, exit 4) is raised when the path cannot be our store: a
directory, a device or pipe, a file that is not sqlite, another program's sqlite database, a
corrupt store, a store of another schema, a folder that cannot be created or written.
`check_path` looks at the path without sqlite; `inspect` reads an existing file through a
read-only connection. So it is found before anything is written, and a file that is not our
store is never written, truncated or deleted. `StoreError` (infrastructure trouble, exit 75)
is a store that worked when opened and failed later (a disk gone read-only or full, a lock
held for longer than sqlite's busy timeout).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from pytest_mtmcs.errors import MtmcsError

__all__ = ["FIX", "SQLITE_HEADER", "StoreError", "StoreUnusable", "check_path", "inspect",
           "unusable"]

SQLITE_HEADER = b"SQLite format 3\x00"
FIX = "pass another --mtmcs-store (a new file is created)"


class StoreError(MtmcsError):
    """The store could not be read or written during the run (infrastructure trouble, exit
    75): the message names the store's path, what failed and the fix."""

    def __init__(self, path: Path, what: str, cause: object) -> None:
        super().__init__(f"store {path}: {what}: {cause}")
        self.path = path


class StoreUnusable(MtmcsError):
    """The store cannot be used at all, found when it is opened (a usage error, exit 4):
    not an sqlite file, corrupt, a directory, in a folder that cannot be written."""


def check_path(path: Path) -> None:
    """Refuse, before sqlite touches anything, a path that cannot be our store: a directory, a
    file that is not sqlite, a folder that cannot be created or written (sqlite keeps its
    journal files beside the store)."""
    try:
        is_dir, exists, regular = path.is_dir(), path.exists(), path.is_file()
    except (OSError, ValueError) as exc:  # an embedded NUL, a name too long
        raise StoreUnusable(f"store {path!r} is not a usable path ({exc}): {FIX}") from None
    if is_dir:
        raise StoreUnusable(f"store {path} is a directory; --mtmcs-store names a file, e.g. "
                            f"--mtmcs-store {path / 'store.sqlite'}")
    if exists and not regular:
        raise StoreUnusable(f"store {path} is not a regular file (a device, a pipe or a "
                            f"socket): {FIX}")
    if exists:
        try:
            with open(path, "rb") as fh:
                head = fh.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise StoreUnusable(f"store {path} cannot be read ({exc.strerror}): {FIX}") from None
        if head and head != SQLITE_HEADER:
            raise StoreUnusable(f"store {path} is not an sqlite store (the file holds something "
                                f"else, left untouched): {FIX}")
        if not os.access(path, os.W_OK):
            raise StoreUnusable(f"store {path} is read-only: make it writable or {FIX}")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreUnusable(f"store {path}: cannot create its folder {folder} "
                            f"({exc.strerror}): {FIX}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreUnusable(f"store {path} lies in a read-only folder {folder} (sqlite writes "
                            f"its journal beside the store): {FIX} in a writable folder")


def unusable(path: Path, exc: sqlite3.Error) -> str:
    text = str(exc)
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        return (f"store {path} is corrupt ({text}); it was left untouched: move it away or "
                f"{FIX}")
    return f"store {path} cannot be opened ({text}): {FIX}"


def inspect(path: Path, version: int) -> None:
    """Refuse an existing file that is not a store of schema `version` or earlier, reading it
    through a read-only connection, so that nothing is written to what is refused (another
    program's database, a corrupt store, a store of a newer schema)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreUnusable(unusable(path, exc)) from None
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        row = db.execute("SELECT v FROM meta WHERE k='schema'").fetchone() if (
            "meta" in tables) else None
    except sqlite3.Error as exc:
        raise StoreUnusable(unusable(path, exc)) from None
    finally:
        db.close()
    if tables and "meta" not in tables:
        raise StoreUnusable(f"store {path} is an sqlite database of something else (no "
                            f"pytest-mtmcs tables), left untouched: {FIX}")
    if row is not None and not (row[0].isdigit() and 1 <= int(row[0]) <= version):
        # an earlier schema is migrated when the store is opened (store_schema.migrate)
        raise StoreUnusable(f"store {path} has schema {row[0]}, this version reads "
                            f"1 to {version}; it was left untouched: {FIX}")
