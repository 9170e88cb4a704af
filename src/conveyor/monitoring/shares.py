"""A share of rows that changed: missing values (numeric.py), unseen categories
(categorical.py). One test and one effect size for both."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from conveyor.monitoring.detector import BOOTSTRAP, MIN_ROWS, Finding, interval, not_enough


def share_change(
    test: str, a: int, n: int, b: int, m: int, threshold: float, rng: np.random.Generator
) -> Finding:
    """`a` of `n` reference rows against `b` of `m` current rows.

    Fisher's exact test when a cell expects fewer than 5, else the two-proportion z-test.
    Effect: Cohen's h, |2 asin sqrt(p1) - 2 asin sqrt(p2)|, which weighs a change near 0%
    more than the same points near 50% (0.2 is "small" in Cohen's scale; 0% -> 1% is
    h = 0.2, 0% -> 0.25% is 0.1, 10% -> 11% is 0.03).
    """
    if min(n, m) < MIN_ROWS:
        return not_enough(test, threshold, n, m)
    pooled = (a + b) / (n + m)
    if min(n, m) * min(pooled, 1 - pooled) < 5:
        p_value = float(stats.fisher_exact([[a, n - a], [b, m - b]]).pvalue)
    else:
        z = (a / n - b / m) / math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
        p_value = float(2 * stats.norm.sf(abs(z)))
    effect = float(_cohens_h(a / n, b / m))
    samples = _cohens_h(
        rng.binomial(n, a / n, BOOTSTRAP) / n, rng.binomial(m, b / m, BOOTSTRAP) / m
    )
    return Finding(
        test,
        threshold,
        n,
        m,
        statistic=b / m - a / n,
        p_value=p_value,
        effect=effect,
        effect_ci=interval(effect, samples),
        detail={"reference_share": a / n, "current_share": b / m},
    )


def _cohens_h(p1: np.ndarray | float, p2: np.ndarray | float) -> np.ndarray:
    return np.abs(2 * np.arcsin(np.sqrt(p1)) - 2 * np.arcsin(np.sqrt(p2)))  # type: ignore[no-any-return]
