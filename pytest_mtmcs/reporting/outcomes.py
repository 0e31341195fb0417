"""The outcome table of a run and its canonical text: what a snapshot file holds, pure functions.

`outcome_table` keeps, per (target, guardrail), only what two identical runs agree on (no
transcripts, latencies, timestamps, cache flags): a row per dialogue and per metrics group.
`dumps` writes it as line-oriented JSON (one line per row, so a diff shows which dialogues
flipped) and `compare_tables` says what changed between two such texts. No syrupy, no I/O;
`snapshot` stores and checks these texts.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from pytest_mtmcs.scoring.metrics import ALL, TOR_BUCKETS, GroupSummary, Mean, Rate
from pytest_mtmcs.scoring.robustness import RobustnessSummary

if TYPE_CHECKING:
    from pytest_mtmcs.reporting.report import RunReport
    from pytest_mtmcs.scoring.records import DialogueRecord, QuestionRecord

TABLE_VERSION = 1
"""Version of the outcome table's layout (the `version` key of every snapshot file)."""


# ----------------------------------------------------------------------------- the table
def _dialogue_row(d: DialogueRecord | None, qs: list[QuestionRecord]) -> dict[str, Any]:
    intent: dict[str, Any] = {}
    for q in qs:  # sorted by id
        answer: dict[str, Any] = {"correct": q.correct, "parsed": q.parsed}
        if q.verdict not in ("pass", "fail"):
            answer["verdict"] = q.verdict  # errored or skipped: not asked, so not "unparsed"
        intent[q.id[len(q.dialogue_id) + 1:] if q.id.startswith(q.dialogue_id) else q.id] = answer
    if d is None:  # only its questions ran
        return {"blocked": None, "intent": intent, "judge": None, "refused": None, "verdict": None}
    blocked = next((f"R{i}" for i, t in enumerate(d.turns, 1) if t.blocked_by), None)
    refused = f"R{d.turn_of_refusal}" if d.turn_of_refusal else "never"
    return {"blocked": blocked, "intent": intent,  # keys sorted, as everywhere in the table
            "judge": d.judge.score if d.judge is not None else None,
            "refused": refused if d.verdict in ("pass", "fail") else None, "verdict": d.verdict}


def _metrics_row(g: GroupSummary) -> dict[str, Any]:
    def kn(rate: Rate) -> str:
        return f"{rate.k}/{rate.n}"

    def mean(m: Mean | None) -> dict[str, Any] | None:
        return None if m is None else {
            "mean": None if m.value is None else round(m.value, 2), "n": m.n}

    row: dict[str, Any] = {
        "dialogues": g.dialogues, "pass_rate": kn(g.pass_rate),
        "refusal_rate_unsafe": kn(g.refusal_rate_unsafe),
        "over_refusal_rate_safe": kn(g.over_refusal_rate_safe),
        "tor_unsafe": {b: g.tor_unsafe.get(b, 0) for b in TOR_BUCKETS},
        "tor_safe": {b: g.tor_safe.get(b, 0) for b in TOR_BUCKETS},
        "safe_mcq_accuracy": kn(g.safe_mcq_accuracy),
        "unsafe_mcq_accuracy": kn(g.unsafe_mcq_accuracy),
        "unsafe_tf_accuracy": kn(g.unsafe_tf_accuracy),
        "intent_accuracy_strict": kn(g.intent_accuracy_strict),
        "safety_aware_avg": mean(g.safety_aware_avg), "helpfulness_avg": mean(g.helpfulness_avg),
        "unparsed": g.unparsed, "judge_unparsed": g.judge_unparsed,
        "errored": g.errored, "skipped": g.skipped,
    }
    if g.guard_cost is not None:
        row["blocked_turns"] = f"{g.guard_cost.blocked_turns}/{g.guard_cost.turns}"
    return row


def spec_label(spec: str) -> str:
    """A target or guardrail spec without the folders of an absolute path in it, so the label
    is the same on every machine: `scripted:/tmp/x/replies.json` -> `scripted:replies.json`,
    `hf:/models/tiny` -> `hf:tiny`; `openai:gpt-4o` and URLs are kept as they are."""
    scheme, sep, rest = spec.partition(":")
    windows = re.match(r"^[A-Za-z]:[\\/]", rest) is not None
    if sep and (windows or rest.startswith("~") or (rest.startswith("/") and not rest.startswith("//"))):
        return f"{scheme}:{PurePath(rest.replace(chr(92), '/')).name}"
    return spec


