"""The run as Markdown that renders on GitHub (job summaries, PR comments).

`render_markdown` takes the run's report and what was checked on top of it (A/B comparisons,
baseline checks, snapshot lines); `write_markdown` writes it and, when `GITHUB_STEP_SUMMARY` is
set, appends it to the job summary as well.

Every value placed in the Markdown (ids, specs, reasons that may quote a model server, notes)
goes through `textsafety.for_markdown`: redacted, control characters shown as escapes, HTML and
Markdown punctuation made inert, so a server's answer cannot become a link, an image, a
`<details open>` or a broken table in the report or the job summary. Only this module's own
markup is markup.

Names are never cut: the target is named once, in the page's heading, and every table names a
stack by its short name (`names.stack_names`: `none`, `dpp`, `llama-guard:CHECKPOINT`); the
labels A/B and baseline records carry are looked up to the same short names (`label_names`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pytest_mtmcs.reporting.compare import (
    SPLIT_NAMES,
    BaselineCheck,
    Comparison,
    stacks,
)
from pytest_mtmcs.reporting.files import write_atomic
from pytest_mtmcs.reporting.names import label_names, stack_names
from pytest_mtmcs.reporting.report import RunReport
from pytest_mtmcs.reporting.robustness_views import robustness_markdown
from pytest_mtmcs.reporting.terminal import stack_blocks, summary_rows
from pytest_mtmcs.scoring.metrics import ALL, GroupSummary
from pytest_mtmcs.textsafety import for_markdown

FAILED_SHOWN = 200
"""Failed dialogues listed by name; the rest are counted."""


def _cell(text: object) -> str:
    """A table cell of this module's own text: pipes escaped, newlines folded. Values from
    outside are passed through `_md` first."""
    return " ".join(str(text).split()).replace("|", "\\|")


_md = for_markdown


def _table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(_cell(h) for h in head) + " |",
           "| " + " | ".join("---" for _ in head) + " |"]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def _diff(value: float | None, rate: bool) -> str:
    if value is None:
        return "-"
    return f"{value * 100:+.1f} pts" if rate else f"{value:+.2f}"


def _interval(ci: tuple[float, float], rate: bool) -> str:
    """`[-4.1, +12.5] pts` for rates, `[-0.20, +0.40]` for mean scores."""
    if rate:
        return f"[{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}] pts"
    return f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"


def _p(p: float | None) -> str:
    return "" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def comparison_markdown(cmp: Comparison, labels: dict[str, str] | None = None) -> list[str]:
    """One A/B comparison: the verdict, a table of figures, the flipped dialogues. `labels`
    maps the record's stack labels to short names (`names.label_names`)."""
    labels = labels or {}
    a, b = labels.get(cmp.a, cmp.a), labels.get(cmp.b, cmp.b)
    lines = [f"### A/B: {_md(a)} → {_md(b)}", "", f"**{_md(cmp.verdict)}**", "",
             f"{cmp.matched} dialogues matched"
             + (f" ({cmp.only_a} only in A, {cmp.only_b} only in B)" if cmp.only_a or cmp.only_b
                else "") + ".", ""]
    rows = []
    for f in cmp.figures:
        rate = f.kind == "rate"
        name = f.label if f.scope == ALL else f"{f.label}, {SPLIT_NAMES.get(f.scope, f.scope)}"
        ci = "" if f.ci is None else _interval(f.ci, rate)
        rows.append([name, "-" if f.a is None else f"{f.a:.2f}", "-" if f.b is None else f"{f.b:.2f}",
                     _diff(f.diff, rate), ci, _p(f.p_value)])
    lines += _table(["figure", "A", "B", "B − A", "95% CI", "p"], rows)
    for label, ids in (("pass → fail", cmp.to_fail), ("fail → pass", cmp.to_pass)):
        if ids:
            lines += ["", f"<details><summary>{len(ids)} dialogues {label}</summary>", "",
                      _md(", ".join(ids)), "", "</details>"]
    return [*lines, ""]


def _divergence(groups: Sequence[GroupSummary], heads: Sequence[str]) -> list[str]:
    """Why the release's figures differ from ours (the divergence account), folded."""
    rows = [[head, d.kind, _md(d.shape), d.count, _md(d.example or "")]
            for g, head in zip(groups, heads, strict=True) if g.release is not None
            for d in g.release.divergence]
    if not rows:
        return []
    return [f"<details><summary>replies the benchmark's own readers read differently "
            f"({sum(int(str(r[3])) for r in rows)})</summary>", "",
            *_table(["group", "kind", "shape", "count", "example"], rows), "", "</details>", ""]


