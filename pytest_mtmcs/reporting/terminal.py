"""The run in the terminal: the summary table per stack, the quiet one-liners, the gate lines.

Lines are at most `WIDTH` columns.
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_mtmcs.scoring.gates import GateResult
from pytest_mtmcs.scoring.metrics import TOR_BUCKETS, GroupSummary, Mean, Rate
from pytest_mtmcs.textsafety import for_terminal

WIDTH = 100
_LABEL_W = 26
_COL_W = 14
_SHORT = {"multimodal": "mm", "unimodal": "uni"}


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


def divergence_lines(groups: Sequence[GroupSummary]) -> list[str]:
    """The divergence account (`mtmcs score --explain`): per group, the replies the release's
    readers read differently from ours, by shape, with a count and one example each."""
    lines: list[str] = []
    for g in groups:
        if g.release is None or not g.release.divergence:
            continue
        where = "all" if g.overall else f"{g.split} {g.modality}"
        total = sum(d.count for d in g.release.divergence)
        lines.append(f"{clip_middle(g.target, 40)}"
                     + ("" if g.guardrail == "none" else f" + {g.guardrail}")
                     + f", {where}: {total} replies read differently by the release")
        for d in g.release.divergence:
            head = f"  {d.kind:<6}{d.count:>5}  {d.shape:<32}"
            room = max(WIDTH - len(head) - 2, 10)
            example = "" if d.example is None else clip_middle(
                for_terminal(d.example).replace("\n", " "), room - 2)
            lines.append((f"{head}\"{example}\"" if example else head.rstrip())[:WIDTH])
    return lines


def clip_middle(text: str, room: int) -> str:
    """`text`, or its start and end around `...` when longer than `room` (a long spec such as
    `scripted:/a/long/path/replies.json` keeps its scheme and file name)."""
    if len(text) <= room:
        return text
    keep = max(room - 3, 2)
    head = keep // 3
    return text[:head] + "..." + text[len(text) - (keep - head):]


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


def summary_lines(groups: Sequence[GroupSummary]) -> list[str]:
    """One table per (target, guardrail): a column per (split, modality) and one for all of
    them, a row per figure, rates and mean scores with their 95% intervals. At most 100
    columns wide (up to five columns: two splits x two modalities, and all)."""
    lines: list[str] = []
    for target, guardrail, block, heads in stack_blocks(groups):
        tail = "" if guardrail == "none" else f", guardrail {guardrail}"
        lines.append(f"target {clip_middle(target, WIDTH - 7 - len(tail))}{tail}")
        lines.append(" " * _LABEL_W + "".join(f"{h:<{_COL_W}}" for h in heads).rstrip())
        for label, cells in summary_rows(block):
            lines.append(f"{label:<{_LABEL_W}}" + "".join(f"{c:<{_COL_W}}" for c in cells).rstrip())
    return lines


def quiet_lines(groups: Sequence[GroupSummary]) -> list[str]:
    """One line per stack (for `-q`): dialogues passed and the two refusal figures."""
    lines = []
    for g in groups:
        if not g.overall:
            continue
        who = clip_middle(g.target, 40) + ("" if g.guardrail == "none" else f" + {g.guardrail}")
        line = (f"mtmcs {who}: {g.pass_rate.k}/{g.pass_rate.n} passed, refusal "
                f"{fmt_rate(g.refusal_rate_unsafe)}, over-refusal {fmt_rate(g.over_refusal_rate_safe)}")
        if g.safety_aware_avg is not None or g.helpfulness_avg is not None:
            line += (f", SA {fmt_mean(g.safety_aware_avg).split()[0]}, "
                     f"help {fmt_mean(g.helpfulness_avg).split()[0]}")
        lines.append(line[:WIDTH])
    return lines


def gate_lines(gates: Sequence[GateResult]) -> list[str]:
    """The gate table: each gate, the figure, its interval and PASS/FAIL. Under
    `--mtmcs-gate-on lower|upper` each line ends with the limit compared, and a failed gate
    gets a line saying how many more dialogues would decide it (`GateResult.more_needed`)."""
    if not gates:
        return []
    failed = sum(not g.passed for g in gates)
    head = (f"gates: all {len(gates)} passed" if not failed
            else f"gates: {failed} of {len(gates)} FAILED")
    readings = {g.reading() for g in gates}
    if len(readings) == 1 and (reading := readings.pop()):
        head += f" ({reading})"
    lines = [head]
    several = len({(g.target, g.guardrail) for g in gates}) > 1
    for g in gates:
        value = "-" if g.value is None else f"{g.value:.2f}"
        ci = "" if g.ci is None else f"[{g.ci[0]:.2f}, {g.ci[1]:.2f}]"
        used = "" if g.bound == "estimate" or g.used_value is None else (
            f", {g.bound} {g.used_value:.2f}")
        who = f"  {g.target}" + ("" if g.guardrail == "none" else f" + {g.guardrail}") if several else ""
        line = (f"  {'PASS' if g.passed else 'FAIL'}  {g.label:<28}{g.op} {g.threshold:<6g}"
                f"{value:>6} {ci:<14} n={g.n}{used}{who}")
        lines.append(line[:WIDTH])
        if (note := g.to_decide()) is not None:
            lines.append(f"        {note}"[:WIDTH])
    return lines


__all__ = ["RELEASE_LABELS", "WIDTH", "clip_middle", "divergence_lines", "fmt_mean", "fmt_rate",
           "fmt_release", "gate_lines", "quiet_lines", "release_rows", "stack_blocks",
           "summary_lines", "summary_rows"]
