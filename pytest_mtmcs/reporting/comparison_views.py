"""How an A/B comparison and the baseline gate read: terminal lines and an HTML fragment.

The statistics live in `compare`; this module only words them. Terminal lines fit the width
given (`layout.DEFAULT_WIDTH` when unknown) without cutting a figure; the HTML colours a row
better/worse only when its difference is significant.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape as _escape

from pytest_mtmcs.reporting.compare import (
    SPLIT_NAMES,
    BaselineCheck,
    Comparison,
    FigureDiff,
    fmt_p,
)
from pytest_mtmcs.reporting.layout import DEFAULT_WIDTH, wrap_cells, wrap_words
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


def significant(f: FigureDiff, alpha: float = 0.05) -> bool:
    """Whether the difference is significant: its paired test's p below `alpha`, or its 95%
    interval excluding 0 (all an unpaired comparison carries)."""
    if f.p_value is not None and f.p_value < alpha:
        return True
    return f.ci is not None and (f.ci[0] > 0 or f.ci[1] < 0)


def comparison_lines(cmp: Comparison, *, width: int = DEFAULT_WIDTH) -> list[str]:
    """The A/B table: per figure, A, B, B - A with its interval, and p; the overall figures
    first, then each split's under its name. Columns are as wide as their cells; when a row
    does not fit `width`, each figure's name takes a line of its own above its numbers."""
    head = (f"A/B {cmp.a} -> {cmp.b}: {cmp.matched} dialogues matched"
            + (f" ({cmp.only_a} only in A, {cmp.only_b} only in B)"
               if cmp.only_a or cmp.only_b else ""))
    scopes: dict[str, list[tuple[str, list[str]]]] = {}
    for f in cmp.figures:
        _, diff, ci, p = figure_texts(f)
        scopes.setdefault(f.scope, []).append((f.label, [fmt_value(f, f.a), fmt_value(f, f.b),
                                                         diff, ci, p]))
    rows = [row for block in scopes.values() for row in block]
    heads = ["A", "B", "B-A", "95% CI", "p"]
    w = [max([len(h), *(len(cells[i]) for _, cells in rows)]) for i, h in enumerate(heads)]
    align = [">", ">", ">", "<", ">"]

    def numbers(cells: list[str]) -> str:
        return "  ".join(f"{c:{a}{n}}" for c, a, n in zip(cells, align, w, strict=True)).rstrip()

    name_w = max([len("figure"), *(len(name) for name, _ in rows)])
    one_line = 4 + name_w + 2 + len(numbers(heads)) <= width
    lines = wrap_words(head, width)
    lines.append(f"  {'figure':<{name_w + 2}}  {numbers(heads)}" if one_line
                 else f"  figure / {numbers(heads).strip()}")
    for scope, block in scopes.items():
        indent = "  "
        if scope != ALL:
            lines.append(f"  {SPLIT_NAMES.get(scope, scope)}:")
            indent = "    "
        for name, cells in block:
            if one_line:
                lines.append(f"{indent}{name:<{name_w + 4 - len(indent)}}  {numbers(cells)}")
            else:
                lines += [f"{indent}{name}", f"{indent}  {numbers(cells)}"]
    lines.append(f"  flipped: {len(cmp.to_fail)} pass -> fail, {len(cmp.to_pass)} fail -> pass")
    for label, ids in (("pass -> fail", cmp.to_fail), ("fail -> pass", cmp.to_pass)):
        if ids:
            shown = ", ".join(ids[:6]) + (f", ... ({len(ids) - 6} more)" if len(ids) > 6 else "")
            lines += wrap_words(f"{label}: {shown}", width, indent="    ", subsequent="      ")
    lines += wrap_words(f"verdict: {cmp.verdict}", width, indent="  ", subsequent="    ")
    return lines


def baseline_lines(checks: Sequence[BaselineCheck], notes: Sequence[str], source: str, *,
                   width: int = DEFAULT_WIDTH) -> list[tuple[str, bool]]:
    """The baseline gate table as (text, is_failure) lines; a row too long for `width`
    continues on the next line, breaking between columns only."""
    if not checks and not notes:
        return []
    bad = sum(c.regressed for c in checks)
    head = (f"baseline {source}: " + (f"{bad} significant regression{'s' * (bad != 1)}" if bad
                                      else f"no significant regression in {len(checks)} figures"))
    lines = [(line, bad > 0) for line in wrap_words(head, width)]
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
        cells = ["FAIL" if c.regressed else "ok  ", f"{c.label:<28}{diff:>10}", f"{p:<9}".rstrip(),
                 c.stack if several else ""]
        lines += [(line, c.regressed) for line in wrap_cells(cells, width)]
    lines += [(line, False) for n in notes for line in wrap_words(n, width, indent="  ")]
    return lines


def comparison_html(cmp: Comparison) -> str:
    """An A/B comparison as an HTML fragment (verdict, table, flipped dialogues), escaped."""
    rows = []
    for f in cmp.figures:
        name, diff, ci, p = figure_texts(f)
        # Coloured only when the difference is significant: a move at p = 1.00 is noise.
        cls = "" if f.improved is None or not significant(f) else (
            ' class="better"' if f.improved else ' class="worse"')
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