def render_markdown(report: RunReport, *, comparisons: Sequence[Comparison] = (),
                    baseline: Sequence[BaselineCheck] = (), baseline_notes: Sequence[str] = (),
                    snapshot: Sequence[str] = ()) -> str:
    """The whole run as GitHub-flavoured Markdown."""
    names = stack_names(stacks(report) + [(g.target, g.guardrail) for g in report.gates]
                        + [(d.target, d.guardrail) for d in report.dialogues])
    labels = label_names(names)
    lines = [f"## pytest-mtmcs: {_md(report.target)}", "",
             f"data {_md(report.data)}" + (f", judge {_md(report.judge)}" if report.judge else "")
             + (f"; {_md(report.rollout)}" if report.rollout else ""), ""]
    if report.gates:
        failed = sum(not g.passed for g in report.gates)
        outcome = "all passed" if not failed else f"{failed} of {len(report.gates)} FAILED"
        readings = {g.reading() for g in report.gates}
        reading = next(iter(readings)) if len(readings) == 1 else None
        lines += [f"**Gates: {outcome}**" + (f" ({reading})" if reading else ""), ""]
        # Under --mtmcs-gate-on lower|upper: the limit compared, and what more data would do.
        bounds = any(g.bound != "estimate" for g in report.gates)
        notes = bounds or any(g.to_decide() for g in report.gates)
        lines += _table(["", "gate", "stack", "figure", "95% CI", "n"]
                        + (["compared"] if bounds else []) + (["why / to decide"] if notes else []), [
            ["✅ PASS" if g.passed else "❌ FAIL", f"{g.label} {g.op} {g.threshold:g}",
             _md(names[(g.target, g.guardrail)]), "-" if g.value is None else f"{g.value:.3f}",
             "" if g.ci is None else f"[{g.ci[0]:.3f}, {g.ci[1]:.3f}]", g.n]
            + ([f"{g.bound} {g.used_value:.3f}" if g.used_value is not None else "-"]
               if bounds else [])
            + ([_md(g.to_decide() or "")] if notes else [])
            for g in report.gates])
        lines.append("")
    if baseline or baseline_notes:
        bad = sum(c.regressed for c in baseline)
        lines += [f"**Against the baseline: {bad} significant regression{'s' * (bad != 1)}**", ""]
        if baseline:
            lines += _table(["", "stack", "figure", "change", "95% CI", "p"], [
                ["❌ regressed" if c.regressed else "ok", _md(labels.get(c.stack, c.stack)), _md(c.label),
                 _diff(c.diff, not c.figure.endswith("_avg")),
                 "" if c.ci is None else _interval(c.ci, not c.figure.endswith("_avg")),
                 _p(c.p_value)]
                for c in baseline])
        lines += [f"- {_md(n)}" for n in baseline_notes] + [""]
    if snapshot:
        lines += ["**Snapshot**", "", *(f"- {_md(line)}" for line in snapshot), ""]
    for cmp in comparisons:
        lines += comparison_markdown(cmp, labels)
    several = len({t for t, _ in names}) > 1
    for target, guardrail, block, heads in stack_blocks(report.summary):
        full = "" if guardrail == "none" or guardrail in names[(target, guardrail)] else (
            f" (guardrail {_md(guardrail)})")
        lines += [f"### Stack: {_md(names[(target, guardrail)])}{full}", ""]
        if several:
            lines += [f"target {_md(target)}", ""]
        lines += _table(["figure", *heads], [[label, *cells] for label, cells in summary_rows(block)])
        lines.append("")
        lines += _divergence(block, heads)
    lines += robustness_markdown(report.robustness, names)
    failed_ds = [d for d in report.dialogues if d.verdict in ("fail", "error")]
    if failed_ds:
        lines += [f"<details><summary>{len(failed_ds)} failed or errored dialogues</summary>", ""]
        lines += _table(["dialogue", "stack", "verdict", "reason"], [
            [_md(d.id), _md(names[(d.target, d.guardrail)]), d.verdict, _md(d.reason or "")]
            for d in failed_ds[:FAILED_SHOWN]])
        if len(failed_ds) > FAILED_SHOWN:
            lines += ["", f"... and {len(failed_ds) - FAILED_SHOWN} more (see the JSON report)"]
        lines += ["", "</details>", ""]
    return "\n".join(lines)


def write_markdown(text: str, path: str | Path | None) -> list[Path]:
    """Write the Markdown to `path` (when given) and append it to `$GITHUB_STEP_SUMMARY` (when
    set). Returns the files written."""
    written = []
    if path:
        written.append(write_atomic(path, text))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")
        written.append(Path(summary))
    return written
