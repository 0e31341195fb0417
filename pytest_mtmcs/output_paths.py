"""The run's output paths, checked before the first model call: every file the run will write
(`--mtmcs-report`, `--mtmcs-markdown`, `--mtmcs-html`, the `--mtmcs-snapshot-dir` folder,
`$GITHUB_STEP_SUMMARY`) can be written, and none of them is the store or an input of the run.

Found at the end, such a problem would cost every call of the run and leave a half-written
temp file, and an output that is the store would overwrite the cache with a report. Standard
library only: the settings module calls this at configure time.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

STORE_SIDECARS = ("", "-wal", "-shm", "-journal")
"""sqlite keeps its write-ahead log and shared memory beside the store file."""
EXAMPLE_NAMES = {"--mtmcs-report": "run.json", "--mtmcs-markdown": "run.md",
                 "--mtmcs-html": "run.html"}


def _same(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def _writable_dir(folder: Path) -> str | None:
    """Why no file can be created in `folder` (or in the nearest folder above it that exists,
    where the missing ones would be created), or None when one can. Tried for real, with a
    temporary file removed at once: permission bits alone do not tell (root, read-only mounts)."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return f"no folder of {folder} exists"
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    try:
        fd, name = tempfile.mkstemp(prefix=".mtmcs-write-check-", dir=probe)
    except OSError as exc:
        return f"cannot create files in {probe} ({exc.strerror or exc})"
    os.close(fd)
    os.unlink(name)
    return None


def output_problems(outputs: Iterable[tuple[str, str]], inputs: Iterable[tuple[str, str]], *,
                    store: str, folders: Iterable[tuple[str, str]] = ()) -> list[str]:
    """What is wrong with the run's output paths, one sentence each naming the option and the
    path (empty when nothing is).

    `outputs` are (option, file path) of the files the run writes; `folders` (option, folder)
    of the folders it writes into; `inputs` (option, path) of what it reads, which no output
    may overwrite; `store` is the sqlite store, which no output may be either.
    """
    problems: list[str] = []
    store_path = Path(store)
    seen: list[tuple[str, Path]] = []
    ins = [(opt, Path(p)) for opt, p in inputs if p and "\x00" not in p]
    clash = next((o for o, p in ins if "\x00" not in store and _same(store_path, p)), None)
    if clash is not None:
        problems.append(f"--mtmcs-store {store}: this is the file {clash} reads; the store is a "
                        "sqlite database the run writes. Choose another path")
    for opt, text in outputs:
        if "\x00" in text:
            problems.append(f"{opt} {text!r}: the path contains a NUL byte")
            continue
        path = Path(text)
        if any(_same(path, store_path.with_name(store_path.name + s)) for s in STORE_SIDECARS):
            problems.append(f"{opt} {text}: this is the store (--mtmcs-store {store}); writing "
                            "the output there would destroy the call cache. Choose another path")
            continue
        clash = next((o for o, p in ins if _same(path, p)), None)
        if clash is not None:
            problems.append(f"{opt} {text}: this is the file {clash} reads; writing the output "
                            "there would destroy it. Choose another path")
            continue
        twin = next((o for o, p in seen if _same(path, p)), None)
        if twin is not None:
            problems.append(f"{opt} {text}: {twin} writes the same file. Give each output its "
                            "own path")
            continue
        seen.append((opt, path))
        if path.is_dir():
            example = EXAMPLE_NAMES.get(opt)
            problems.append(f"{opt} {text}: is a directory; expected a file path"
                            + (f" such as {path / example}" if example else ""))
            continue
        if path.exists() and not path.is_file():
            problems.append(f"{opt} {text}: is not a regular file")
            continue
        why = _writable_dir(path.parent)
        if why is not None:
            problems.append(f"{opt} {text}: cannot be written: {why}")
    for opt, text in folders:
        path = Path(text)
        if "\x00" in text:
            problems.append(f"{opt} {text!r}: the path contains a NUL byte")
        elif path.exists() and not path.is_dir():
            problems.append(f"{opt} {text}: is a file; expected a folder")
        elif (why := _writable_dir(path)) is not None:
            problems.append(f"{opt} {text}: cannot be written: {why}")
    return problems
