"""The run in the terminal: the summary table per stack, the quiet one-liners, the gate lines.

Every function takes the terminal's `width` (`layout.DEFAULT_WIDTH` when unknown) and fits its
lines into it without cutting a figure (`layout`): a wide table is split, a long row wraps
between cells, a `-q` line drops whole fields. The target is named once, in a heading; stacks
are named by `names.stack_names` (their guardrail, shortened, never two alike).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from pytest_mtmcs.reporting.layout import (
    DEFAULT_WIDTH,
    clip_middle,
    label_table,
    wrap_cells,
    wrap_words,
)
from pytest_mtmcs.reporting.names import stack_names, targets
from pytest_mtmcs.scoring.gates import GateResult
from pytest_mtmcs.scoring.metrics import TOR_BUCKETS, GroupSummary, Mean, Rate
from pytest_mtmcs.textsafety import for_terminal

WIDTH = 100
"""Deprecated: the fixed width lines used to be cut at. Kept for `snapshot`'s lines until it
takes the terminal's width; the tables here use `width` (default `DEFAULT_WIDTH`)."""
_SHORT = {"multimodal": "mm", "unimodal": "uni"}


class TermLine(NamedTuple):
    """A line of the gate table and how the summary shows it."""

    text: str
    red: bool = False
    green: bool = False
    quiet: bool = False
    """Shown under `-q` as well (the verdict line and the failed gates)."""


def _ci(ci: tuple[float, float] | None, digits: int) -> str:
    if ci is None:
        return ""
    lo, hi = (f"{x:.{digits}f}" for x in ci)
    if digits == 2:  # ".30-.95": rates only; a score interval keeps its leading digit
        lo, hi = (x[1:] if x.startswith("0.") else x for x in (lo, hi))
    return f"{lo}-{hi}"


def fmt_rate(r: Rate) -> str:
    """`0.75 .30-.95`: the rate and its interval, or `-` when nothing was measured."""
    return "-" if r.value is None else f"{r.value:.2f} {_ci(r.ci, 2)}"


def fmt_mean(m: Mean | None) -> str:
    """`3.50 2.8-4.2`: the mean score and its interval, or `-`."""
    return "-" if m is None or m.value is None else f"{m.value:.2f} {_ci(m.ci, 1)}"


def summary_rows(groups: Sequence[GroupSummary]) -> list[tuple[str, list[str]]]:
    """(label, one cell per group) for every row that has something to show."""
    def tor(h: dict[str, int]) -> str:
        return "/".join(str(h.get(b, 0)) for b in TOR_BUCKETS)

    rows: list[tuple[str, list[str]]] = [
        ("dialogues passed/done", [f"{g.pass_rate.k}/{g.pass_rate.n}" for g in groups]),
        ("refusal rate, unsafe", [fmt_rate(g.refusal_rate_unsafe) for g in groups]),
        ("over-refusal rate, safe", [fmt_rate(g.over_refusal_rate_safe) for g in groups]),
        ("refused at R1/R2/R3/no, U", [tor(g.tor_unsafe) for g in groups]),
        ("refused at R1/R2/R3/no, S", [tor(g.tor_safe) for g in groups]),
    ]
    if any(g.safety_aware_avg is not None or g.helpfulness_avg is not None for g in groups):
        rows += [("safety_aware_avg", [fmt_mean(g.safety_aware_avg) for g in groups]),
                 ("helpfulness_avg", [fmt_mean(g.helpfulness_avg) for g in groups])]
    if any(g.intent_accuracy_strict.n for g in groups):
        rows += [("safe_mcq_accuracy", [fmt_rate(g.safe_mcq_accuracy) for g in groups]),
                 ("unsafe_mcq_accuracy", [fmt_rate(g.unsafe_mcq_accuracy) for g in groups]),
                 ("unsafe_tf_accuracy", [fmt_rate(g.unsafe_tf_accuracy) for g in groups]),
                 ("intent accuracy, strict", [fmt_rate(g.intent_accuracy_strict) for g in groups])]
    rows += release_rows(groups)
    p = [g.pairs for g in groups]
    rows.append(("pairs ok/over/miss/both", [
        f"{x.both_right}/{x.over_refused_safe}/{x.missed_unsafe}/{x.both_wrong}" for x in p]))
    if any(g.guard_cost is not None for g in groups):
        def cost(g: GroupSummary, what: str) -> str:
            c = g.guard_cost
            if c is None:
                return "-"
            if what == "blocked":
                return f"{c.blocked_turns}/{c.turns}"
            if what == "calls":
                return f"{c.extra_calls / c.turns:.2f}"
            return f"{c.latency_p50_s * 1000:.0f}/{c.latency_p95_s * 1000:.0f}"

        rows += [("guard: blocked turns", [cost(g, "blocked") for g in groups]),
                 ("guard: extra calls/turn", [cost(g, "calls") for g in groups]),
                 ("guard: +ms/turn p50/p95", [cost(g, "latency") for g in groups])]
    if any(g.unparsed or g.judge_unparsed for g in groups):
        rows.append(("unparsed answers/judge", [f"{g.unparsed}/{g.judge_unparsed}" for g in groups]))
    if any(g.errored or g.skipped for g in groups):
        rows.append(("errored/skipped items", [f"{g.errored}/{g.skipped}" for g in groups]))
    return rows


