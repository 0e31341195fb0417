"""How an A/B comparison and the baseline gate read: terminal lines and an HTML fragment.

The statistics live in `compare`; this module only words them.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from html import escape as _escape

from pytest_mtmcs.reporting.compare import (
    SPLIT_NAMES,
    BaselineCheck,
    Comparison,
    FigureDiff,
    fmt_p,
)
from pytest_mtmcs.reporting.terminal import WIDTH
from pytest_mtmcs.scoring.metrics import ALL
from pytest_mtmcs.textsafety import for_terminal


def escape(text: str) -> str:
    """Text for the HTML fragment: redacted, control characters shown, HTML-escaped."""
    return _escape(for_terminal(text))


def fmt_value(f: FigureDiff, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}"


def figure_texts(f: FigureDiff) -> tuple[str, str, str, str]:
    """A figure's row texts: its name with the scope, B - A, the interval, p."""
    name = f.label if f.scope == ALL else f"{f.label}, {SPLIT_NAMES.get(f.scope, f.scope)}"
    if f.diff is None:
        diff = ci = ""
    elif f.kind == "rate":
        diff = f"{f.diff * 100:+.1f} pts"
        ci = "" if f.ci is None else f"[{f.ci[0] * 100:+.1f}, {f.ci[1] * 100:+.1f}]"
    else:
        diff = f"{f.diff:+.2f}"
        ci = "" if f.ci is None else f"[{f.ci[0]:+.2f}, {f.ci[1]:+.2f}]"
    return name, diff, ci, "" if f.p_value is None else fmt_p(f.p_value)


def comparison_lines(cmp: Comparison, *, width: int = WIDTH) -> list[str]:
    """The A/B table: per figure and scope, A, B, B - A with its interval, and p."""
    head = (f"A/B {cmp.a} -> {cmp.b}: {cmp.matched} dialogues matched"
            + (f" ({cmp.only_a} only in A, {cmp.only_b} only in B)"
               if cmp.only_a or cmp.only_b else ""))
    lines = [*textwrap.wrap(head, width, subsequent_indent="    ", break_on_hyphens=False),
             f"  {'figure':<34}{'A':>6}{'B':>7}  {'B-A':>10}  {'95% CI':<17}{'p':>7}"]
    for f in cmp.figures:
        name, diff, ci, p = figure_texts(f)
        lines.append(f"  {name:<34}{fmt_value(f, f.a):>6}{fmt_value(f, f.b):>7}  {diff:>10}  "
                     f"{ci:<17}{p:>7}".rstrip())
    lines.append(f"  flipped: {len(cmp.to_fail)} pass -> fail, {len(cmp.to_pass)} fail -> pass")
    for label, ids in (("pass -> fail", cmp.to_fail), ("fail -> pass", cmp.to_pass)):
        if ids:
            shown = ", ".join(ids[:6]) + (f", ... ({len(ids) - 6} more)" if len(ids) > 6 else "")
            lines += textwrap.wrap(f"{label}: {shown}", width, initial_indent="    ",
                                   subsequent_indent="      ", break_on_hyphens=False)
    lines += textwrap.wrap(f"verdict: {cmp.verdict}", width, initial_indent="  ",
                           subsequent_indent="    ", break_on_hyphens=False)
    return lines


def baseline_lines(checks: Sequence[BaselineCheck], notes: Sequence[str],
                   source: str) -> list[tuple[str, bool]]:
    """The baseline gate table as (text, is_failure) lines."""
    if not checks and not notes:
        return []
    bad = sum(c.regressed for c in checks)
    head = (f"baseline {source}: " + (f"{bad} significant regression{'s' * (bad != 1)}" if bad
                                      else f"no significant regression in {len(checks)} figures"))
    lines = [(head[:WIDTH], bad > 0)]
    several = len({c.stack for c in checks}) > 1
    for c in checks:
        if c.diff is None:
            diff = "-"
        elif c.figure.endswith("_avg"):
            diff = f"{c.diff:+.2f}"
        else:
            diff = f"{c.diff * 100:+.1f} pts"
        p = "" if c.p_value is None else (
            f"p{fmt_p(c.p_value)}" if c.p_value < 0.001 else f"p={fmt_p(c.p_value)}")
        who = f"  {c.stack}" if several else ""
        lines.append((f"  {'FAIL' if c.regressed else 'ok  '}  {c.label:<28}{diff:>10}  "
                      f"{p:<9}{who}"[:WIDTH].rstrip(), c.regressed))
    lines += [(f"  {n}"[:WIDTH], False) for n in notes]
    return lines


def comparison_html(cmp: Comparison) -> str:
    """An A/B comparison as an HTML fragment (verdict, table, flipped dialogues), escaped."""
    rows = []
    for f in cmp.figures:
        name, diff, ci, p = figure_texts(f)
        cls = "" if f.improved is None else (' class="better"' if f.improved else ' class="worse"')
        cells = [name, fmt_value(f, f.a), fmt_value(f, f.b), diff, ci, p]
        rows.append(f"<tr{cls}>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    flips = "".join(
        f"<details><summary>{len(ids)} dialogues {escape(label)}</summary><p>"
        + escape(", ".join(ids)) + "</p></details>"
        for label, ids in (("pass → fail", cmp.to_fail), ("fail → pass", cmp.to_pass)) if ids)
    return (f"<p class=\"verdict\"><strong>{escape(cmp.verdict)}</strong></p>"
            f"<p>{cmp.matched} dialogues matched; {len(cmp.to_fail)} pass → fail, "
            f"{len(cmp.to_pass)} fail → pass.</p>"
            "<table class=\"ab\"><thead><tr><th>figure</th><th>A</th><th>B</th><th>B − A</th>"
            "<th>95% CI</th><th>p</th></tr></thead><tbody>" + "".join(rows)
            + "</tbody></table>" + flips)
