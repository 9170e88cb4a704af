"""Numeric columns: the distribution (Kolmogorov-Smirnov, judged by the Wasserstein
distance in reference standard deviations) and the share of missing values (judged by
Cohen's h). Both read the reference through its sketch (sketch.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from conveyor.data.sketch import NumericCounts, NumericSketch
from conveyor.monitoring.detector import (
    BOOTSTRAP,
    MIN_ROWS,
    Finding,
    interval,
    not_enough,
    register,
)
from conveyor.monitoring.shares import share_change


class KolmogorovSmirnov:
    """Binned two-sample KS over the reference's quantile edges.

    The current values are counted between the reference's edges, so both CDFs are exact
    at every edge and the statistic is the largest gap there: at most 1/1000 below the
    unbinned statistic, which makes the test slightly conservative, never liberal.
    p-value: scipy's `kstwo` at the effective sample size n*m/(n+m), as `ks_2samp`'s
    asymptotic method does. Effect: the Wasserstein-1 distance between the two
    distributions divided by the reference's standard deviation, so a mean shift of
    0.1 sd reads 0.1 whatever the column's unit.
    """

    name = "ks"
    kind = "numeric"
    effect = "Wasserstein distance / reference sd"
    threshold = 0.05

    def test(
        self,
        reference: NumericSketch,
        current: NumericCounts,
        threshold: float,
        rng: np.random.Generator,
    ) -> Finding | None:
        n, m = reference.present, current.present
        if min(n, m) < MIN_ROWS or current.at_or_below is None:
            return not_enough(self.name, threshold, n, m)
        edges, cdf = np.asarray(reference.edges), np.asarray(reference.cdf)
        cum_current = current.at_or_below / m  # F_current at each edge, exactly
        # values beyond the reference's range, and how far beyond (the distance's tails)
        beyond = current.below + current.above
        tails = np.array([current.below_excess, current.above_excess])
        statistic = float(np.max(np.abs(cum_current - cdf)))
        p_value = float(stats.kstwo.sf(statistic, max(1, round(n * m / (n + m)))))
        scale = reference.std if reference.std > 0 else max(abs(reference.mean), 1.0)
        effect = _wasserstein(cum_current, cdf, edges, tails.sum() / m) / scale

        # the interval: both sides resampled (the reference from its sketch), on ~100
        # coarser bins, as the spread around the estimate on the same coarse bins
        group = np.linspace(0, len(edges) - 1, min(len(edges), _COARSE)).round().astype(int)
        coarse_c, coarse_r = cum_current[group], cdf[group]
        cells_c = np.diff(np.concatenate([[0.0], coarse_c, [1.0]])) * m
        cells_r = np.diff(np.concatenate([[0.0], coarse_r])) * n
        draws_c = rng.poisson(np.clip(cells_c, 0, None), size=(BOOTSTRAP, cells_c.size))
        draws_r = rng.poisson(np.clip(cells_r, 0, None), size=(BOOTSTRAP, cells_r.size))
        mc = np.maximum(draws_c.sum(axis=1, keepdims=True), 1)
        mr = np.maximum(draws_r.sum(axis=1, keepdims=True), 1)
        share_beyond = beyond / m
        mean_beyond = tails.sum() / max(beyond, 1)
        boot_tails = share_beyond * mean_beyond * (mc[:, 0] / m)
        spread = _wasserstein(
            np.cumsum(draws_c, axis=1)[:, :-1] / mc, np.cumsum(draws_r, axis=1) / mr,
            edges[group], boot_tails,
        ) - _wasserstein(coarse_c, coarse_r, edges[group], tails.sum() / m)  # fmt: skip
        return Finding(
            self.name,
            threshold,
            n,
            m,
            statistic=statistic,
            p_value=p_value,
            effect=float(effect),
            effect_ci=interval(effect, effect + spread / scale),
        )


_COARSE = 101  # bins the bootstrap resamples: its cost does not grow with the data


def _wasserstein(
    cum_current: np.ndarray, cum_reference: np.ndarray, edges: np.ndarray, tails: Any
) -> Any:
    """W1 = integral of |F_current - F_reference| between the edges, plus the mean
    distance of current values beyond the reference's range; rows of a 2-d input are
    resamples."""
    gaps = np.abs(cum_current - cum_reference)[..., :-1]
    return (gaps * np.diff(edges)).sum(axis=-1) + tails


class MissingShare:
    """The share of missing values (null or NaN; for embeddings, vectors that are null or
    hold a NaN), when either side has any (shares.py). One class, registered per kind."""

    name = "missing"
    effect = "Cohen's h"
    threshold = 0.1

    def __init__(self, kind: str = "numeric") -> None:
        self.kind = kind

    def test(
        self,
        reference: Any,
        current: Any,
        threshold: float,
        rng: np.random.Generator,
    ) -> Finding | None:
        if reference.missing == 0 and current.missing == 0:
            return None
        return share_change(
            self.name,
            reference.missing,
            reference.rows,
            current.missing,
            current.rows,
            threshold,
            rng,
        )


register(KolmogorovSmirnov())
register(MissingShare())
