"""Small, pure statistics helpers for reporting benchmark metrics with uncertainty.

Every function here is deterministic and side-effect free.  Only the standard library is
imported at module level so that importing the plugin stays cheap; numpy is imported lazily
inside :func:`bootstrap_mean_interval`, the only function that needs it.

Conventions shared by all functions:

* ``confidence`` is the two-sided coverage level, strictly between 0 and 1 (0.95 = 95 %).
  The normal quantile is ``z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)``.
* An interval is returned as a ``(lower, upper)`` tuple of floats with ``lower <= upper``;
  ``None`` is returned when there is no data to estimate from (a zero denominator or an
  empty sample).  Invalid arguments (negative counts, ``k > n``, ``confidence`` outside
  (0, 1)) raise ``ValueError``.
* Differences are always **second minus first**, i.e. ``B - A``: a positive difference means
  that the second system (B) has the higher proportion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

__all__ = [
    "bootstrap_mean_interval",
    "mcnemar_exact",
    "newcombe_diff_interval",
    "paired_diff_interval",
    "wilson_interval",
]

# Bisection steps for the paired score interval: the bracket has width <= 2, so 100 halvings
# reach far below double precision.
_BISECTION_STEPS = 100
# Upper bound on the number of integers one bootstrap batch holds in memory.
_BATCH_CELLS = 2_000_000


def _z(confidence: float) -> float:
    """The two-sided normal quantile for ``confidence``; ValueError outside (0, 1)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def _check_count(k: int, n: int, what: str = "k") -> None:
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= {what} <= n, got {what}={k}, n={n}")


