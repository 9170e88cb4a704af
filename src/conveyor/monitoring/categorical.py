"""Categorical columns: Pearson's chi-square on the 2 x K table of category counts,
judged by the Jensen-Shannon distance (missing values are a category of their own), and
the share of rows in categories the reference never saw, which are named."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import special, stats

from conveyor.data.sketch import CategoricalSketch
from conveyor.monitoring.detector import (
    BOOTSTRAP,
    MIN_ROWS,
    Finding,
    interval,
    not_enough,
    register,
)
from conveyor.monitoring.shares import share_change

RARE = 5  # a category expecting fewer counts than this joins one pooled cell


class ChiSquare:
    """Chi-square test of homogeneity (no continuity correction) between the reference's
    and the current category counts. Categories expected fewer than 5 times on either
    side are pooled into one cell first, so the chi-square approximation holds; a new
    category is a cell like any other (its reference count is 0). Effect: the
    Jensen-Shannon distance (base 2, 0 = same shares, 1 = no category in common) over
    every category, unpooled. The default 0.05 is about what a 0.12 sd mean shift gives a
    normal column (0.05 sd gives 0.021); with two categories, 30% -> 35% is 0.045; moving
    5 points from the commonest of five categories (40%) to the rarest (8%) is 0.074."""

    name = "chi2"
    kind = "categorical"
    effect = "Jensen-Shannon distance"
    threshold = 0.05

    def test(
        self,
        reference: CategoricalSketch,
        current: dict[str, int],
        threshold: float,
        rng: np.random.Generator,
    ) -> Finding | None:
        names = sorted(set(reference.counts) | set(current))
        ref = np.array([reference.counts.get(c, 0) for c in names], dtype=np.float64)
        cur = np.array([current.get(c, 0) for c in names], dtype=np.float64)
        n, m = int(ref.sum()), int(cur.sum())
        if min(n, m) < MIN_ROWS:
            return not_enough(self.name, threshold, n, m)
        effect = float(_jensen_shannon(ref / n, cur / m))
        pooled_share = (ref + cur) / (n + m)
        rare = pooled_share * min(n, m) < RARE
        table = np.vstack([ref[~rare], cur[~rare]])
        if rare.any():
            table = np.hstack([table, [[ref[rare].sum()], [cur[rare].sum()]]])
        table = table[:, table.sum(axis=0) > 0]
        if table.shape[1] < 2:  # one category on both sides: nothing can have moved
            statistic, p_value = 0.0, 1.0
        else:
            result = stats.chi2_contingency(table, correction=False)
            statistic, p_value = float(result.statistic), float(result.pvalue)
        samples = _jensen_shannon(
            rng.multinomial(n, ref / n, size=BOOTSTRAP) / n,
            rng.multinomial(m, cur / m, size=BOOTSTRAP) / m,
        )
        return Finding(
            self.name,
            threshold,
            n,
            m,
            statistic=statistic,
            p_value=p_value,
            effect=effect,
            effect_ci=interval(effect, samples),
        )


def _jensen_shannon(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon distance, base 2, between share vectors (rows of 2-d inputs at once)."""
    mid = (p + q) / 2
    divergence = (special.rel_entr(p, mid).sum(axis=-1) + special.rel_entr(q, mid).sum(axis=-1)) / 2
    return np.sqrt(np.clip(divergence / np.log(2), 0, None))  # type: ignore[no-any-return]


class NewCategories:
    """The share of rows in categories the reference never had, when there are any
    (shares.py): a new category is named however few rows it has, and alarms once its
    share is real and large enough (Cohen's h 0.1: 0.25% of rows)."""

    name = "new"
    kind = "categorical"
    effect = "Cohen's h"
    threshold = 0.1

    def test(
        self,
        reference: CategoricalSketch,
        current: dict[str, int],
        threshold: float,
        rng: np.random.Generator,
    ) -> Finding | None:
        new = {c: k for c, k in current.items() if c not in reference.counts and k > 0}
        if not new:
            return None
        m = sum(current.values())
        finding = share_change(self.name, 0, reference.rows, sum(new.values()), m, threshold, rng)
        top = dict(sorted(new.items(), key=lambda kv: -kv[1])[:10])
        return replace(finding, detail={**finding.detail, "new_categories": top})


register(ChiSquare())
register(NewCategories())