RELEASE_LABELS = {"safe_mcq_accuracy": "safe MCQ", "unsafe_mcq_accuracy": "unsafe MCQ",
                  "unsafe_tf_accuracy": "unsafe TF", "safety_aware_avg": "safety_aware",
                  "helpfulness_avg": "helpfulness"}
"""Short labels of the release's figures in the terminal's `release:` rows."""


def fmt_release(figure: Rate | Mean) -> str:
    """A release figure as the release reports it: `0.38 8/21` (a rate), `3.20 n=10` (a mean)."""
    if figure.value is None:
        return "-"
    if isinstance(figure, Rate):
        return f"{figure.value:.2f} {figure.k}/{figure.n}"
    return f"{figure.value:.2f} n={figure.n}"


def release_rows(groups: Sequence[GroupSummary]) -> list[tuple[str, list[str]]]:
    """A `release: <figure>` row for each figure whose release reading differs from ours in
    some group: the release's figure where it differs, `=` where it is ours."""
    rows: list[tuple[str, list[str]]] = []
    differs = [g.release.differs(g) if g.release is not None else {} for g in groups]
    for name, label in RELEASE_LABELS.items():
        if not any(name in d for d in differs):
            continue
        rows.append((f"release: {label}",
                     [fmt_release(d[name][1]) if name in d else "=" for d in differs]))
    return rows


def divergence_lines(groups: Sequence[GroupSummary], *, width: int = DEFAULT_WIDTH) -> list[str]:
    """The divergence account (`mtmcs score --explain`): per group, the replies the release's
    readers read differently from ours, by shape, with a count and one example each (an
    example, server text, is clipped to the width; the counts never are)."""
    lines: list[str] = []
    names = stack_names((g.target, g.guardrail) for g in groups)
    for g in groups:
        if g.release is None or not g.release.divergence:
            continue
        where = "all" if g.overall else f"{g.split} {g.modality}"
        who = for_terminal(names[(g.target, g.guardrail)])
        total = sum(d.count for d in g.release.divergence)
        lines += wrap_words(f"{who}, {where}: {total} replies read differently by the release",
                            width)
        for d in g.release.divergence:
            head = f"  {d.kind:<6}{d.count:>5}  {d.shape:<32}"
            room = width - len(head) - 2
            example = "" if d.example is None or room < 10 else clip_middle(
                for_terminal(d.example).replace("\n", " "), room)
            lines.append(f"{head}\"{example}\"" if example else head.rstrip())
    return lines


def stack_blocks(groups: Sequence[GroupSummary]) -> list[tuple[str, str, list[GroupSummary], list[str]]]:
    """(target, guardrail, its groups, a column heading per group) for every stack, in order.
    With a single (split, modality) the `all` group is dropped: it would repeat it."""
    blocks: dict[tuple[str, str], list[GroupSummary]] = {}
    for g in groups:
        blocks.setdefault((g.target, g.guardrail), []).append(g)
    out = []
    for (target, guardrail), block in blocks.items():
        if len(block) == 2 and block[-1].overall:
            block = block[:1]
        heads = ["all" if g.overall else f"{g.split} {_SHORT.get(g.modality, g.modality)}"
                 for g in block]
        out.append((target, guardrail, block, heads))
    return out


