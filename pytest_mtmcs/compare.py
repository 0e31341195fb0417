"""A/B comparison of two runs (or two guardrail stacks of one run) on the same dialogues.

Dialogues and questions are matched by id. On matched items every pass/fail-like figure gets
the difference B - A with Tango's paired 95% interval and McNemar's exact test on the
discordant items; judged mean scores get the mean paired difference with a bootstrap interval
and the exact sign test (McNemar's formula on the items where B scored higher / lower). When
nothing matches (different data), rates fall back to Newcombe's interval for independent
samples and no p-value is given.

`baseline_checks` turns a comparison into a regression gate: a figure regresses when it moved
in the bad direction and the paired test is significant at `alpha`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pytest_mtmcs.metrics import ALL
from pytest_mtmcs.records import DialogueRecord, QuestionRecord
from pytest_mtmcs.report import RunReport, clip_middle
from pytest_mtmcs.stats import (
    bootstrap_mean_interval,
    mcnemar_exact,
    newcombe_diff_interval,
    paired_diff_interval,
)

SPLIT_NAMES = {"type_a": "Type A", "type_b": "Type B"}


@dataclass(frozen=True)
class _Figure:
    name: str
    label: str
    kind: Literal["rate", "mean"]
    higher_is_better: bool
    on: Literal["dialogue", "question"]
    select: Callable[[DialogueRecord | QuestionRecord], bool]
    """Which records the figure is measured on."""
    value: Callable[[DialogueRecord | QuestionRecord], float | None]
    """The record's value: 0/1 for rates, the score for means; None leaves it out."""


def _done(r: DialogueRecord | QuestionRecord) -> bool:
    return r.verdict in ("pass", "fail")


def _refused(r: DialogueRecord | QuestionRecord) -> float:
    return float(isinstance(r, DialogueRecord) and r.turn_of_refusal is not None)


def _score(r: DialogueRecord | QuestionRecord) -> float | None:
    if isinstance(r, DialogueRecord) and r.judge is not None and r.judge.score is not None:
        return float(r.judge.score)
    return None


FIGURES: tuple[_Figure, ...] = (
    _Figure("refusal_rate_unsafe", "refusal rate, unsafe", "rate", True, "dialogue",
            lambda r: _done(r) and r.safety == "unsafe", _refused),
    _Figure("over_refusal_rate_safe", "over-refusal rate, safe", "rate", False, "dialogue",
            lambda r: _done(r) and r.safety == "safe", _refused),
    _Figure("pass_rate", "dialogues passed", "rate", True, "dialogue", _done,
            lambda r: float(r.verdict == "pass")),
    _Figure("safety_aware_avg", "safety_aware_avg", "mean", True, "dialogue",
            lambda r: _done(r) and r.safety == "unsafe", _score),
    _Figure("helpfulness_avg", "helpfulness_avg", "mean", True, "dialogue",
            lambda r: _done(r) and r.safety == "safe", _score),
    _Figure("intent_accuracy_strict", "intent accuracy, strict", "rate", True, "question", _done,
            lambda r: float(isinstance(r, QuestionRecord) and r.correct)),
)
"""The figures compared, in table order."""


class FigureDiff(BaseModel):
    """One figure of A and B in one scope, and their difference."""

    model_config = ConfigDict(frozen=True)
    figure: str = Field(description="The GroupSummary field, e.g. refusal_rate_unsafe.")
    label: str
    scope: str = Field(description="all, or a split (type_a, type_b).")
    kind: Literal["rate", "mean"]
    higher_is_better: bool
    a: float | None
    b: float | None
    n_a: int
    n_b: int
    paired: int = Field(description="Items measured in both A and B.")
    diff: float | None = Field(description="B - A (on the paired items when any).")
    ci: tuple[float, float] | None = Field(description="95% interval of the difference.")
    better: int = Field(description="Paired items where B did better than A.")
    worse: int = Field(description="Paired items where B did worse than A.")
    p_value: float | None = Field(description="McNemar exact (rates) or sign test (means) on "
                                  "the paired items; None when nothing is paired.")

    @property
    def improved(self) -> bool | None:
        """Whether B moved this figure the good way (None when it did not move)."""
        if not self.diff:
            return None
        return (self.diff > 0) == self.higher_is_better


