"""pytest_mtmcs.scoring.stats against textbook values, closed forms and independent re-derivations.

Reference values are either published figures (cited at each test) or computed here by a
route independent of the implementation (a different algebraic form, log-space sums, a
numerical likelihood maximisation, exact enumeration of coverage).
"""

from __future__ import annotations

import math
import random
from math import comb
from statistics import NormalDist

import pytest

from pytest_mtmcs.scoring.stats import (
    bootstrap_mean_interval,
    mcnemar_exact,
    newcombe_diff_interval,
    paired_diff_interval,
    wilson_interval,
)

Z95 = NormalDist().inv_cdf(0.975)


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def _wilson_roots(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson limits as the roots of (1 + z^2/n) p^2 - (2 phat + z^2/n) p + phat^2 = 0."""
    phat = k / n
    a = 1 + z * z / n
    b = -(2 * phat + z * z / n)
    c = phat * phat
    root = math.sqrt(b * b - 4 * a * c)
    return (-b - root) / (2 * a), (-b + root) / (2 * a)


def _approx(pair: tuple[float, float] | None, expected: tuple[float, float], abs_: float) -> bool:
    assert pair is not None
    return pair[0] == pytest.approx(expected[0], abs=abs_) and pair[1] == pytest.approx(
        expected[1], abs=abs_
    )


# --------------------------------------------------------------------------- Wilson


# Newcombe (1998), "Two-sided confidence intervals for the single proportion: comparison
# of seven methods", Stat Med 17:857-872, Table I, method 3 (score, no continuity
# correction); 0/10 and 10/10 are the mirror-image pair of the same closed form.
@pytest.mark.parametrize(
    ("k", "n", "published"),
    [
        (81, 263, (0.2553, 0.3662)),
        (15, 148, (0.0624, 0.1605)),
        (0, 20, (0.0, 0.1611)),
        (1, 29, (0.0061, 0.1718)),
        (0, 10, (0.0, 0.2775)),
        (10, 10, (0.7225, 1.0)),
    ],
)
def test_wilson_matches_newcombe_table_and_the_quadratic_roots(k, n, published):
    got = wilson_interval(k, n)
    assert got is not None
    # Published to four decimals.
    assert round(got[0], 4) == published[0]
    assert round(got[1], 4) == published[1]
    # And the closed form computed another way, to full precision.
    assert _approx(got, _wilson_roots(k, n), 1e-12)


def test_wilson_is_exact_at_the_ends_and_none_without_data():
    lo, hi = wilson_interval(0, 7)  # type: ignore[misc]
    assert lo == 0.0 and 0.0 < hi < 1.0
    lo, hi = wilson_interval(7, 7)  # type: ignore[misc]
    assert hi == 1.0 and 0.0 < lo < 1.0
    assert wilson_interval(0, 0) is None


def test_wilson_other_confidence_levels_and_symmetry():
    for conf in (0.8, 0.9, 0.99):
        assert _approx(wilson_interval(37, 120, conf), _wilson_roots(37, 120, _z(conf)), 1e-12)
    # Widening with confidence, and the k <-> n - k mirror symmetry.
    w90 = wilson_interval(37, 120, 0.90)
    w99 = wilson_interval(37, 120, 0.99)
    assert w90 is not None and w99 is not None
    assert w99[0] < w90[0] and w99[1] > w90[1]
    lo, hi = wilson_interval(37, 120)  # type: ignore[misc]
    mlo, mhi = wilson_interval(83, 120)  # type: ignore[misc]
    assert lo == pytest.approx(1 - mhi, abs=1e-12) and hi == pytest.approx(1 - mlo, abs=1e-12)


@pytest.mark.parametrize(("k", "n", "conf"), [(-1, 5, 0.95), (6, 5, 0.95), (1, 5, 0.0), (1, 5, 1.0)])
def test_wilson_rejects_invalid_arguments(k, n, conf):
    with pytest.raises(ValueError):
        wilson_interval(k, n, conf)


# --------------------------------------------------------------------------- bootstrap


def _judge_scores(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return rng.choices([1, 2, 3, 4, 5], weights=[1, 2, 3, 5, 4], k=n)


def _sd(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def test_bootstrap_degenerate_cases():
    assert bootstrap_mean_interval([]) is None
    assert bootstrap_mean_interval([3.5]) == (3.5, 3.5)
    assert bootstrap_mean_interval([4] * 1000) == (4.0, 4.0)
    with pytest.raises(ValueError):
        bootstrap_mean_interval([1.0, float("nan")])
    with pytest.raises(ValueError):
        bootstrap_mean_interval([1.0, 2.0], resamples=0)
    with pytest.raises(ValueError):
        bootstrap_mean_interval([1.0, 2.0], confidence=1.5)


def test_bootstrap_is_deterministic_for_a_seed_and_depends_on_it():
    values = _judge_scores(400, seed=1)
    assert bootstrap_mean_interval(values, seed=7) == bootstrap_mean_interval(values, seed=7)
    # Integer scores put the resampled means on a 1/n lattice, so two seeds can share the
    # same quantiles; irregular distinct values (still the counts path) cannot.
    rng = random.Random(1)
    irregular = rng.choices([0.1, 0.37, 1.9, 2.71, 4.2], k=400)
    first = bootstrap_mean_interval(irregular, seed=7)
    assert first == bootstrap_mean_interval(irregular, seed=7)
    assert first != bootstrap_mean_interval(irregular, seed=8)
    # The continuous (index-resampling) path as well.
    rng = random.Random(3)
    floats = [rng.gauss(0, 1) for _ in range(300)]
    assert bootstrap_mean_interval(floats, seed=2) == bootstrap_mean_interval(floats, seed=2)


@pytest.mark.parametrize("n", [50, 5000])
def test_bootstrap_contains_the_mean_and_matches_normal_theory(n):
    values = _judge_scores(n, seed=11)
    mean = sum(values) / n
    got = bootstrap_mean_interval(values)
    assert got is not None
    lo, hi = got
    assert lo < mean < hi
    if n >= 1000:
        normal_width = 2 * Z95 * _sd(values) / math.sqrt(n)
        assert hi - lo == pytest.approx(normal_width, rel=0.10)


def test_bootstrap_narrows_as_n_grows():
    small = bootstrap_mean_interval(_judge_scores(50, seed=5))
    large = bootstrap_mean_interval(_judge_scores(5000, seed=5))
    assert small is not None and large is not None
    width_small, width_large = small[1] - small[0], large[1] - large[0]
    # Width scales like 1/sqrt(n): a factor of 10 here, allow generous slack.
    assert 6 < width_small / width_large < 14


def test_bootstrap_higher_confidence_is_wider():
    values = _judge_scores(500, seed=4)
    b80 = bootstrap_mean_interval(values, confidence=0.80)
    b99 = bootstrap_mean_interval(values, confidence=0.99)
    assert b80 is not None and b99 is not None
    assert b99[0] < b80[0] and b80[1] < b99[1]


def _naive_percentile_bootstrap(values, confidence, resamples, seed):
    """Plain resampling of the items themselves, sorted-order percentiles: the reference."""
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    alpha = 1 - confidence
    return means[int(alpha / 2 * resamples)], means[int((1 - alpha / 2) * resamples) - 1]


@pytest.mark.parametrize("kind", ["scores", "continuous"])
def test_bootstrap_agrees_with_naive_item_resampling(kind):
    rng = random.Random(9)
    if kind == "scores":
        values = [float(v) for v in _judge_scores(300, seed=9)]
    else:
        values = [rng.expovariate(1.0) for _ in range(120)]
    got = bootstrap_mean_interval(values, resamples=20_000, seed=1)
    ref = _naive_percentile_bootstrap(values, 0.95, 4_000, seed=2)
    assert got is not None
    width = ref[1] - ref[0]
    # Different random streams: agree to a few percent of the width.
    assert got[0] == pytest.approx(ref[0], abs=0.06 * width)
    assert got[1] == pytest.approx(ref[1], abs=0.06 * width)


def test_bootstrap_of_judge_scores_resamples_counts_not_items():
    """Judge scores (few distinct values, many items) go through one multinomial draw of the
    distinct values' counts per resample, O(k) instead of O(n): the interval then depends on
    the data only through those counts, so any reordering gives the very same bits, while
    mostly-distinct values are resampled by index and their order does matter. (Deterministic
    on purpose: how fast it is, is measured in bench/metrics_speed.py, not asserted here.)"""
    values = _judge_scores(3000, seed=2)
    shuffled = list(values)
    random.Random(5).shuffle(shuffled)
    assert shuffled != values
    assert bootstrap_mean_interval(shuffled, seed=3) == bootstrap_mean_interval(values, seed=3)
    rng = random.Random(6)
    floats = [rng.gauss(0, 1) for _ in range(200)]  # 200 distinct values: the index path
    reordered = sorted(floats)
    assert bootstrap_mean_interval(reordered, seed=3) != bootstrap_mean_interval(floats, seed=3)


# --------------------------------------------------------------------------- McNemar


def _mcnemar_log_space(b: int, c: int) -> float:
    """Independent reference: the same tail summed in floating log space."""
    m, k = b + c, min(b, c)
    logs = [
        math.lgamma(m + 1) - math.lgamma(i + 1) - math.lgamma(m - i + 1) - m * math.log(2)
        for i in range(k + 1)
    ]
    top = max(logs)
    log_tail = top + math.log(sum(math.exp(x - top) for x in logs))
    return min(1.0, 2 * math.exp(log_tail))


def test_mcnemar_textbook_cases():
    # b=1, c=9: 2 * (C(10,0) + C(10,1)) / 2**10.
    assert mcnemar_exact(1, 9) == 2 * (1 + 10) / 1024 == 0.021484375
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)
    assert mcnemar_exact(0, 5) == 2 / 32
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(7, 7) == 1.0
    # b=2, c=3: 2 * (1 + 5 + 10) / 32 = 1 -> capped at 1.0
    assert mcnemar_exact(2, 3) == 1.0
    # b=3, c=12: 2 * (1 + 15 + 105 + 455) / 2**15
    assert mcnemar_exact(3, 12) == pytest.approx(2 * 576 / 2**15, rel=1e-15)


@pytest.mark.parametrize(("b", "c"), [(1000, 1100), (2500, 2650), (40, 61), (1490, 1510)])
def test_mcnemar_large_counts_are_finite_and_match_log_space(b, c):
    p = mcnemar_exact(b, c)
    assert 0.0 < p < 1.0 and math.isfinite(p)
    assert p == pytest.approx(_mcnemar_log_space(b, c), rel=1e-9)


def test_mcnemar_large_case_is_close_to_the_normal_approximation():
    # Continuity-corrected chi-square: (|b - c| - 1)^2 / (b + c) on 1 df.
    b, c = 1000, 1100
    chi = (abs(b - c) - 1) / math.sqrt(b + c)
    approx = 2 * (1 - NormalDist().cdf(chi))
    assert mcnemar_exact(b, c) == pytest.approx(approx, rel=0.05)


def test_mcnemar_extreme_tails_do_not_overflow():
    assert mcnemar_exact(0, 1074) == 2.0**-1073
    assert mcnemar_exact(0, 5000) == 0.0  # below the smallest double: rounds, never raises
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


# --------------------------------------------------------------------------- Newcombe


# Newcombe (1998), "Interval estimation for the difference between independent
# proportions: comparison of eleven methods", Stat Med 17:873-890, Table II, method 10.
# Newcombe reports p1 - p2 for (m/n vs x/y); here the first group is A and the second B,
# so the call is newcombe_diff_interval(x, y, m, n) -> m/n - x/y.
@pytest.mark.parametrize(
    ("first", "second", "published"),
    [
        ((48, 80), (56, 70), (0.0524, 0.3339)),  # worked example (a): difference 0.2000
        ((3, 10), (9, 10), (0.1705, 0.8090)),
        ((0, 29), (5, 56), (-0.0381, 0.1926)),
        ((0, 20), (0, 10), (-0.1611, 0.2775)),
        ((0, 10), (0, 10), (-0.2775, 0.2775)),
        ((0, 20), (10, 10), (0.6791, 1.0)),
        ((0, 10), (10, 10), (0.6075, 1.0)),
    ],
)
def test_newcombe_matches_published_table(first, second, published):
    got = newcombe_diff_interval(*first, *second)
    assert got is not None
    assert round(got[0], 4) == published[0]
    assert round(got[1], 4) == published[1]


def test_newcombe_direction_is_second_minus_first_and_matches_square_and_add():
    k1, n1, k2, n2 = 48, 80, 56, 70
    got = newcombe_diff_interval(k1, n1, k2, n2)
    assert got is not None
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = _wilson_roots(k1, n1)
    l2, u2 = _wilson_roots(k2, n2)
    d = p2 - p1
    assert d == pytest.approx(0.2)
    assert got[0] < d < got[1]
    assert got[0] == pytest.approx(d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2), abs=1e-12)
    assert got[1] == pytest.approx(d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2), abs=1e-12)
    # Swapping the groups negates the interval.
    swapped = newcombe_diff_interval(k2, n2, k1, n1)
    assert swapped is not None
    assert swapped[0] == pytest.approx(-got[1], abs=1e-12)
    assert swapped[1] == pytest.approx(-got[0], abs=1e-12)


def test_newcombe_none_and_errors():
    assert newcombe_diff_interval(0, 0, 3, 10) is None
    assert newcombe_diff_interval(3, 10, 0, 0) is None
    with pytest.raises(ValueError):
        newcombe_diff_interval(11, 10, 3, 10)
    with pytest.raises(ValueError):
        newcombe_diff_interval(1, 10, 3, 10, confidence=0)


# --------------------------------------------------------------------------- paired (Tango)


def _tango_z_by_numerical_mle(b: int, c: int, n: int, delta: float) -> float:
    """Tango's score statistic with the restricted MLE found by ternary search.

    Maximises b log q + c log(q + delta) + (n - b - c) log(1 - 2q - delta) over the
    feasible q (the probability of the b cell), instead of using the closed-form root.
    """

    def loglik(q: float) -> float:
        total = 0.0
        for count, prob in ((b, q), (c, q + delta), (n - b - c, 1 - 2 * q - delta)):
            if count:
                total += count * math.log(prob) if prob > 0 else -math.inf
        return total

    lo, hi = max(0.0, -delta), (1 - delta) / 2
    for _ in range(300):
        m1, m2 = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        if loglik(m1) < loglik(m2):
            lo = m1
        else:
            hi = m2
    q = (lo + hi) / 2
    return (c - b - n * delta) / math.sqrt(n * (2 * q + delta - delta * delta))


@pytest.mark.parametrize(
    ("b", "c", "n", "conf"),
    [(6, 16, 161, 0.95), (25, 28, 618, 0.90), (1, 7, 21, 0.95), (0, 5, 40, 0.95), (12, 3, 50, 0.99)],
)
def test_paired_limits_solve_the_score_equation(b, c, n, conf):
    got = paired_diff_interval(b, c, n, conf)
    assert got is not None
    lo, hi = got
    z = _z(conf)
    assert lo < (c - b) / n < hi
    assert _tango_z_by_numerical_mle(b, c, n, lo) == pytest.approx(z, abs=1e-5)
    assert _tango_z_by_numerical_mle(b, c, n, hi) == pytest.approx(-z, abs=1e-5)


def test_paired_closed_form_without_discordant_pairs():
    # b = c = 0: the score equation reduces to n|d| / (1 - |d|) = z^2.
    for n in (1, 10, 250):
        edge = Z95**2 / (n + Z95**2)
        assert _approx(paired_diff_interval(0, 0, n), (-edge, edge), 1e-10)


@pytest.mark.parametrize(("b", "c"), [(0, 10), (10, 0), (3, 7), (9, 31), (20, 20)])
def test_paired_closed_form_with_only_discordant_pairs(b, c):
    # b + c = n: c ~ Binomial(n, (1 + d) / 2) and the score interval is 2 * Wilson(c, n) - 1.
    n = b + c
    wl, wu = _wilson_roots(c, n)
    if c == 0:
        wl = 0.0
    if c == n:
        wu = 1.0
    assert _approx(paired_diff_interval(b, c, n), (2 * wl - 1, 2 * wu - 1), 1e-10)


def test_paired_published_examples():
    # Fagerland, Lydersen & Laake (2017), Statistical Analysis of Contingency Tables,
    # ch. 8: Bentur et al. (2009), table [[1, 1], [7, 12]], Tango interval for
    # (n12 - n21) / N = -0.2857 is -0.517 to -0.026.  With A = rows and B = columns,
    # b = n12 = 1 and c = n21 = 7, and B - A is the negation.
    got = paired_diff_interval(1, 7, 21)
    assert got is not None
    assert round(got[0], 3) == 0.026
    assert round(got[1], 3) == 0.517
    # R PropCIs::scoreci.mp(25, 28, 618, conf.level = 0.90), as reproduced by a third-party
    # test suite (not re-run here): (28 - 25) / 618 in -0.0148 to 0.0247.
    got = paired_diff_interval(25, 28, 618, 0.90)
    assert got is not None
    assert round(got[0], 4) == -0.0148
    assert round(got[1], 4) == 0.0247


def test_paired_direction_symmetry_and_extremes():
    got = paired_diff_interval(6, 16, 161)
    assert got is not None
    assert got[0] > 0  # c > b: B better, whole interval positive here
    swapped = paired_diff_interval(16, 6, 161)
    assert swapped is not None
    assert swapped[0] == pytest.approx(-got[1], abs=1e-12)
    assert swapped[1] == pytest.approx(-got[0], abs=1e-12)
    assert paired_diff_interval(0, 10, 10)[1] == 1.0  # type: ignore[index]
    assert paired_diff_interval(10, 0, 10)[0] == -1.0  # type: ignore[index]
    assert paired_diff_interval(0, 0, 0) is None
    # Same discordant proportions, ten times the items: clearly narrower.
    small = paired_diff_interval(4, 9, 60)
    large = paired_diff_interval(40, 90, 600)
    assert small is not None and large is not None
    assert (large[1] - large[0]) < 0.4 * (small[1] - small[0])


@pytest.mark.parametrize(("b", "c", "n"), [(-1, 2, 5), (3, 3, 5), (1, 1, -1)])
def test_paired_rejects_invalid_counts(b, c, n):
    with pytest.raises(ValueError):
        paired_diff_interval(b, c, n)


@pytest.mark.parametrize(("n", "q_b", "q_c"), [(30, 0.1, 0.2), (50, 0.05, 0.2), (25, 0.3, 0.1)])
def test_paired_exact_coverage_is_near_nominal(n, q_b, q_c):
    # Enumerate every (b, c) outcome of the trinomial and add up the probability of those
    # whose interval covers the true q_c - q_b.  A wrong direction or variance breaks this.
    truth = q_c - q_b
    covered = 0.0
    for b in range(n + 1):
        for c in range(n + 1 - b):
            prob = comb(n, b) * comb(n - b, c) * q_b**b * q_c**c * (1 - q_b - q_c) ** (n - b - c)
            lo, hi = paired_diff_interval(b, c, n)  # type: ignore[misc]
            if lo <= truth <= hi:
                covered += prob
    assert 0.93 < covered < 0.975