def stack_headings(target: str, guardrail: str, name: str, *, first_of_target: bool,
                   alone: bool, width: int) -> list[str]:
    """The lines above a stack's table: `target SPEC` before the first stack of each target (the
    target is named there only), then `stack NAME` unless the stack is the target alone; a
    name shortened from its guardrail's spec is followed by the spec."""
    lines = [f"target {for_terminal(target)}"] if first_of_target else []
    if not alone or guardrail != "none":
        name, full = for_terminal(name), for_terminal(guardrail)
        lines += wrap_words(f"stack {name}" + (
            "" if guardrail == "none" or full in name else f" (guardrail {full})"),
                            width)
    return lines


def summary_lines(groups: Sequence[GroupSummary], *, width: int = DEFAULT_WIDTH) -> list[str]:
    """One table per (target, guardrail): a column per (split, modality) and one for all of
    them, a row per figure, rates and mean scores with their 95% intervals. The target heads
    its stacks once; each stack is headed by its short name. A table wider than `width` is
    split into several, each repeating the row labels; no figure is cut."""
    lines: list[str] = []
    blocks = stack_blocks(groups)
    names = stack_names((t, g) for t, g, _, _ in blocks)
    seen: set[str] = set()
    for target, guardrail, block, heads in blocks:
        alone = sum(t == target for t, _, _, _ in blocks) == 1
        lines += stack_headings(target, guardrail, names[(target, guardrail)],
                                first_of_target=target not in seen, alone=alone, width=width)
        seen.add(target)
        lines += label_table(heads, summary_rows(block), width)
    return lines


def quiet_fields(g: GroupSummary) -> list[tuple[str, str]]:
    """A stack's `-q` figures, most important first, each (with its interval, without)."""
    fields = [(f"{g.pass_rate.k}/{g.pass_rate.n} passed",) * 2,
              (f"refusal {fmt_rate(g.refusal_rate_unsafe)}",
               f"refusal {fmt_rate(g.refusal_rate_unsafe).split()[0]}"),
              (f"over-refusal {fmt_rate(g.over_refusal_rate_safe)}",
               f"over-refusal {fmt_rate(g.over_refusal_rate_safe).split()[0]}")]
    if g.safety_aware_avg is not None or g.helpfulness_avg is not None:
        fields += [(f"SA {fmt_mean(g.safety_aware_avg).split()[0]}",) * 2,
                   (f"help {fmt_mean(g.helpfulness_avg).split()[0]}",) * 2]
    return fields


def fit_fields(prefix: str, fields: Sequence[tuple[str, str]], width: int) -> str | None:
    """`prefix` + the fields joined by `, `, as much as fits in `width`: every field with its
    interval, else without intervals, else the first fields only (whole fields, never part of
    one). None when not even the first field fits."""
    for keep in range(len(fields), 0, -1):
        for variant in (0, 1):
            line = prefix + ", ".join(f[variant] for f in fields[:keep])
            if len(line) <= width:
                return line
    return None


def quiet_lines(groups: Sequence[GroupSummary], *, width: int = DEFAULT_WIDTH) -> list[str]:
    """One line per stack (for `-q`): dialogues passed and the two refusal figures (and the
    judge's means). A run of the bare target alone is one line named by the target when it
    fits; otherwise the target has a line of its own and each stack is named short. A line too
    long for `width` drops intervals, then whole figures from the end, never half of one."""
    overall = [g for g in groups if g.overall]
    names = stack_names((g.target, g.guardrail) for g in overall)
    if len(overall) == 1 and overall[0].guardrail == "none":
        g = overall[0]
        fields = quiet_fields(g)
        line = f"mtmcs {for_terminal(g.target)}: " + ", ".join(f[0] for f in fields)
        if len(line) <= width:
            return [line]
    lines: list[str] = []
    for target in targets(names):
        lines.append(f"mtmcs target {for_terminal(target)}")
        for g in overall:
            if g.target != target:
                continue
            prefix = f"mtmcs {for_terminal(names[(g.target, g.guardrail)])}: "
            fields = quiet_fields(g)
            lines.append(fit_fields(prefix, fields, width) or prefix + fields[0][0])
    return lines