def data_slice(settings: dict[str, object]) -> dict[str, Any]:
    """The data slice of a run from `RunReport.settings`: the data's name (a folder or file
    name, or a dataset id), splits, modalities, and limit / sample and seed."""
    def names(value: object) -> list[str]:
        return [str(v) for v in value] if isinstance(value, (list, tuple)) else []

    data = str(settings.get("data") or "")
    for prefix in ("parquet:", "jsonl:", "datasets:"):
        data = data.removeprefix(prefix)
    if os.path.isabs(data):
        data = PurePath(data).name
    sample = settings.get("sample")
    return {"data": data, "splits": names(settings.get("split")),
            "modalities": names(settings.get("modality")), "limit": settings.get("limit"),
            "sample": sample, "seed": settings.get("seed") if sample is not None else None}


def outcome_table(report: RunReport, target: str, guardrail: str) -> dict[str, Any]:
    """The outcome table of one (target, guardrail) of `report`.

    `dialogues`: dialogue id -> verdict, `refused` (turn of first refusal R1/R2/R3/never;
    None unless the dialogue completed), `blocked` (first turn a guardrail blocked, or None),
    `judge` (score or None) and `intent` (question suffix -> parsed answer and correct).
    `metrics`: `all` and every `split/modality` -> counts as `k/n`, turn-of-refusal
    histograms, judge means to 2 decimals with their n. Plus `target`/`guardrail` labels
    (`spec_label`), the data `slice` and a `version`; with variant images, `robustness`
    (`robustness_snapshot`). Nothing that differs between two identical runs; keys sorted. An
    empty table when the stack did not run."""
    dialogues = [d for d in report.dialogues if (d.target, d.guardrail) == (target, guardrail)]
    by_dialogue: dict[str, list[QuestionRecord]] = {}
    for q in report.questions:
        if (q.target, q.guardrail) == (target, guardrail):
            by_dialogue.setdefault(q.dialogue_id, []).append(q)
    records = {d.id: d for d in dialogues}
    rows = {i: _dialogue_row(records.get(i), sorted(by_dialogue.get(i, []), key=lambda q: q.id))
            for i in sorted(set(records) | set(by_dialogue))}
    metrics = {(ALL if g.overall else f"{g.split}/{g.modality}"): _metrics_row(g)
               for g in report.summary if (g.target, g.guardrail) == (target, guardrail)}
    table = {"version": TABLE_VERSION, "target": spec_label(target),
             "guardrail": spec_label(guardrail), "slice": data_slice(report.settings),
             "metrics": metrics}
    # With variant images, the stack's robustness figures (nothing without them, so tables of
    # runs without variants stay as they were).
    if robust := robustness_snapshot(report.robustness, target, guardrail):
        table["robustness"] = robust
    return {"dialogues": rows, **_sorted(table)}  # rows are built sorted (30,000 of them)


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value, key=str)}
    return [_sorted(v) for v in value] if isinstance(value, (list, tuple)) else value


# ----------------------------------------------------------------------------- the format
_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False, allow_nan=False)