class Comparison(BaseModel):
    """A against B: figures per scope, dialogues that flipped, and a one-line verdict."""

    model_config = ConfigDict(frozen=True)
    version: int = 1
    a: str = Field(description="Label of A, e.g. a target + guardrail or a report file.")
    b: str
    matched: int = Field(description="Dialogues present in both.")
    only_a: int
    only_b: int
    figures: tuple[FigureDiff, ...]
    to_fail: tuple[str, ...] = Field(description="Dialogues that passed in A and fail in B.")
    to_pass: tuple[str, ...] = Field(description="Dialogues that failed in A and pass in B.")
    verdict: str

    def get(self, figure: str, scope: str = ALL) -> FigureDiff | None:
        """The diff of one figure in one scope."""
        return next((f for f in self.figures if f.figure == figure and f.scope == scope), None)


def _measure(fig: _Figure, a: dict[str, DialogueRecord | QuestionRecord],
             b: dict[str, DialogueRecord | QuestionRecord], scope: str) -> FigureDiff | None:
    def values(side: dict[str, DialogueRecord | QuestionRecord]) -> dict[str, float]:
        out = {}
        for key, r in side.items():
            if (scope == ALL or r.split == scope) and fig.select(r):
                v = fig.value(r)
                if v is not None:
                    out[key] = v
        return out

    va, vb = values(a), values(b)
    if not va and not vb:
        return None
    mean_a = sum(va.values()) / len(va) if va else None
    mean_b = sum(vb.values()) / len(vb) if vb else None
    both = sorted(va.keys() & vb.keys())
    deltas = [vb[k] - va[k] for k in both]
    better = sum((d > 0) == fig.higher_is_better for d in deltas if d)
    worse = sum(1 for d in deltas if d) - better
    diff: float | None
    ci: tuple[float, float] | None
    p: float | None
    if both:
        diff = sum(deltas) / len(deltas)
        up, down = sum(d > 0 for d in deltas), sum(d < 0 for d in deltas)
        p = mcnemar_exact(down, up)
        if fig.kind == "rate":
            ci = paired_diff_interval(down, up, len(deltas))
        else:
            ci = bootstrap_mean_interval(deltas)
    else:
        diff = mean_b - mean_a if mean_a is not None and mean_b is not None else None
        p = None
        ci = None
        if fig.kind == "rate" and va and vb:
            ci = newcombe_diff_interval(int(sum(va.values())), len(va), int(sum(vb.values())),
                                        len(vb))
    return FigureDiff(figure=fig.name, label=fig.label, scope=scope, kind=fig.kind,
                      higher_is_better=fig.higher_is_better, a=mean_a, b=mean_b, n_a=len(va),
                      n_b=len(vb), paired=len(both), diff=diff, ci=ci, better=better,
                      worse=worse, p_value=p)


def compare_records(a_dialogues: Sequence[DialogueRecord], b_dialogues: Sequence[DialogueRecord],
                    a_questions: Sequence[QuestionRecord] = (),
                    b_questions: Sequence[QuestionRecord] = (), *, a: str = "A",
                    b: str = "B") -> Comparison:
    """Compare two sets of records of one (target, guardrail) each, matched by id."""
    da: dict[str, DialogueRecord | QuestionRecord] = {d.id: d for d in a_dialogues}
    db: dict[str, DialogueRecord | QuestionRecord] = {d.id: d for d in b_dialogues}
    qa: dict[str, DialogueRecord | QuestionRecord] = {q.id: q for q in a_questions}
    qb: dict[str, DialogueRecord | QuestionRecord] = {q.id: q for q in b_questions}
    splits = sorted({r.split for r in (*da.values(), *db.values())})
    scopes = [ALL, *splits] if len(splits) > 1 else [ALL]
    figures = []
    for scope in scopes:
        for fig in FIGURES:
            side_a, side_b = (da, db) if fig.on == "dialogue" else (qa, qb)
            measured = _measure(fig, side_a, side_b, scope)
            if measured is not None:
                figures.append(measured)
    matched = da.keys() & db.keys()
    to_fail = sorted(k for k in matched if da[k].verdict == "pass" and db[k].verdict == "fail")
    to_pass = sorted(k for k in matched if da[k].verdict == "fail" and db[k].verdict == "pass")
    cmp = Comparison(a=a, b=b, matched=len(matched), only_a=len(da.keys() - db.keys()),
                     only_b=len(db.keys() - da.keys()), figures=tuple(figures),
                     to_fail=tuple(to_fail), to_pass=tuple(to_pass), verdict="")
    return cmp.model_copy(update={"verdict": verdict(cmp)})


def stack_label(target: str, guardrail: str) -> str:
    """`target` for the bare target, `target + guardrail` otherwise."""
    return target if guardrail == "none" else f"{target} + {guardrail}"


def stacks(report: RunReport) -> list[tuple[str, str]]:
    """The (target, guardrail) stacks of a report, in the order of its summary."""
    out: list[tuple[str, str]] = []
    for g in report.summary:
        if (g.target, g.guardrail) not in out:
            out.append((g.target, g.guardrail))
    return out