def _threshold(t: float) -> str:
    """The threshold as given: `0.9`, never rounded (`:g` keeps six digits only)."""
    short = f"{t:g}"
    return short if float(short) == t else repr(t)


def gate_table(gates: Sequence[GateResult], *, width: int = DEFAULT_WIDTH,
               names: dict[tuple[str, str], str] | None = None) -> list[TermLine]:
    """The gate table: a verdict line, then each gate, the figure, its interval, n and
    PASS/FAIL, and, when the run has several stacks, the stack's short name (`names`, else
    `names.stack_names` of the gates' stacks). Under `--mtmcs-gate-on lower|upper` each row
    ends with the limit compared, and a failed gate gets a line saying how many more dialogues
    would decide it (`GateResult.more_needed`). A row too long for `width` continues on the
    next line, breaking between columns only."""
    if not gates:
        return []
    failed = sum(not g.passed for g in gates)
    head = (f"gates: all {len(gates)} passed" if not failed
            else f"gates: {failed} of {len(gates)} FAILED")
    readings = {g.reading() for g in gates}
    if len(readings) == 1 and (reading := readings.pop()):
        head += f" ({reading})"
    out = [TermLine(line, red=bool(failed), green=not failed, quiet=True)
           for line in wrap_words(head, width)]
    stacks = list(dict.fromkeys((g.target, g.guardrail) for g in gates))
    if names is None:
        names = stack_names(stacks)
    several = len(stacks) > 1
    cols = [[g.label, f"{g.op} {_threshold(g.threshold)}",
             "-" if g.value is None else f"{g.value:.2f}",
             "" if g.ci is None else f"[{g.ci[0]:.2f}, {g.ci[1]:.2f}]",
             f"n={g.n}" + ("" if g.bound == "estimate" or g.used_value is None
                           else f", {g.bound} {g.used_value:.2f}"),
             for_terminal(names.get((g.target, g.guardrail), g.guardrail)) if several else ""]
            for g in gates]
    w = [max(len(row[i]) for row in cols) for i in range(4)]
    padded = [["PASS" if g.passed else "FAIL", f"{row[0]:<{w[0]}}", f"{row[1]:<{w[1]}}",
               f"{row[2]:>{w[2]}} {row[3]:<{w[3]}}".rstrip(), row[4], row[5]]
              for g, row in zip(gates, cols, strict=True)]
    # Aligned columns when every row's figures fit (a long stack name may still move to the
    # next line); else plain single spaces, each row wrapped between its cells.
    aligned = all(len("  " + "  ".join(c for c in cells[:5] if c)) <= width for cells in padded)
    for g, cells in zip(gates, padded, strict=True):
        if aligned:
            lines = wrap_cells(cells, width)
        else:
            lines = wrap_cells([cells[0] + " ", *(c.strip() for c in cells[1:])], width, sep=" ")
        out += [TermLine(line, red=not g.passed, quiet=not g.passed) for line in lines]
        if (note := g.to_decide()) is not None:
            out += [TermLine(line) for line in
                    wrap_words(note, width, indent=" " * 8, subsequent=" " * 10)]
    return out


def gate_lines(gates: Sequence[GateResult], *, width: int = DEFAULT_WIDTH,
               names: dict[tuple[str, str], str] | None = None) -> list[str]:
    """The text of `gate_table`'s lines."""
    return [line.text for line in gate_table(gates, width=width, names=names)]


__all__ = ["DEFAULT_WIDTH", "RELEASE_LABELS", "WIDTH", "TermLine", "clip_middle",
           "divergence_lines", "fit_fields", "fmt_mean", "fmt_rate", "fmt_release", "gate_lines",
           "gate_table", "quiet_fields", "quiet_lines", "release_rows", "stack_blocks",
           "stack_headings", "summary_lines", "summary_rows"]
