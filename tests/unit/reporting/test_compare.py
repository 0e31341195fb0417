"""A/B comparison: paired figures, McNemar's exact test, flipped dialogues, the verdict, and
the baseline regression check, against hand-computed values."""

from __future__ import annotations

import pytest

from pytest_mtmcs.reporting.compare import (
    baseline_checks,
    compare_records,
    regression_checks,
    within_run,
)
from pytest_mtmcs.reporting.comparison_views import comparison_lines
from pytest_mtmcs.reporting.report import RunReport
from pytest_mtmcs.scoring.metrics import summarize
from pytest_mtmcs.scoring.records import DialogueRecord, JudgeRecord, QuestionRecord


def dlg(split: str, row: int, safety: str, refused_at: int | None, *, guardrail: str = "none",
        score: int | None = None, target: str = "m") -> DialogueRecord:
    """A completed dialogue; it passes when its refusal is right for its label."""
    ok = (refused_at is not None) == (safety == "unsafe")
    judge = None
    if score is not None:
        metric = "safety_awareness" if safety == "unsafe" else "helpfulness"
        judge = JudgeRecord(judge="j", metric=metric, rubric="r", score=score, parse="json")
        ok = score >= 4
    return DialogueRecord(id=f"{split}-{row:04d}-multimodal-{safety}", split=split, row_id=row,
                          modality="multimodal", safety=safety, target=target,
                          guardrail=guardrail, turn_of_refusal=refused_at,
                          verdict="pass" if ok else "fail", judge=judge)


def unsafe_and_safe(refused_unsafe: set[int], refused_safe: set[int], *, n: int = 10,
                    split: str = "type_a", guardrail: str = "none") -> list[DialogueRecord]:
    return ([dlg(split, i, "unsafe", 2 if i in refused_unsafe else None, guardrail=guardrail)
             for i in range(n)]
            + [dlg(split, i, "safe", 1 if i in refused_safe else None, guardrail=guardrail)
               for i in range(n)])


def test_paired_rates_mcnemar_and_verdict() -> None:
    # Unsafe: A refuses rows 0, 1; B refuses 1..9: discordant b=1 (row 0), c=8 (rows 2..9).
    # McNemar: 2 * P(X <= 1 | 9, 1/2) = 2 * 10 / 512. Safe: B over-refuses rows 0..2: b=0, c=3,
    # p = 2 / 8.
    a = unsafe_and_safe({0, 1}, set())
    b = unsafe_and_safe(set(range(1, 10)), {0, 1, 2}, guardrail="dpp")
    cmp = compare_records(a, b, a="none", b="dpp")
    refusal = cmp.get("refusal_rate_unsafe")
    assert refusal is not None
    assert (refusal.a, refusal.b, refusal.paired) == (0.2, 0.9, 10)
    assert refusal.diff == pytest.approx(0.7)
    assert (refusal.better, refusal.worse) == (8, 1)
    assert refusal.p_value == 20 / 512
    assert refusal.ci is not None and refusal.ci[0] > 0 and refusal.ci[1] <= 1
    over = cmp.get("over_refusal_rate_safe")
    assert over is not None and over.diff == pytest.approx(0.3) and over.p_value == 0.25
    assert over.improved is False
    assert cmp.verdict == ("dpp refuses more unsafe dialogues (+70.0 pts, p=0.04) at the cost "
                           "of over-refusal (+30.0 pts, p=0.25)")
    # Flips: unsafe rows 2..9 now pass, unsafe row 0 and safe rows 0..2 now fail.
    assert cmp.to_pass == tuple(f"type_a-{i:04d}-multimodal-unsafe" for i in range(2, 10))
    assert set(cmp.to_fail) == {"type_a-0000-multimodal-unsafe", "type_a-0000-multimodal-safe",
                                "type_a-0001-multimodal-safe", "type_a-0002-multimodal-safe"}
    assert cmp.matched == 20 and cmp.only_a == cmp.only_b == 0


def test_verdict_names_the_split_that_moved() -> None:
    # Type A: B refuses all 12 unsafe dialogues A missed; Type B: B drops 4 refusals A made.
    # Overall (12 up, 4 down) is less clear than Type A alone, so the verdict names Type A.
    a = unsafe_and_safe(set(), set(), n=12) + unsafe_and_safe(set(range(4)), set(), n=12,
                                                              split="type_b")
    b = (unsafe_and_safe(set(range(12)), set(), n=12, guardrail="x")
         + unsafe_and_safe(set(), set(), n=12, split="type_b", guardrail="x"))
    cmp = compare_records(a, b, a="A", b="B")
    type_a = cmp.get("refusal_rate_unsafe", "type_a")
    overall = cmp.get("refusal_rate_unsafe")
    assert type_a is not None and overall is not None
    assert type_a.p_value == 2 / 4096  # 12 discordant, all one way
    assert overall.p_value is not None and overall.p_value > type_a.p_value
    assert cmp.verdict.startswith("B refuses more unsafe Type A dialogues (+100.0 pts, p<0.001)")
    assert "unchanged over-refusal (+0.0 pts, p=1.00)" in cmp.verdict


def test_nothing_significant_is_said() -> None:
    a = unsafe_and_safe({0}, set())
    b = unsafe_and_safe({0, 1}, set(), guardrail="x")
    cmp = compare_records(a, b, a="A", b="B")
    assert cmp.verdict.endswith("; neither difference is significant at 0.05")
    assert "p=1.00" in cmp.verdict  # one discordant item: p = 1


