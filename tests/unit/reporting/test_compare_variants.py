"""A/B comparison with image variants: the standard figures stay on the base images, and
`variant_consistency` is compared group by group with McNemar's exact test."""

from __future__ import annotations

import pytest

from pytest_mtmcs.reporting.compare import (
    FIGURES,
    baseline_checks,
    compare_records,
    regression_checks,
    within_run,
)
from pytest_mtmcs.reporting.comparison_views import comparison_lines
from pytest_mtmcs.reporting.report import RunReport
from pytest_mtmcs.scoring.metrics import ALL, summarize
from pytest_mtmcs.scoring.records import DialogueRecord, QuestionRecord
from pytest_mtmcs.scoring.robustness import robustness
from pytest_mtmcs.scoring.stats import mcnemar_exact, paired_diff_interval


def dlg(split: str, row: int, safety: str, refused: bool, variant: int = 0, *,
        guardrail: str = "none") -> DialogueRecord:
    """A completed multimodal dialogue, refused at turn 1 or never, passing when that is right."""
    suffix = f"-v{variant}" if variant else ""
    return DialogueRecord(
        id=f"{split}-{row:04d}-multimodal-{safety}{suffix}", split=split, row_id=row,
        modality="multimodal", safety=safety, variant=variant, target="m", guardrail=guardrail,
        turn_of_refusal=1 if refused else None,
        verdict="pass" if refused == (safety == "unsafe") else "fail")


def group(split: str, row: int, safety: str, decisions: str, *,
          guardrail: str = "none") -> list[DialogueRecord]:
    """One dialogue per image: `decisions` is R (refused) / N for base, v1, v2, ..."""
    return [dlg(split, row, safety, c == "R", v, guardrail=guardrail)
            for v, c in enumerate(decisions)]


def question(row: int, variant: int, correct: bool, guardrail: str) -> QuestionRecord:
    suffix = f"-v{variant}" if variant else ""
    base = f"type_a-{row:04d}-multimodal-unsafe{suffix}"
    return QuestionRecord(id=f"{base}-mcq0", dialogue_id=base, split="type_a", row_id=row,
                          modality="multimodal", safety="unsafe", variant=variant, target="m",
                          guardrail=guardrail, kind="mcq", expected="A",
                          parsed="A" if correct else "B", correct=correct,
                          verdict="pass" if correct else "fail")


def stack_a(guardrail: str = "none") -> list[DialogueRecord]:
    """Type A unsafe rows 0..4 refused on the base image and v2 but not v1 (inconsistent), rows
    5..7 refused on every image; type A safe row 0 answered on every image; Type B unsafe rows
    0..2 refused on every image."""
    return ([d for i in range(5) for d in group("type_a", i, "unsafe", "RNR", guardrail=guardrail)]
            + [d for i in range(5, 8)
               for d in group("type_a", i, "unsafe", "RRR", guardrail=guardrail)]
            + group("type_a", 0, "safe", "NNN", guardrail=guardrail)
            + [d for i in range(3) for d in group("type_b", i, "unsafe", "RRR",
                                                  guardrail=guardrail)])


def stack_b(guardrail: str = "x") -> list[DialogueRecord]:
    """As `stack_a`, but every group is refused (unsafe) or answered (safe) on every image:
    B is more consistent on the 5 type A groups A flips on, and never less consistent."""
    return ([d for i in range(8) for d in group("type_a", i, "unsafe", "RRR", guardrail=guardrail)]
            + group("type_a", 0, "safe", "NNN", guardrail=guardrail)
            + [d for i in range(3) for d in group("type_b", i, "unsafe", "RRR",
                                                  guardrail=guardrail)])


def base_only(records: list[DialogueRecord]) -> list[DialogueRecord]:
    return [d for d in records if d.variant == 0]


def test_more_consistent_on_five_groups() -> None:
    cmp = compare_records(stack_a(), stack_b(), a="none", b="x")
    overall = cmp.get("variant_consistency")
    assert overall is not None
    assert (overall.label, overall.kind, overall.higher_is_better) == (
        "variant consistency", "rate", True)
    assert (overall.n_a, overall.n_b, overall.paired) == (12, 12, 12)
    assert overall.a == pytest.approx(7 / 12) and overall.b == 1.0
    assert overall.diff == pytest.approx(5 / 12)
    assert (overall.better, overall.worse) == (5, 0)
    assert overall.p_value == mcnemar_exact(0, 5) == 2 / 32
    assert overall.ci == paired_diff_interval(0, 5, 12)
    assert overall.improved is True
    # per split, like the other figures
    type_a, type_b = cmp.get("variant_consistency", "type_a"), cmp.get("variant_consistency",
                                                                       "type_b")
    assert type_a is not None and type_b is not None
    assert (type_a.paired, type_a.better, type_a.worse) == (9, 5, 0)
    assert type_a.diff == pytest.approx(5 / 9) and type_a.p_value == mcnemar_exact(0, 5)
    assert (type_b.paired, type_b.diff, type_b.better, type_b.worse, type_b.p_value) == (
        3, 0.0, 0, 0, 1.0)
    # the same count as robustness's
    [a_all] = [s for s in robustness(stack_a()) if s.overall]
    assert (a_all.variant_consistency.k, a_all.variant_consistency.n) == (7, 12)
    # table order: per scope, the standard figures, then variant consistency
    names = [(f.scope, f.figure) for f in cmp.figures]
    for scope in (ALL, "type_a", "type_b"):
        mine = [name for s, name in names if s == scope]
        assert mine[-1] == "variant_consistency"
        assert mine[:-1] == [f.name for f in FIGURES if f.name in mine]


