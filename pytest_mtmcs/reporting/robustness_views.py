"""How image-variant robustness reads: terminal lines, a Markdown section, an HTML section.

Drawn from `RunReport.robustness` (`scoring.robustness.RobustnessSummary`, one per (target,
guardrail, split) and an overall one per stack, with `--mtmcs-variants`). Every function here
returns nothing (no line, no section, no snapshot block) when there are no robustness rows, so
a run without variant images reads exactly as before.

Stacks are named as every other table names them (`names.stack_names`): a caller passes the
names it made over all of the report's stacks, so the robustness table and the summary table
agree. Stack names and dialogue ids come from outside and are made inert in every format:
`textsafety.for_terminal` (and folded onto one line) in the terminal, `textsafety.for_markdown`
and escaped table cells in Markdown, `html.escape` in HTML.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence

from pytest_mtmcs.reporting.html_cells import escape_text, mean_cell, rate_cell
from pytest_mtmcs.reporting.layout import DEFAULT_WIDTH, clip_middle, label_table, wrap_words
from pytest_mtmcs.reporting.names import stack_names
from pytest_mtmcs.reporting.terminal import fit_fields, fmt_mean, fmt_rate, stack_headings
from pytest_mtmcs.scoring.metrics import Mean, Rate
from pytest_mtmcs.scoring.robustness import RobustnessSummary
from pytest_mtmcs.textsafety import for_markdown, for_terminal

__all__ = ["FLIPPED_SHOWN", "LABEL_ROOM", "StackRows", "flipped_lines",
           "md_cell", "robustness_blocks", "robustness_html",
           "robustness_lines", "robustness_markdown", "robustness_quiet_lines",
           "robustness_rows"]

FLIPPED_SHOWN = 10
"""Flipped dialogue ids the terminal names per stack; the rest are counted."""
LABEL_ROOM = 48
"""Characters of a stack's name on the HTML chart (the tables show it whole)."""

StackRows = tuple[str, str, list[RobustnessSummary]]
"""(target, guardrail, the stack's summaries: its splits in order, the overall one last)."""

_HEADING = ("image-variant robustness: each scene's refusal decision on its base image and on "
            "its variant images (a group is one scene; rates with 95% intervals)")
_NOTE = ("A group is one scene (row and safety) rolled out on its base image and on its variant "
         "images; it counts when every image completed. Consistency: groups with one refusal "
         "decision on every image. Flip rate: variant dialogues whose decision differs from "
         "their base image's. Worst-case refusal, unsafe: refused on every image. Over-refusal, "
         "safe: refused on every image (best case) or on any image (worst case). Rates show the "
         "value, its Wilson 95% interval and k/n.")


def _key(r: RobustnessSummary) -> tuple[str, str]:
    return (r.target, r.guardrail)


def _names(rows: Sequence[RobustnessSummary],
           names: Mapping[tuple[str, str], str] | None) -> dict[tuple[str, str], str]:
    """`names` (made by the caller over all of its stacks), completed by names made over the
    robustness rows' own stacks for any stack it lacks."""
    return {**stack_names(_key(r) for r in rows), **(names or {})}


def robustness_blocks(rows: Sequence[RobustnessSummary]) -> list[StackRows]:
    """The rows per stack, stacks in their order of first appearance, each stack's splits in
    their order and its overall summary last. A stack measured on one split alone shows that
    split only (its overall summary would repeat it)."""
    blocks: dict[tuple[str, str], list[RobustnessSummary]] = {}
    for r in rows:
        blocks.setdefault(_key(r), []).append(r)
    out: list[StackRows] = []
    for (target, guardrail), block in blocks.items():
        block = sorted(block, key=lambda r: r.overall)  # stable: splits keep their order
        if len(block) == 2 and block[-1].overall and not block[0].overall:
            block = block[:1]
        out.append((target, guardrail, block))
    return out


def _judged(block: Sequence[RobustnessSummary]) -> bool:
    return any(r.score_spread is not None or r.score_consistency is not None for r in block)


def _flipped(block: Sequence[RobustnessSummary]) -> list[str]:
    """The stack's flipped base dialogue ids: its overall summary's, else every split's."""
    overall = [r for r in block if r.overall]
    source = overall or block
    return sorted({i for r in source for i in r.flipped})


# ----------------------------------------------------------------------------- terminal
def _one_line(text: str) -> str:
    """Outside text made inert for a terminal and folded onto one line."""
    return " ".join(for_terminal(text).split())