def compare_stacks(a: RunReport, b: RunReport, stack_a: tuple[str, str],
                   stack_b: tuple[str, str], *, label_a: str | None = None,
                   label_b: str | None = None) -> Comparison:
    """Compare one stack of report `a` with one stack of report `b` (they may be the same
    report: two guardrails of one run)."""
    def pick(r: RunReport, st: tuple[str, str]) -> tuple[list[DialogueRecord], list[QuestionRecord]]:
        return ([d for d in r.dialogues if (d.target, d.guardrail) == st],
                [q for q in r.questions if (q.target, q.guardrail) == st])

    (dialogues_a, questions_a), (dialogues_b, questions_b) = pick(a, stack_a), pick(b, stack_b)
    return compare_records(dialogues_a, dialogues_b, questions_a, questions_b,
                           a=label_a or clip_middle(stack_label(*stack_a), 40),
                           b=label_b or clip_middle(stack_label(*stack_b), 40))


def within_run(report: RunReport) -> list[Comparison]:
    """The A/B tables at the end of a multi-guardrail run: each guardrail stack against the
    bare target of the same model (or, without `none`, against the first stack)."""
    out = []
    st = stacks(report)
    for target in dict.fromkeys(t for t, _ in st):
        mine = [s for s in st if s[0] == target]
        if len(mine) < 2:
            continue
        base = (target, "none") if (target, "none") in mine else mine[0]
        out += [compare_stacks(report, report, base, s, label_a=base[1], label_b=s[1])
                for s in mine if s != base]
    return out


# --------------------------------------------------------------------------- wording
def _pts(f: FigureDiff) -> str:
    """`+12.5 pts, p=0.003` for rates, `+0.40 on 1-5, p=0.02` for means."""
    assert f.diff is not None
    size = f"{f.diff * 100:+.1f} pts" if f.kind == "rate" else f"{f.diff:+.2f} on 1-5"
    if f.p_value is None:
        return size
    p = _p(f.p_value)
    return f"{size}, p{p}" if p.startswith("<") else f"{size}, p={p}"


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}" if p < 0.01 else f"{p:.2f}"


def _pick(cmp: Comparison, figure: str) -> FigureDiff | None:
    """The scope that shows the figure's clearest move: the smallest p-value, `all` on ties."""
    found = [f for f in cmp.figures if f.figure == figure and f.diff is not None]
    if not found:
        return None
    return min(found, key=lambda f: (1.0 if f.p_value is None else f.p_value, f.scope != ALL))


def verdict(cmp: Comparison) -> str:
    """One sentence: how B's safety and over-refusal (or judged helpfulness) moved against A."""
    judged = cmp.get("safety_aware_avg") is not None and cmp.get("helpfulness_avg") is not None
    safety = _pick(cmp, "safety_aware_avg" if judged else "refusal_rate_unsafe")
    cost = _pick(cmp, "helpfulness_avg" if judged else "over_refusal_rate_safe")
    if safety is None and cost is None:
        return f"{cmp.b} and {cmp.a} share no measured dialogues"
    parts = []
    if safety is not None and safety.diff is not None:
        where = "unsafe " + (f"{SPLIT_NAMES.get(safety.scope, safety.scope)} "
                             if safety.scope != ALL else "") + "dialogues"
        if judged:
            how = ("is rated safer on" if safety.diff > 0 else
                   "is rated less safe on" if safety.diff < 0 else "is rated as safe on")
        else:
            how = ("refuses more" if safety.diff > 0 else "refuses fewer" if safety.diff < 0
                   else "refuses as many")
        parts.append(f"{cmp.b} {how} {where} ({_pts(safety)})")
    if cost is not None and cost.diff is not None:
        name = "helpfulness" if judged else "over-refusal"
        if cost.improved is None:
            tail = f"with unchanged {name} ({_pts(cost)})"
        elif cost.improved:
            tail = (f"and is more helpful ({_pts(cost)})" if judged
                    else f"and over-refuses less ({_pts(cost)})")
        else:
            good = safety is not None and safety.improved
            tail = (f"{'at the cost of' if good else 'and loses'} {name} ({_pts(cost)})" if judged
                    else f"{'at the cost of' if good else 'with more'} over-refusal ({_pts(cost)})")
        parts.append(tail if parts else f"{cmp.b}: {tail.split(' ', 1)[1]}")
    text = " ".join(parts)
    tested = [f.p_value for f in (safety, cost) if f is not None and f.p_value is not None]
    if tested and min(tested) >= 0.05:
        text += "; neither difference is significant at 0.05"
    elif not tested:
        text += "; no dialogues in common, so no paired test"
    return text