def dumps(data: Any) -> str:
    """Canonical, line-oriented JSON: keys sorted at every level; a dict at the top has one
    line per key, except that a value which is a dict of dicts (a table, such as `dialogues`
    or `metrics`) has one line per row. Valid JSON, ending in a newline. Raises TypeError
    naming the value that is not JSON."""
    def one(value: Any) -> str:
        try:
            return _ENCODER.encode(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"MtmcsSnapshotExtension stores JSON data only: {exc}") from None

    if not isinstance(data, dict) or not data:
        return one(data) + "\n"
    lines = ["{"]
    keys = sorted(data, key=str)
    for i, key in enumerate(keys):
        value, comma = data[key], "," if i < len(keys) - 1 else ""
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            lines.append(f"  {one(str(key))}: {{")
            rows = sorted(value, key=str)
            lines += [f"    {one(str(r))}: {one(value[r])}{',' if j < len(rows) - 1 else ''}"
                      for j, r in enumerate(rows)]
            lines.append("  }" + comma)
        else:
            lines.append(f"  {one(str(key))}: {one(value)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the comparison
def _fmt(value: Any) -> str:
    return "-" if value is None else value if isinstance(value, str) else json.dumps(value)


def _change(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str:
    """What changed in one dialogue's row, e.g. `pass -> fail, refused never -> R1, mcq1 A -> B`."""
    if old is None or new is None:
        row = new if old is None else old
        return ("added (" if old is None else "removed (was ") + _fmt((row or {}).get("verdict")) + ")"
    parts = [f"{_fmt(old.get('verdict'))} -> {_fmt(new.get('verdict'))}"]
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if key == "verdict" or a == b:
            continue
        if key == "intent" and isinstance(a, dict) and isinstance(b, dict):
            for q in sorted(set(a) | set(b)):
                qa, qb = a.get(q) or {}, b.get(q) or {}
                if qa != qb:
                    parts.append(f"{q} {_fmt(qa.get('parsed'))} -> {_fmt(qb.get('parsed'))}")
        else:
            parts.append(f"{key} {_fmt(a)} -> {_fmt(b)}")
    return ", ".join(parts)


def _kn(r: Rate | None) -> str | None:
    return None if r is None else f"{r.k}/{r.n}"


def robustness_snapshot(rows: Sequence[RobustnessSummary], target: str,
                        guardrail: str) -> dict[str, dict[str, Any]]:
    """The robustness block of one stack's snapshot: split (`all` for the overall summary) ->
    its counts (`k/n`), the judge's spread (mean to 2 decimals, n) and the sorted flipped
    dialogue ids; only what two identical runs agree on. {} when the stack has no rows."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if (r.target, r.guardrail) != (target, guardrail):
            continue
        spread = r.score_spread
        out[ALL if r.overall else r.split] = {
            "groups": r.groups, "images": r.images, "incomplete": r.incomplete,
            "variant_consistency": _kn(r.variant_consistency),
            "variant_flip_rate": _kn(r.variant_flip_rate),
            "refusal_rate_unsafe": _kn(r.refusal_rate_unsafe),
            "worst_case_refusal_unsafe": _kn(r.worst_case_refusal_unsafe),
            "best_case_over_refusal_safe": _kn(r.best_case_over_refusal_safe),
            "worst_case_over_refusal_safe": _kn(r.worst_case_over_refusal_safe),
            "score_spread": None if spread is None else {
                "mean": None if spread.value is None else round(spread.value, 2), "n": spread.n},
            "score_consistency": _kn(r.score_consistency),
            "flipped": sorted(r.flipped),
        }
    return {split: out[split] for split in sorted(out)}


def compare_tables(old_text: str, new_text: str) -> tuple[list[str], list[str], list[str]]:
    """(changed dialogue ids, a line per changed dialogue, changed metrics groups, the
    robustness ones as `robustness/SPLIT`) between two snapshot texts. A stored text that is
    no outcome table (not JSON, say): every dialogue and group counts as changed, with one
    line saying why."""
    def rows(table: Any, key: str) -> dict[str, Any]:
        found = table.get(key) if isinstance(table, dict) else None
        return found if isinstance(found, dict) else {}

    try:
        old = json.loads(old_text)
    except json.JSONDecodeError:
        old = None
    new = json.loads(new_text)
    od, nd = rows(old, "dialogues"), rows(new, "dialogues")
    if not isinstance(old, dict) or "dialogues" not in old:
        return (sorted(nd), ["the stored file is no outcome table: every dialogue counts as changed"],
                sorted(rows(new, "metrics")))
    ids = sorted(i for i in set(od) | set(nd) if od.get(i) != nd.get(i))
    om, nm = rows(old, "metrics"), rows(new, "metrics")
    groups = sorted(g for g in set(om) | set(nm) if om.get(g) != nm.get(g))
    orb, nrb = rows(old, "robustness"), rows(new, "robustness")
    groups += [f"robustness/{s}" for s in sorted(set(orb) | set(nrb)) if orb.get(s) != nrb.get(s)]
    return ids, [f"{i}: {_change(od.get(i), nd.get(i))}" for i in ids], groups



__all__ = ["TABLE_VERSION", "compare_tables", "data_slice", "dumps", "outcome_table",
           "robustness_snapshot", "spec_label"]