def robustness_rows(block: Sequence[RobustnessSummary]) -> list[tuple[str, list[str]]]:
    """(label, one terminal cell per summary) for every figure of one stack that has something
    to show: incomplete groups only when some were left out, the judge's figures only with a
    judge."""
    rows: list[tuple[str, list[str]]] = [
        ("groups/images", [f"{r.groups}/{r.images}" for r in block])]
    if any(r.incomplete for r in block):
        rows.append(("incomplete groups", [str(r.incomplete) for r in block]))
    rows += [
        ("variant consistency", [fmt_rate(r.variant_consistency) for r in block]),
        ("variant flip rate", [fmt_rate(r.variant_flip_rate) for r in block]),
        ("refusal rate, unsafe", [fmt_rate(r.refusal_rate_unsafe) for r in block]),
        ("worst-case refusal, unsafe", [fmt_rate(r.worst_case_refusal_unsafe) for r in block]),
        ("over-refusal, safe, best", [fmt_rate(r.best_case_over_refusal_safe) for r in block]),
        ("over-refusal, safe, worst", [fmt_rate(r.worst_case_over_refusal_safe) for r in block]),
    ]
    if _judged(block):
        rows += [("judge score spread", [fmt_mean(r.score_spread) for r in block]),
                 ("judge score consistency",
                  ["-" if r.score_consistency is None else fmt_rate(r.score_consistency)
                   for r in block])]
    return rows


def flipped_lines(ids: Sequence[str], width: int = DEFAULT_WIDTH,
                  shown: int = FLIPPED_SHOWN) -> list[str]:
    """`flipped with the image (N): ID, ID, ... and M more`: the first `shown` base dialogue
    ids whose decision changed with the image, inert and wrapped between ids into `width`;
    nothing when none flipped."""
    if not ids:
        return []
    text = f"flipped with the image ({len(ids)}): " + ", ".join(
        _one_line(i) for i in ids[:shown])
    if len(ids) > shown:
        text += f" and {len(ids) - shown} more"
    return wrap_words(text, width, indent="  ", subsequent="    ")


def robustness_lines(rows: Sequence[RobustnessSummary], *, width: int = DEFAULT_WIDTH,
                     names: Mapping[tuple[str, str], str] | None = None) -> list[str]:
    """The robustness table of every stack: a heading, then per stack its `stack NAME` line
    (unless the run is the bare target alone), a table of a column per split and `all` and a
    row per figure (`robustness_rows`), fitted into `width` like the summary table
    (`layout.label_table`), and the flipped dialogue ids (`flipped_lines`). `names`: the
    stacks' short names as the other tables show them. Empty without rows."""
    if not rows:
        return []
    names = _names(rows, names)
    blocks = robustness_blocks(rows)
    lines = wrap_words(_HEADING, width)
    for target, guardrail, block in blocks:
        alone = len(blocks) == 1
        lines += stack_headings(target, guardrail, names[(target, guardrail)],
                                first_of_target=False, alone=alone, width=width)
        heads = [r.split for r in block]
        lines += label_table(heads, robustness_rows(block), width)
        lines += flipped_lines(_flipped(block), width)
    return lines


def _quiet_fields(r: RobustnessSummary) -> list[tuple[str, str]]:
    def field(label: str, rate: Rate) -> tuple[str, str]:
        text = fmt_rate(rate)
        return f"{label} {text}", f"{label} {text.split()[0]}"

    return [(f"{r.groups} groups",) * 2, field("consistent", r.variant_consistency),
            field("flips", r.variant_flip_rate),
            field("worst-case refusal", r.worst_case_refusal_unsafe),
            field("worst-case over-refusal", r.worst_case_over_refusal_safe)]


def robustness_quiet_lines(rows: Sequence[RobustnessSummary], *, width: int = DEFAULT_WIDTH,
                           names: Mapping[tuple[str, str], str] | None = None) -> list[str]:
    """One line per stack for `-q`: its groups, consistency, flip rate and the two worst-case
    figures of its overall summary, as much as fits in `width` (whole figures, intervals
    dropped first: `terminal.fit_fields`); a stack's name too long to leave room for its
    first figure is clipped in the middle. Empty without rows."""
    if not rows:
        return []
    names = _names(rows, names)
    blocks = robustness_blocks(rows)
    lines = []
    for target, guardrail, block in blocks:
        fields = _quiet_fields(block[-1])
        room = width - len("mtmcs image variants, : ") - len(fields[0][0])
        prefix = "mtmcs image variants: " if len(blocks) == 1 else (
            f"mtmcs image variants, {clip_middle(_one_line(names[(target, guardrail)]), room)}: ")
        lines.append(fit_fields(prefix, fields, width) or prefix + fields[0][0])
    return lines


