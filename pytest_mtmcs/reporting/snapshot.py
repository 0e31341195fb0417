"""Snapshot regression of a run's outcomes with syrupy (`--mtmcs-snapshot`, or users' own tests).

One JSON file per (target, guardrail, data slice) holds the stack's per-dialogue outcome table
and its metrics: only what two identical runs agree on (no transcripts, latencies, timestamps,
cache flags), one line per dialogue and per metrics group, so a pull request's diff shows which
dialogues flipped. 30,000 dialogues make one 6 MB file, checked in about a second.
`MtmcsSnapshotExtension` reads and writes that format for `check_snapshots` (run at the end of
a `--mtmcs-snapshot` run) and for users' own tests alike:

    assert mtmcs_results.outcomes() == snapshot(extension_class=MtmcsSnapshotExtension)

The table and its canonical JSON come from `outcomes`; this module stores and checks them. The
only module that imports syrupy; nothing imports it unless snapshots are used.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from syrupy.data import Snapshot, SnapshotCollection
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from pytest_mtmcs.reporting.files import write_atomic
from pytest_mtmcs.reporting.outcomes import (
    compare_tables,
    data_slice,
    dumps,
    outcome_table,
    spec_label,
)
from pytest_mtmcs.reporting.terminal import WIDTH

if TYPE_CHECKING:
    from syrupy.types import PropertyFilter, PropertyMatcher, SerializableData

    from pytest_mtmcs.reporting.report import RunReport

DIFF_LIMIT = 40
"""Unified-diff lines kept in a `SnapshotCheck` (the rest is counted, not kept)."""
LIST_LIMIT = 20
"""Changed dialogues named one per line in the terminal (the rest are counted)."""
SYRUPY_NOTE = ("note: beside snapshot tests, syrupy reports files under {name}/ it does not know "
               "as unused (--snapshot-update deletes them): set --mtmcs-snapshot-dir elsewhere")


class MtmcsSnapshotExtension(SingleFileSnapshotExtension):
    """syrupy extension: one `.json` file per snapshot in the `dumps` format (one line per
    dialogue and per metrics group), written atomically. Works with any JSON-able value."""

    _write_mode = WriteMode.TEXT
    file_extension = "json"

    def serialize(self, data: SerializableData, *, exclude: PropertyFilter | None = None,
                  include: PropertyFilter | None = None,
                  matcher: PropertyMatcher | None = None) -> str:
        """The data as `dumps` text, after syrupy's property filters and matcher (as its JSON
        extension applies them: the matcher to every value, the filters to dict keys)."""
        if exclude is None and include is None and matcher is None:
            return dumps(data)
        return dumps(self._filter(data, (), exclude, include, matcher))

    @classmethod
    def _filter(cls, data: Any, path: tuple[Any, ...], exclude: PropertyFilter | None,
                include: PropertyFilter | None, matcher: PropertyMatcher | None) -> Any:
        if matcher is not None:
            data = matcher(data=data, path=path)
        if isinstance(data, dict):
            return {k: cls._filter(v, (*path, (k, type(v))), exclude, include, matcher)
                    for k, v in data.items()
                    if not (exclude and exclude(prop=k, path=path))
                    and not (include and not include(prop=k, path=path))}
        if isinstance(data, (list, tuple)):
            return [cls._filter(v, (*path, (i, type(v))), exclude, include, matcher)
                    for i, v in enumerate(data)]
        return data

    @classmethod
    def write_snapshot_collection(cls, *, snapshot_collection: SnapshotCollection,
                                  name_order: dict[str, int] | None = None) -> None:
        """Write the collection's one snapshot to its file atomically (temp file, rename)."""
        data = next(iter(snapshot_collection)).data
        if not isinstance(data, str):
            raise TypeError(f"MtmcsSnapshotExtension writes text, got {type(data).__name__}")
        write_atomic(Path(snapshot_collection.location), data, encoding=cls.get_write_encoding())