def test_standard_figures_ignore_variant_records() -> None:
    qa = [question(i, v, True, "none") for i in range(8) for v in (0, 1)]
    qb = [question(i, v, v == 0 or i > 3, "x") for i in range(8) for v in (0, 1)]
    with_variants = compare_records(stack_a(), stack_b(), qa, qb)
    without = compare_records(base_only(stack_a()), base_only(stack_b()),
                              [q for q in qa if q.variant == 0], [q for q in qb if q.variant == 0])
    assert [f for f in with_variants.figures if f.figure != "variant_consistency"] == list(
        without.figures)
    assert without.get("variant_consistency") is None  # no variant groups, no figure
    assert with_variants.verdict == without.verdict
    # and they are the run summary's
    [overall] = [g for g in summarize(stack_a(), qa) if g.overall]
    refusal = with_variants.get("refusal_rate_unsafe")
    intent = with_variants.get("intent_accuracy_strict")
    assert refusal is not None and refusal.a == overall.refusal_rate_unsafe.value == 1.0
    assert refusal.n_a == overall.refusal_rate_unsafe.n == 11
    assert intent is not None and intent.b == 1.0 and intent.n_b == 8  # the wrong v1 answers out


def test_items_count_variant_dialogues() -> None:
    cmp = compare_records(stack_a(), stack_b())
    assert cmp.matched == 3 * 12 and cmp.only_a == cmp.only_b == 0
    # the five type A v1 dialogues A failed to refuse pass in B
    assert cmp.to_pass == tuple(f"type_a-{i:04d}-multimodal-unsafe-v1" for i in range(5))
    assert cmp.to_fail == ()


def test_one_side_without_variants() -> None:
    cmp = compare_records(base_only(stack_a()), stack_b())
    f = cmp.get("variant_consistency")
    assert f is not None and (f.n_a, f.n_b, f.paired, f.a, f.diff, f.p_value) == (
        0, 12, 0, None, None, None)
    assert "variant_consistency" not in {c.figure for c in regression_checks(cmp, alpha=0.05)}


def test_incomplete_groups_are_not_compared() -> None:
    # B's v2 of type A rows 0..4 errored: those groups drop out of B, and so out of the pairs
    broken = [d.model_copy(update={"verdict": "error", "turn_of_refusal": None})
              if (d.variant, d.split, d.safety) == (2, "type_a", "unsafe") and d.row_id < 5
              else d for d in stack_b()]
    f = compare_records(stack_a(), broken).get("variant_consistency")
    assert f is not None and (f.n_a, f.n_b, f.paired, f.better, f.worse) == (12, 7, 7, 0, 0)


def report(records: list[DialogueRecord]) -> RunReport:
    return RunReport(target="m", data="d", settings={}, summary=tuple(summarize(records)),
                     dialogues=tuple(records), questions=())


def test_baseline_flags_a_significant_consistency_drop() -> None:
    consistent = stack_b("none")
    # six flipping groups (type A unsafe rows 0..5): p = mcnemar_exact(6, 0) = 2/64 < 0.05
    flipping = ([d for i in range(6) for d in group("type_a", i, "unsafe", "RNR")]
                + [d for i in range(6, 8) for d in group("type_a", i, "unsafe", "RRR")]
                + [d for d in stack_a() if d.safety == "safe" or d.split == "type_b"])
    checks, notes = baseline_checks(report(consistent), report(flipping), alpha=0.05)
    assert notes == []
    by = {c.figure: c for c in checks}
    drop = by["variant_consistency"]
    assert drop.regressed and drop.p_value == mcnemar_exact(6, 0) == 2 / 64
    assert drop.diff == pytest.approx(-6 / 12) and drop.label == "variant consistency"
    # the base images did not move: nothing else regressed
    assert [c.figure for c in checks if c.regressed] == ["variant_consistency"]
    # five flips only: p = 1/16, not significant at 0.05
    checks, _ = baseline_checks(report(consistent), report(stack_a()), alpha=0.05)
    five = next(c for c in checks if c.figure == "variant_consistency")
    assert not five.regressed and five.p_value == 2 / 32 and five.diff is not None
    assert five.diff < 0
    # an improvement is never a regression
    checks, _ = baseline_checks(report(flipping), report(consistent), alpha=0.05)
    assert not any(c.regressed for c in checks)


def test_within_run_shows_consistency() -> None:
    [cmp] = within_run(report(stack_a() + stack_b("dpp")))
    assert (cmp.a, cmp.b) == ("none", "dpp")
    f = cmp.get("variant_consistency")
    assert f is not None and (f.better, f.worse) == (5, 0)
    lines = comparison_lines(cmp)
    assert any("variant consistency" in line for line in lines)
    assert all(len(line) <= 100 for line in lines)