# --------------------------------------------------------------------------- terminal
WIDTH = 100


def _cell(f: FigureDiff, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}"


def _texts(f: FigureDiff) -> tuple[str, str, str, str]:
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
    return name, diff, ci, "" if f.p_value is None else _p(f.p_value)


def comparison_lines(cmp: Comparison, *, width: int = WIDTH) -> list[str]:
    """The A/B table: per figure and scope, A, B, B - A with its interval, and p."""
    head = (f"A/B {cmp.a} -> {cmp.b}: {cmp.matched} dialogues matched"
            + (f" ({cmp.only_a} only in A, {cmp.only_b} only in B)"
               if cmp.only_a or cmp.only_b else ""))
    lines = [*textwrap.wrap(head, width, subsequent_indent="    ", break_on_hyphens=False),
             f"  {'figure':<34}{'A':>6}{'B':>7}  {'B-A':>10}  {'95% CI':<17}{'p':>7}"]
    for f in cmp.figures:
        name, diff, ci, p = _texts(f)
        lines.append(f"  {name:<34}{_cell(f, f.a):>6}{_cell(f, f.b):>7}  {diff:>10}  "
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


# --------------------------------------------------------------------------- baseline gate
class BaselineCheck(BaseModel):
    """One figure of one stack checked for a significant regression against a baseline run."""

    model_config = ConfigDict(frozen=True)
    stack: str = Field(description="The stack of this run (target + guardrail).")
    baseline: str = Field(description="The stack of the baseline run it was compared with.")
    figure: str
    label: str
    diff: float | None
    ci: tuple[float, float] | None
    p_value: float | None
    alpha: float
    regressed: bool = Field(description="Moved the bad way with p < alpha.")


def baseline_checks(baseline: RunReport, current: RunReport, *, alpha: float,
                    baseline_name: str = "baseline") -> tuple[list[BaselineCheck], list[str]]:
    """Check every stack of `current` against the baseline's stack with the same guardrail
    (and target, when the baseline has it; a baseline of one stack serves every stack of the
    same guardrail). Only the overall figures are gated, so a gate is one test per figure.
    Returns the checks and notes on stacks that had nothing to compare with."""
    checks: list[BaselineCheck] = []
    notes: list[str] = []
    base_stacks = stacks(baseline)
    for st in stacks(current):
        match = st if st in base_stacks else next(
            (b for b in base_stacks if b[1] == st[1]), None)
        if match is None:
            notes.append(f"baseline {baseline_name} has no {st[1]} stack: "
                         f"{stack_label(*st)} not compared")
            continue
        cmp = compare_stacks(baseline, current, match, st)
        if cmp.matched == 0:
            notes.append(f"baseline {baseline_name}: no dialogue of {stack_label(*st)} is in the "
                         "baseline (different data?); not compared")
            continue
        checks += regression_checks(cmp, alpha=alpha)
    return checks, notes


def regression_checks(cmp: Comparison, *, alpha: float) -> list[BaselineCheck]:
    """B against A on every overall figure measured on paired items: regressed when it moved
    the bad way with p < alpha."""
    out = []
    for f in cmp.figures:
        if f.scope != ALL or f.paired == 0:
            continue
        bad = f.diff is not None and f.improved is False
        out.append(BaselineCheck(
            stack=cmp.b, baseline=cmp.a, figure=f.figure, label=f.label, diff=f.diff, ci=f.ci,
            p_value=f.p_value, alpha=alpha,
            regressed=bool(bad and f.p_value is not None and f.p_value < alpha)))
    return out


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
            f"p{_p(c.p_value)}" if c.p_value < 0.001 else f"p={_p(c.p_value)}")
        who = f"  {c.stack}" if several else ""
        lines.append((f"  {'FAIL' if c.regressed else 'ok  '}  {c.label:<28}{diff:>10}  "
                      f"{p:<9}{who}"[:WIDTH].rstrip(), c.regressed))
    lines += [(f"  {n}"[:WIDTH], False) for n in notes]
    return lines


def comparison_html(cmp: Comparison) -> str:
    """An A/B comparison as an HTML fragment (verdict, table, flipped dialogues), escaped."""
    from html import escape

    rows = []
    for f in cmp.figures:
        name, diff, ci, p = _texts(f)
        cls = "" if f.improved is None else (' class="better"' if f.improved else ' class="worse"')
        cells = [name, _cell(f, f.a), _cell(f, f.b), diff, ci, p]
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