# ----------------------------------------------------------------------------- the check
@dataclass(frozen=True)
class SnapshotCheck:
    """The outcome of comparing one stack's table with its snapshot file `path`.

    `status`: matched; written (a new file); updated (rewritten by --snapshot-update); changed
    (differs: a failure); missing (no file while CI is set: a failure). `changed`: the dialogue
    ids whose row differs, was added or removed; `details`: a line each, e.g. `ID: pass ->
    fail, refused never -> R1`; `metrics_changed`: the groups (`all`, `type_a/multimodal`)
    whose figures differ; `diff`: the unified diff, stored file -> this run, at most
    DIFF_LIMIT lines, `diff_cut` more left out; `update`: checked under --snapshot-update
    (`update_summary` counts what it did)."""

    path: Path
    target: str
    guardrail: str
    status: Literal["matched", "written", "updated", "changed", "missing"]
    ok: bool
    changed: tuple[str, ...] = ()
    details: tuple[str, ...] = ()
    metrics_changed: tuple[str, ...] = ()
    diff: tuple[str, ...] = ()
    diff_cut: int = 0
    update: bool = False


def snapshot_name(report: RunReport, target: str, guardrail: str) -> str:
    """The file name of a stack's snapshot: slugs of target, guardrail and data slice, e.g.
    `baseline-refuse__none__mtmcs-sample_type_a+type_b_multimodal+unimodal_limit4.json`."""
    s = data_slice(report.settings)
    part = f"{_slug(s['data'])}_{'+'.join(s['splits'])}_{'+'.join(s['modalities'])}"
    if s["limit"] is not None:
        part += f"_limit{s['limit']}"
    if s["sample"] is not None:
        part += f"_sample{s['sample']}_seed{s['seed']}"
    return f"{_slug(spec_label(target))}__{_slug(spec_label(guardrail))}__{part}.json"


def _slug(text: str, room: int = 60) -> str:
    slug = re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-.") or "x"
    if len(slug) > room:  # long specs: keep a readable start, and a hash for uniqueness
        slug = slug[:room - 9] + "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return slug


def ci_is_set() -> bool:
    """Whether the CI environment variable holds a true value (GitHub Actions sets CI=true)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")

def _write(ext: MtmcsSnapshotExtension, path: Path, text: str) -> None:
    """Write through the extension, as syrupy writes a user's snapshot."""
    collection = SnapshotCollection(location=str(path))
    collection.add(Snapshot(name=path.stem, data=text))
    ext.write_snapshot_collection(snapshot_collection=collection)


def check_snapshots(report: RunReport, directory: Path, *, update: bool) -> list[SnapshotCheck]:
    """Compare every (target, guardrail) of `report` with its snapshot file in `directory`
    (`snapshot_name`), reading and writing through `MtmcsSnapshotExtension`.

    A missing file is written (ok), except while CI is set and `update` is not: then it is a
    failure and nothing is written. The same content matches (ok). Different content fails
    unless `update`, which rewrites the file (ok). Writes are atomic."""
    ext = MtmcsSnapshotExtension()
    stacks = list(dict.fromkeys((g.target, g.guardrail) for g in report.summary))
    checks = []
    for target, guardrail in stacks:
        path = Path(directory) / snapshot_name(report, target, guardrail)
        text = str(ext.serialize(outcome_table(report, target, guardrail)))
        raw = ext.read_snapshot_data_from_location(
            snapshot_location=str(path), snapshot_name=path.stem, session_id="mtmcs")
        stored = None if raw is None else str(raw)
        if stored == text:
            checks.append(SnapshotCheck(path, target, guardrail, "matched", ok=True,
                                        update=update))
        elif stored is None and ci_is_set() and not update:
            checks.append(SnapshotCheck(path, target, guardrail, "missing", ok=False))
        elif stored is None:
            _write(ext, path, text)
            checks.append(SnapshotCheck(path, target, guardrail, "written", ok=True,
                                        update=update))
        else:
            ids, details, groups = compare_tables(stored, text)
            diff = list(difflib.unified_diff(stored.splitlines(), text.splitlines(),
                                             "stored snapshot", "this run", n=1, lineterm=""))
            if update:
                _write(ext, path, text)
            checks.append(SnapshotCheck(
                path, target, guardrail, "updated" if update else "changed", ok=update,
                changed=tuple(ids), details=tuple(details), metrics_changed=tuple(groups),
                diff=tuple(diff[:DIFF_LIMIT]), diff_cut=max(0, len(diff) - DIFF_LIMIT),
                update=update))
    return checks


