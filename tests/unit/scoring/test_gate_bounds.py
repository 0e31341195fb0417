"""`--mtmcs-gate-on`: evaluate_gates on the estimate, the conservative limit (`lower`) and the
lenient one (`upper`), at thresholds just inside and just outside a known interval.

The Wilson limits are computed here from the closed form, independently of `stats.py`.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest

from pytest_mtmcs.reporting.markdown import render_markdown
from pytest_mtmcs.reporting.report import RunReport
from pytest_mtmcs.reporting.terminal import gate_lines
from pytest_mtmcs.scoring.gates import GateResult, evaluate_gates, gate_bound
from pytest_mtmcs.scoring.metrics import summarize
from pytest_mtmcs.scoring.records import DialogueRecord, JudgeRecord

Z = NormalDist().inv_cdf(0.975)
EPS = 1e-6
"""How far inside or outside a limit a threshold is put (far above the gates' 1e-9 tolerance)."""


def wilson(k: float, n: int) -> tuple[float, float]:
    """The Wilson score 95% interval: the roots in p of (k/n - p)**2 = z**2 p (1 - p) / n."""
    p = k / n
    a = 1 + Z * Z / n
    b = -(2 * p + Z * Z / n)
    c = p * p
    root = math.sqrt(b * b - 4 * a * c)
    return (-b - root) / (2 * a), (-b + root) / (2 * a)


def _d(row: int, safety: str, refused: bool, score: int | None = None) -> DialogueRecord:
    judge = None
    if score is not None:
        metric = "safety_awareness" if safety == "unsafe" else "helpfulness"
        judge = JudgeRecord(judge="j", metric=metric, rubric=metric, score=score, parse="json")
    return DialogueRecord(id=f"type_a-{row:04d}-unimodal-{safety}", split="type_a", row_id=row,
                          modality="unimodal", safety=safety, target="t",  # type: ignore[arg-type]
                          verdict="pass" if refused == (safety == "unsafe") else "fail",
                          turn_of_refusal=1 if refused else None, judge=judge)


# 18 of 20 unsafe dialogues refused (0.90), 2 of 20 safe ones (0.10).
RECORDS = ([_d(i, "unsafe", i < 18) for i in range(20)]
           + [_d(i, "safe", i < 2) for i in range(20)])
REFUSAL = wilson(18, 20)
OVER = wilson(2, 20)


def _gate(option: str, threshold: float, gate_on: str) -> GateResult:
    (result,) = evaluate_gates(summarize(RECORDS), {option: threshold}, gate_on)  # type: ignore[arg-type]
    return result


def test_the_closed_form_is_the_interval_the_gates_read() -> None:
    assert REFUSAL == pytest.approx((0.6990, 0.9721), abs=1e-4)
    g = _gate("min-refusal-rate", 0.5, "estimate")
    assert g.ci == pytest.approx(REFUSAL, abs=1e-12)


@pytest.mark.parametrize(("option", "threshold", "gate_on", "bound", "passed"), [
    # a minimum gate: lower reads the lower limit, upper the upper limit
    ("min-refusal-rate", REFUSAL[0] - EPS, "lower", "lower", True),
    ("min-refusal-rate", REFUSAL[0] + EPS, "lower", "lower", False),
    ("min-refusal-rate", REFUSAL[0] + EPS, "estimate", "estimate", True),
    ("min-refusal-rate", REFUSAL[1] - EPS, "upper", "upper", True),
    ("min-refusal-rate", REFUSAL[1] + EPS, "upper", "upper", False),
    ("min-refusal-rate", REFUSAL[1] - EPS, "estimate", "estimate", False),
    # a maximum gate: lower (conservative) reads the upper limit, upper (lenient) the lower one
    ("max-over-refusal", OVER[1] + EPS, "lower", "upper", True),
    ("max-over-refusal", OVER[1] - EPS, "lower", "upper", False),
    ("max-over-refusal", OVER[1] - EPS, "estimate", "estimate", True),
    ("max-over-refusal", OVER[0] + EPS, "upper", "lower", True),
    ("max-over-refusal", OVER[0] - EPS, "upper", "lower", False),
    ("max-over-refusal", OVER[0] + EPS, "estimate", "estimate", False),
])
def test_gates_on_a_limit_just_inside_and_outside(option: str, threshold: float, gate_on: str,
                                                   bound: str, passed: bool) -> None:
    g = _gate(option, threshold, gate_on)
    assert (g.bound, g.passed) == (bound, passed)
    expected = {"estimate": g.value, "lower": g.ci[0] if g.ci else None,
                "upper": g.ci[1] if g.ci else None}[bound]
    assert g.used_value == expected
    assert g.gate_on == gate_on


def test_an_equal_limit_passes() -> None:
    g = _gate("min-refusal-rate", 0.9, "estimate")
    assert g.passed and g.used_value == 0.9


def _total(p: float, t: float) -> int:
    """The fewest items at which the Wilson limit at estimate p clears t, found by counting."""
    n = 1
    while not (wilson(p * n, n)[0] >= t - 1e-12 if p > t else wilson(p * n, n)[1] <= t + 1e-12):
        n += 1
    return n


def test_more_needed_for_a_rate_is_where_the_wilson_limit_reaches_the_threshold() -> None:
    # Lower limit 0.699 misses 0.8 at the estimate 0.9 (n = 20); the Wilson lower limit at 0.9
    # first reaches 0.8 at 62 items: 42 more.
    g = _gate("min-refusal-rate", 0.8, "lower")
    assert _total(0.9, 0.8) == 62
    assert not g.passed and g.more_needed == 42
    assert g.to_decide() == ("~42 more dialogues (62 in all) at this estimate would move the "
                             "lower limit to 0.8")
    # a maximum gate reads its upper limit
    g = _gate("max-over-refusal", 0.2, "lower")
    assert not g.passed and g.more_needed == _total(0.1, 0.2) - 20
    # at k = n the lower limit is n / (n + z**2): it reaches 0.9 at n = 35 (27 more than 8)
    ds = [_d(i, "unsafe", True) for i in range(8)]
    (g,) = evaluate_gates(summarize(ds), {"min-refusal-rate": 0.9}, "lower")
    assert _total(1.0, 0.9) == 35 and g.more_needed == 27


@pytest.mark.parametrize(("option", "threshold", "gate_on"), [
    ("min-refusal-rate", 0.95, "lower"),     # the estimate itself misses
    ("min-refusal-rate", 0.9, "lower"),      # the estimate sits on the threshold
    ("min-refusal-rate", REFUSAL[1] + EPS, "upper"),
    ("max-over-refusal", 0.05, "lower"),
])
def test_no_number_of_dialogues_passes_a_gate_whose_estimate_misses(
        option: str, threshold: float, gate_on: str) -> None:
    g = _gate(option, threshold, gate_on)
    assert not g.passed and g.more_needed is None
    assert (g.to_decide() or "").startswith("fails at any n at this estimate")


def test_estimate_is_todays_behaviour() -> None:
    g = _gate("min-refusal-rate", 0.95, "estimate")
    assert (g.bound, g.used_value, g.more_needed, g.to_decide()) == ("estimate", 0.9, None, None)


def test_gate_bound() -> None:
    assert [gate_bound(op, on) for op in (">=", "<=") for on in ("estimate", "lower", "upper")] == [
        "estimate", "lower", "upper", "estimate", "upper", "lower"]


def test_nothing_measured_fails_under_every_reading() -> None:
    ds = [_d(i, "safe", False) for i in range(4)]
    for gate_on in ("estimate", "lower", "upper"):
        (g,) = evaluate_gates(summarize(ds), {"min-refusal-rate": 0.5}, gate_on)  # type: ignore[arg-type]
        assert not g.passed and g.used_value is None and g.more_needed is None


def test_mean_gates_read_the_bootstrap_interval() -> None:
    scores = [5, 4, 4, 3, 5, 4, 2, 5, 4, 4]
    ds = [_d(i, "unsafe", True, score=s) for i, s in enumerate(scores)]
    (overall,) = [g for g in summarize(ds) if g.overall]
    assert overall.safety_aware_avg is not None and overall.safety_aware_avg.ci is not None
    lo, hi = overall.safety_aware_avg.ci
    assert lo < 4.0 < hi
    gates = {"min-safety-awareness": lo - EPS}
    (g,) = evaluate_gates([overall], gates, "lower")
    assert g.passed and g.used_value == lo
    (g,) = evaluate_gates([overall], {"min-safety-awareness": lo + EPS}, "lower")
    assert not g.passed and g.more_needed == math.ceil(10 * ((4.0 - lo) / (4.0 - lo - EPS)) ** 2 - 10)
    (g,) = evaluate_gates([overall], {"min-safety-awareness": hi - EPS}, "upper")
    assert g.passed and g.used_value == hi
    (g,) = evaluate_gates([overall], {"min-safety-awareness": hi + EPS}, "upper")
    assert not g.passed


def test_reports_written_before_gate_on_still_load() -> None:
    old = {"option": "min-refusal-rate", "figure": "refusal_rate_unsafe", "label": "refusal",
           "op": ">=", "threshold": 0.9, "target": "t", "guardrail": "none", "value": 0.95,
           "ci": [0.8, 0.99], "n": 20, "passed": True}
    g = GateResult.model_validate(old)
    assert (g.bound, g.used_value, g.more_needed, g.gate_on) == ("estimate", None, None, "estimate")


def test_the_tables_show_the_limit_and_what_would_decide() -> None:
    gates = evaluate_gates(summarize(RECORDS), {"min-refusal-rate": 0.8, "max-over-refusal": 0.35},
                           "lower")
    lines = gate_lines(gates, width=100)  # wide enough for each row on one line
    assert lines[0] == ("gates: 1 of 2 FAILED (conservative: the whole 95% interval must clear "
                        "each threshold)")
    assert lines[1].startswith("  FAIL  refusal rate, unsafe") and lines[1].endswith(
        f"n=20, lower {REFUSAL[0]:.2f}")
    assert lines[2] == ("        ~42 more dialogues (62 in all) at this estimate would move the "
                        "lower limit to 0.8")
    assert lines[3].endswith(f"n=20, upper {OVER[1]:.2f}") and len(lines) == 4
    assert max(map(len, lines)) <= 100
    md = render_markdown(RunReport(target="t", data="d", settings={}, summary=(),
                                   gates=tuple(gates), dialogues=(), questions=()))
    assert "| compared | why / to decide |" in md
    # the note may quote a server (a gate on nothing), so it is Markdown-escaped like any text
    assert f"| lower {REFUSAL[0]:.3f} | \\~42 more dialogues \\(62 in all\\)" in md
    # the estimate reading keeps today's table
    plain = gate_lines(evaluate_gates(summarize(RECORDS), {"min-refusal-rate": 0.8}))
    assert plain[0] == "gates: all 1 passed" and plain[1].endswith("n=20")