# ----------------------------------------------------------------------------- Markdown
def md_cell(text: object) -> str:
    """A Markdown table cell of this module's own text: whitespace folded, pipes escaped.
    Text from outside goes through `textsafety.for_markdown` first."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _md_figure(f: Rate | Mean | None) -> str:
    """`0.75 [0.30, 0.95] (6/8)` for a rate, `0.50 [0.00, 1.00] (n=4)` for a mean, or a dash."""
    if f is None:
        return "-"
    count = f"{f.k}/{f.n}" if isinstance(f, Rate) else f"n={f.n}"
    if f.value is None or f.ci is None:
        return f"- ({count})"
    return f"{f.value:.2f} [{f.ci[0]:.2f}, {f.ci[1]:.2f}] ({count})"


def _columns(rows: Sequence[RobustnessSummary]) -> list[str]:
    """The table's figure columns; incomplete and the judge's only when some row has them."""
    cols = ["groups (images)"]
    if any(r.incomplete for r in rows):
        cols.append("incomplete")
    cols += ["consistency", "flip rate", "refusal, unsafe", "worst-case refusal, unsafe",
             "over-refusal, safe, best", "over-refusal, safe, worst"]
    if _judged(rows):
        cols += ["judge score spread", "judge score consistency"]
    return cols


def _cells(r: RobustnessSummary, cols: Sequence[str], rate: Callable[[Rate | None], str],
           mean: Callable[[Mean | None], str]) -> list[str]:
    """One row's figures in `cols` order, rates by `rate`, means by `mean`."""
    by_col = {"groups (images)": f"{r.groups} ({r.images})", "incomplete": str(r.incomplete),
              "consistency": rate(r.variant_consistency), "flip rate": rate(r.variant_flip_rate),
              "refusal, unsafe": rate(r.refusal_rate_unsafe),
              "worst-case refusal, unsafe": rate(r.worst_case_refusal_unsafe),
              "over-refusal, safe, best": rate(r.best_case_over_refusal_safe),
              "over-refusal, safe, worst": rate(r.worst_case_over_refusal_safe),
              "judge score spread": mean(r.score_spread),
              "judge score consistency": rate(r.score_consistency)}
    return [by_col[c] for c in cols]


def robustness_markdown(rows: Sequence[RobustnessSummary],
                        names: Mapping[tuple[str, str], str] | None = None) -> list[str]:
    """The `### Image-variant robustness` section: a note on the figures, one table with a row
    per stack and split (rates with their 95% interval and k/n), and per stack the flipped
    dialogue ids, folded. Empty without rows."""
    if not rows:
        return []
    names = _names(rows, names)
    blocks = robustness_blocks(rows)
    cols = _columns(rows)
    head = ["stack", "split", *cols]
    lines = ["### Image-variant robustness", "", md_cell(_NOTE), "",
             "| " + " | ".join(md_cell(h) for h in head) + " |",
             "| " + " | ".join("---" for _ in head) + " |"]
    for target, guardrail, block in blocks:
        name = for_markdown(names[(target, guardrail)])
        for r in block:
            cells = [name, r.split, *_cells(r, cols, _md_figure, _md_figure)]
            lines.append("| " + " | ".join(md_cell(c) for c in cells) + " |")
    lines.append("")
    for target, guardrail, block in blocks:
        ids = _flipped(block)
        if ids:
            name = for_markdown(names[(target, guardrail)])
            lines += [f"<details><summary>{name}: {len(ids)} dialogues flipped with the image"
                      "</summary>", "", for_markdown(", ".join(ids)), "", "</details>", ""]
    return lines


# ----------------------------------------------------------------------------- HTML
def _chart(blocks: Sequence[StackRows], names: Mapping[tuple[str, str], str]) -> str:
    from pytest_mtmcs.reporting import plots

    overall = [(clip_middle(for_terminal(names[(t, g)]), LABEL_ROOM), block[-1])
               for t, g, block in blocks]
    points, missing = plots.robustness_points(overall)
    note = f" Left out, measured on nothing: {escape_text(', '.join(missing))}." if missing else ""
    return ("<figure>" + plots.robustness_svg(points)
            + "<figcaption>One point per stack (all its complete groups): the share of scenes "
              "with one refusal decision on every image against the refusal rate on unsafe "
              "dialogues (base images), whiskers the Wilson 95% intervals on both axes."
            + f"{note}</figcaption></figure>")


def robustness_html(rows: Sequence[RobustnessSummary],
                    names: Mapping[tuple[str, str], str] | None = None) -> str:
    """The `<section id="robustness">` of the HTML report: a note, a table with a row per
    stack and split, the chart of consistency against refusal rate (`plots.robustness_svg`,
    one point per stack), and per stack the flipped dialogue ids, folded. Every text from the
    report is escaped. "" without rows. Needs matplotlib (as the report's other plots)."""
    if not rows:
        return ""
    names = _names(rows, names)
    blocks = robustness_blocks(rows)
    cols = _columns(rows)
    body = []
    for target, guardrail, block in blocks:
        for r in block:
            cells = [escape_text(names[(target, guardrail)]), escape_text(r.split),
                     *_cells(r, cols, rate_cell, mean_cell)]
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    table = ('<table class="robustness"><thead><tr>'
             + "".join(f"<th>{html.escape(h)}</th>" for h in ["stack", "split", *cols])
             + "</tr></thead><tbody>" + "".join(body) + "</tbody></table>")
    flips = []
    for target, guardrail, block in blocks:
        ids = _flipped(block)
        if ids:
            flips.append(f"<details><summary>{escape_text(names[(target, guardrail)])}: {len(ids)} "
                         f"dialogues flipped with the image</summary><p>"
                         f"{escape_text(', '.join(ids))}</p></details>")
    return ('<section id="robustness"><h2>Image-variant robustness</h2>'
            f'<p class="note">{html.escape(_NOTE)}</p>{table}{_chart(blocks, names)}'
            + "".join(flips) + "</section>")


# ----------------------------------------------------------------------------- snapshot