def update_summary(checks: list[SnapshotCheck]) -> str | None:
    """What --snapshot-update did, e.g. `--snapshot-update: 1 snapshot written, 1 updated, 2
    unchanged`; None when it was not in force."""
    if not any(c.update for c in checks):
        return None
    count = {s: sum(c.status == s for c in checks) for s in ("written", "updated", "matched")}
    files = "snapshot" if count["written"] == 1 else "snapshots"
    return (f"--snapshot-update: {count['written']} {files} written, {count['updated']} updated, "
            f"{count['matched']} unchanged")


# ----------------------------------------------------------------------------- the terminal
def _where(path: Path) -> str:
    """The path from the current folder when it lies below it, else the absolute path."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive
        rel = os.pardir
    return str(path) if rel.startswith(os.pardir) else rel


def _head(text: str, path: Path) -> list[str]:
    """`text: FILE` within 100 columns, the file as its path (`_where`) or else its name alone
    (the folder is --mtmcs-snapshot-dir); else `text` and, on a line of its own, the path,
    cut at the front when even that is too long."""
    where = _where(path)
    for shown in (where, path.name):
        if len(text) + 2 + len(shown) <= WIDTH:
            return [f"{text}: {shown}"]
    room = WIDTH - 2
    return [text, "  " + (where if len(where) <= room else "..." + where[len(where) - room + 3:])]


def snapshot_lines(checks: list[SnapshotCheck]) -> list[tuple[str, bool]]:
    """The terminal lines, (text, is_failure), at most 100 columns each: one line per matched
    (left unchanged), written or updated file; for a failure, the dialogues that changed (old ->
    new verdict and what else changed), the metrics groups, the diff, and how to accept it
    (--snapshot-update); last, under --snapshot-update, how many files it wrote, updated and
    left unchanged."""
    from syrupy.extensions.base import SnapshotCollectionStorage

    out: list[tuple[str, bool]] = []
    # syrupy scans folders of this name (`__snapshots__`, --snapshot-dirname) for its own files
    name = Path(str(SnapshotCollectionStorage.snapshot_dirname)).name
    if any(name in c.path.parent.parts for c in checks):
        note = SYRUPY_NOTE.format(name=name)
        out += [(line, False) for line in textwrap.wrap(note, WIDTH, subsequent_indent="  ")]
    for c in checks:
        if c.ok:
            text = {"matched": "snapshot matched", "written": "snapshot written (new)"}.get(
                c.status, f"snapshot updated ({len(c.changed)} dialogues changed)")
            out += [(line, False) for line in _head(text, c.path)]
        elif c.status == "missing":
            out += [(line, True) for line in _head("snapshot FAILED (no stored snapshot)", c.path)]
            out.append(("  run with --snapshot-update and commit it", True))
        else:
            out += _failure_lines(c)
    summary = update_summary(checks)
    if summary is not None:
        out.append((summary, False))
    return out


def _failure_lines(c: SnapshotCheck) -> list[tuple[str, bool]]:
    lines = _head(f"snapshot FAILED ({len(c.changed)} dialogues changed)", c.path)
    for detail in c.details[:LIST_LIMIT]:
        lines += textwrap.wrap(detail, WIDTH, initial_indent="  ", subsequent_indent="      ",
                               break_on_hyphens=False)
    if len(c.details) > LIST_LIMIT:
        lines.append(f"  ... and {len(c.details) - LIST_LIMIT} more dialogues")
    if c.metrics_changed:
        lines += textwrap.wrap("metrics changed: " + ", ".join(c.metrics_changed), WIDTH,
                               initial_indent="  ", subsequent_indent="    ")
    if c.diff:
        lines.append("  diff, stored snapshot -> this run:")
        for d in c.diff:
            lines += textwrap.wrap(d, WIDTH, initial_indent="  ", subsequent_indent="  " + d[:1] + "     ",
                                   break_on_hyphens=False, drop_whitespace=False) or ["  "]
        if c.diff_cut:
            lines.append(f"  ... diff cut: {c.diff_cut} more lines")
    lines.append("  run with --snapshot-update to accept these changes")
    return [(line.rstrip()[:WIDTH], True) for line in lines]


# `outcome_table` is re-exported for callers that import it from here (pytest_mtmcs.fixture).
__all__ = ["MtmcsSnapshotExtension", "SnapshotCheck", "check_snapshots", "outcome_table",
           "snapshot_lines", "snapshot_name", "update_summary"]