def _wilson(k: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score limits for k/n (n > 0) at normal quantile z, exact at k = 0 and k = n."""
    z2 = z * z
    denom = n + z2
    centre = (k + z2 / 2.0) / denom
    half = z * math.sqrt(k * (n - k) / n + z2 / 4.0) / denom
    lower = 0.0 if k == 0 else max(0.0, centre - half)
    upper = 1.0 if k == n else min(1.0, centre + half)
    return lower, upper


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval (no continuity correction) for the proportion ``k / n``.

    The limits are the two roots in ``p`` of ``(k/n - p)**2 = z**2 * p * (1 - p) / n``::

        centre = (k + z**2 / 2) / (n + z**2)
        half   = z * sqrt(k * (n - k) / n + z**2 / 4) / (n + z**2)
        (centre - half, centre + half)

    Returns ``None`` when ``n == 0``.  The limits are clamped to [0, 1]; at ``k == 0`` the
    lower limit is exactly 0.0 and at ``k == n`` the upper limit is exactly 1.0.
    Raises ``ValueError`` unless ``0 <= k <= n`` and ``0 < confidence < 1``.
    """
    z = _z(confidence)
    _check_count(k, n)
    if n == 0:
        return None
    return _wilson(k, n, z)


def bootstrap_mean_interval(
    values: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval for the mean of ``values``.

    ``resamples`` bootstrap samples of size ``n = len(values)`` are drawn with replacement;
    the interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles
    (numpy's default linear interpolation) of their means.

    Returns ``None`` for an empty sequence and ``(v, v)`` when every value equals ``v``
    (including a single value).  The result is a deterministic function of
    ``(values, confidence, resamples, seed)``: the draws come from
    ``numpy.random.default_rng(seed)``.  Raises ``ValueError`` for a non-finite value,
    ``resamples < 1`` or ``confidence`` outside (0, 1).

    Speed: judge scores take a handful of distinct values (1..5) repeated thousands of times,
    so the resampling goes through the counts of the distinct values.  Drawing n items with
    replacement from a sample whose distinct values ``v_1..v_k`` occur ``n_1..n_k`` times
    picks ``v_j`` with probability ``n_j / n`` independently on each draw, so the vector of
    how often each ``v_j`` is picked is exactly ``Multinomial(n, (n_1/n, ..., n_k/n))``; the
    resampled mean ``sum_j m_j * v_j / n`` depends on the draw only through those counts
    ``m_j``.  One multinomial draw per resample therefore has exactly the same distribution
    as resampling the n values themselves, at a cost of O(k) instead of O(n).  When most
    values are distinct (``4 * k > n``) that buys nothing, and the items are resampled
    directly by index instead.  Both paths work in batches of bounded memory.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples!r}")
    if len(values) == 0:
        return None

    import numpy as np

    data = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(data)):
        raise ValueError("values must all be finite")
    n = data.size
    distinct, counts = np.unique(data, return_counts=True)
    if distinct.size == 1:
        v = float(distinct[0])
        return v, v

    rng = np.random.default_rng(seed)
    means = np.empty(resamples, dtype=np.float64)
    k = distinct.size
    if 4 * k <= n:
        pvals = counts / n
        batch = max(1, _BATCH_CELLS // k)
        for start in range(0, resamples, batch):
            size = min(batch, resamples - start)
            drawn = rng.multinomial(n, pvals, size=size)
            means[start:start + size] = drawn @ distinct / n
    else:
        batch = max(1, _BATCH_CELLS // n)
        for start in range(0, resamples, batch):
            size = min(batch, resamples - start)
            idx = rng.integers(0, n, size=(size, n))
            means[start:start + size] = data[idx].mean(axis=1)

    alpha = 1.0 - confidence
    lower, upper = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lower), float(upper)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts ``b`` and ``c``.

    Under the null hypothesis of no difference, ``b`` given ``b + c = m`` is
    ``Binomial(m, 1/2)``; the two-sided p-value is ``min(1, 2 * P(X <= min(b, c)))`` for
    ``X ~ Binomial(m, 1/2)``.  Returns 1.0 when ``m == 0``.

    The tail ``sum_{i <= min(b, c)} C(m, i)`` is summed exactly in integers and divided by
    ``2**m`` once, with Python's correctly rounded int/int division, so there is no overflow
    or loss of precision for any m.  The only rounding is the final conversion to a float:
    a p-value below half the smallest positive double (2**-1074, about 5e-324; e.g.
    b=0 and c >= 1076) rounds to 0.0.  Raises ``ValueError`` for a negative count.
    """
    if b < 0 or c < 0:
        raise ValueError(f"counts must be non-negative, got b={b}, c={c}")
    m = b + c
    if m == 0:
        return 1.0
    k = min(b, c)
    term = 1  # C(m, 0)
    tail = 1
    for i in range(k):
        term = term * (m - i) // (i + 1)  # C(m, i + 1), exact
        tail += term
    twice = 2 * tail
    total = 1 << m
    if twice >= total:
        return 1.0
    return twice / total


def newcombe_diff_interval(
    k1: int, n1: int, k2: int, n2: int, confidence: float = 0.95
) -> tuple[float, float] | None:
    """Newcombe's hybrid score interval for ``k2/n2 - k1/n1`` (second minus first, B - A).

    Method 10 of Newcombe (1998), *Interval estimation for the difference between
    independent proportions: comparison of eleven methods*, Stat Med 17:873-890.  With
    ``p1 = k1/n1``, ``p2 = k2/n2``, their Wilson limits ``(l1, u1)``, ``(l2, u2)`` (no
    continuity correction) and ``d = p2 - p1``::

        lower = d - sqrt((p2 - l2)**2 + (u1 - p1)**2)
        upper = d + sqrt((u2 - p2)**2 + (p1 - l1)**2)

    (Newcombe states it for ``p1 - p2``; this is the same interval negated.)  The samples
    are independent: ``(k1, n1)`` is system A, ``(k2, n2)`` system B.  Returns ``None``
    when ``n1 == 0`` or ``n2 == 0``; limits lie within [-1, 1].  Raises ``ValueError``
    unless ``0 <= k1 <= n1``, ``0 <= k2 <= n2`` and ``0 < confidence < 1``.
    """
    z = _z(confidence)
    _check_count(k1, n1, "k1")
    _check_count(k2, n2, "k2")
    if n1 == 0 or n2 == 0:
        return None
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = _wilson(k1, n1, z)
    l2, u2 = _wilson(k2, n2, z)
    d = p2 - p1
    lower = d - math.hypot(p2 - l2, u1 - p1)
    upper = d + math.hypot(u2 - p2, p1 - l1)
    return max(-1.0, lower), min(1.0, upper)


def paired_diff_interval(
    b: int, c: int, n: int, confidence: float = 0.95
) -> tuple[float, float] | None:
    """Tango's score interval for the difference of two paired proportions, B - A.

    Both systems are scored on the same ``n`` items.  ``b`` counts items A got right and B
    got wrong, ``c`` items A got wrong and B got right, so the estimate is
    ``(c - b) / n = p_B - p_A`` (second minus first).  Returns ``None`` when ``n == 0``;
    raises ``ValueError`` unless ``b, c >= 0``, ``b + c <= n`` and ``0 < confidence < 1``.

    Method: Tango (1998), *Equivalence test and confidence interval for the difference in
    proportions for the paired-sample design*, Stat Med 17:891-908.  It needs only the
    discordant counts and n, which is all this signature carries (Newcombe's paired
    method 10 also needs how the concordant pairs split into both-right and both-wrong).
    Writing ``q_b``, ``q_c`` for the cell probabilities of the two discordant cells and
    ``delta = q_c - q_b``, the score statistic is::

        Z(delta) = (c - b - n * delta) / sqrt(n * (2 * q_b~ + delta * (1 - delta)))

    where ``q_b~`` is the maximum-likelihood estimate of ``q_b`` under the constraint
    ``q_c - q_b = delta``, the admissible root of ``2n q**2 + W q - b delta (1 - delta) = 0``
    with ``W = -(b + c) + (2n - c + b) * delta``::

        q_b~ = (sqrt(W**2 + 8 n b delta (1 - delta)) - W) / (4 n)

    The interval is ``{delta : |Z(delta)| <= z}``; each limit is found by bisection on
    either side of the estimate (100 halvings).  The limits lie within [-1, 1] and reach
    -1 (or 1) exactly when every item is a ``b`` (or ``c``) item.  Two closed forms follow
    from the definition and pin it down: with no discordant pairs the interval is
    ``+-z**2 / (n + z**2)``; with only discordant pairs (``b + c == n``) it is
    ``2 * wilson_interval(c, n) - 1``.
    """
    z = _z(confidence)
    if b < 0 or c < 0 or b + c > n:
        raise ValueError(f"need b, c >= 0 and b + c <= n, got b={b}, c={c}, n={n}")
    if n == 0:
        return None
    estimate = (c - b) / n

    def excess(delta: float) -> float:
        """|c - b - n delta| - z * sqrt(n * var): <= 0 exactly inside the interval."""
        w = -(b + c) + (2 * n - c + b) * delta
        disc = max(0.0, w * w + 8.0 * n * b * delta * (1.0 - delta))
        q_b = (math.sqrt(disc) - w) / (4.0 * n)
        var = max(0.0, 2.0 * q_b + delta * (1.0 - delta))
        return abs(c - b - n * delta) - z * math.sqrt(n * var)

    def limit(outside: float) -> float:
        """The boundary between ``estimate`` (inside) and ``outside``."""
        if excess(outside) <= 0.0:
            return outside
        inner, outer = estimate, outside
        for _ in range(_BISECTION_STEPS):
            mid = (inner + outer) / 2.0
            if excess(mid) <= 0.0:
                inner = mid
            else:
                outer = mid
        return (inner + outer) / 2.0

    return limit(-1.0), limit(1.0)