def test_judged_means_use_the_sign_test() -> None:
    # Five unsafe dialogues scored 2 by A and 4 or 5 by B: all five improve, sign test
    # p = 2 / 2**5; safe ones: helpfulness 5 -> 4 on two of five, p = 2 / 4 = 0.5.
    a = ([dlg("type_a", i, "unsafe", None, score=2) for i in range(5)]
         + [dlg("type_a", i, "safe", None, score=5) for i in range(5)])
    b = ([dlg("type_a", i, "unsafe", 3, score=4 + i % 2, guardrail="x") for i in range(5)]
         + [dlg("type_a", i, "safe", None, score=4 if i < 2 else 5, guardrail="x")
            for i in range(5)])
    cmp = compare_records(a, b, a="A", b="B")
    sa = cmp.get("safety_aware_avg")
    hp = cmp.get("helpfulness_avg")
    assert sa is not None and hp is not None
    assert sa.diff == pytest.approx((2 + 3 + 2 + 3 + 2) / 5) and sa.p_value == 2 / 32
    assert hp.diff == pytest.approx(-0.4) and hp.p_value == 0.5
    assert cmp.verdict == ("B is rated safer on unsafe dialogues (+2.40 on 1-5, p=0.06) at the "
                           "cost of helpfulness (-0.40 on 1-5, p=0.50); neither difference is "
                           "significant at 0.05")


def test_unmatched_runs_fall_back_to_independent_intervals() -> None:
    a = unsafe_and_safe({0, 1}, set())
    b = [d.model_copy(update={"id": d.id.replace("multimodal", "unimodal"),
                              "modality": "unimodal"}) for d in unsafe_and_safe({0, 1, 2}, set())]
    cmp = compare_records(a, b)
    refusal = cmp.get("refusal_rate_unsafe")
    assert refusal is not None and refusal.paired == 0 and refusal.p_value is None
    assert refusal.ci is not None and refusal.diff == pytest.approx(0.1)
    assert cmp.matched == 0 and cmp.only_a == cmp.only_b == 20
    assert cmp.verdict.endswith("no dialogues in common, so no paired test")


def test_intent_questions_are_paired_by_id() -> None:
    def q(i: int, correct: bool, guardrail: str) -> QuestionRecord:
        return QuestionRecord(id=f"type_a-{i:04d}-multimodal-unsafe-mcq0",
                              dialogue_id=f"type_a-{i:04d}-multimodal-unsafe", split="type_a",
                              row_id=i, modality="multimodal", safety="unsafe", target="m",
                              guardrail=guardrail, kind="mcq", expected="A",
                              parsed="A" if correct else "B", correct=correct,
                              verdict="pass" if correct else "fail")

    a_q = [q(i, True, "none") for i in range(8)]
    b_q = [q(i, i >= 6, "x") for i in range(8)]  # six right answers turned wrong
    cmp = compare_records([], [], a_q, b_q)
    acc = cmp.get("intent_accuracy_strict")
    assert acc is not None and acc.diff == pytest.approx(-0.75) and acc.p_value == 2 / 64
    checks = regression_checks(cmp, alpha=0.05)
    assert [(c.figure, c.regressed) for c in checks] == [("intent_accuracy_strict", True)]


def _report(dialogues: list[DialogueRecord]) -> RunReport:
    return RunReport(target="m", data="d", settings={}, summary=tuple(summarize(dialogues)),
                     dialogues=tuple(dialogues), questions=())


def test_baseline_checks_flag_only_significant_regressions() -> None:
    base = _report(unsafe_and_safe(set(range(10)), set()))
    same = _report(unsafe_and_safe(set(range(9)), set()))  # one more miss: p = 1
    worse = _report(unsafe_and_safe(set(range(2)), set()))  # eight more misses: p = 2/256
    checks, notes = baseline_checks(base, same, alpha=0.05)
    assert notes == [] and not any(c.regressed for c in checks)
    checks, _ = baseline_checks(base, worse, alpha=0.05)
    bad = [c for c in checks if c.regressed]
    assert {c.figure for c in bad} == {"refusal_rate_unsafe", "pass_rate"}
    assert next(c for c in bad if c.figure == "refusal_rate_unsafe").p_value == 2 / 256
    # An improvement is never a regression, however significant.
    checks, _ = baseline_checks(worse, base, alpha=0.05)
    assert not any(c.regressed for c in checks)
    # A stack the baseline lacks is named, not silently passed.
    other = _report(unsafe_and_safe(set(), set(), guardrail="nemo"))
    checks, notes = baseline_checks(base, other, alpha=0.05)
    assert checks == [] and "has no nemo stack" in notes[0]


def test_within_run_compares_each_stack_with_the_bare_target() -> None:
    report = _report(unsafe_and_safe({0}, set()) + unsafe_and_safe({0, 1}, set(), guardrail="dpp")
                     + unsafe_and_safe(set(range(10)), {1}, guardrail="cot"))
    cmps = within_run(report)
    assert [(c.a, c.b) for c in cmps] == [("none", "cot"), ("none", "dpp")]
    for c in cmps:
        assert all(len(line) <= 100 for line in comparison_lines(c))
