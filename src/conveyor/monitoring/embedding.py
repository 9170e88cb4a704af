"""Embedding columns (vectors of one width: text or image embeddings, small images): the
maximum mean discrepancy between the reference's sample and the window's, with a
permutation p-value, judged by the mean shift along the reference's first principal axis
that would move the discrepancy as much. Missing vectors are their own share test.
The rules and the numbers behind them are in DRIFT.md."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

from conveyor.data.sketch import EmbeddingSample, EmbeddingSketch, squared_distances
from conveyor.monitoring.detector import (
    BOOTSTRAP,
    MIN_ROWS,
    Finding,
    interval,
    not_enough,
    register,
)
from conveyor.monitoring.numeric import MissingShare

PERMUTATIONS = 2000  # at most: the smallest p-value they can give is 1/2001, < 0.05/100
STOP_AFTER = 20  # permuted values at or above the observed one: then the p-value is known
_BATCH = 100  # permutations per kernel product


class MaximumMeanDiscrepancy:
    """Unbiased MMD^2 with a Gaussian kernel between the reference's sample (1,000
    vectors) and the window's reservoir (2,000), both centred on the reference mean and
    divided by one scale, so distances keep the embedding's geometry.

    The kernel's sigma is fixed per reference (median heuristic on its sample, in the
    sketch). p-value: a permutation test on one kernel matrix, stopped by Besag and
    Clifford's rule once 20 permuted values reach the observed one (p = 20 / permutations
    drawn; exact, and about 110 permutations on unchanged data), else after 2,000
    (p = (hits + 1) / 2,001). When none of the 2,000 reaches it, the p-value is the
    Pearson type III tail fitted to their mean, sd and skewness, no larger than 1/2,001,
    so a clear shift still passes a Holm correction over hundreds of columns.

    Effect: for Gaussian data with covariance S, a mean shift delta gives
    MMD^2 = 2c (1 - exp(-q / 2)) with q = delta' (sigma^2 I + 2S)^-1 delta and c the mean
    kernel between two reference vectors. The effect inverts that for a shift along the
    reference's first principal axis (variance lambda): d = sqrt(q (sigma^2 + 2 lambda) /
    lambda), so a mean shift of d sds along that axis reads d; a shift along a minor axis
    reads less, a change of spread or shape reads as the shift that moves MMD as much.
    Interval: 200 bootstrap resamples of both samples on the MMD^2 scale (pairs of a
    vector with its own copy left out), mapped through the same function.
    """

    name = "mmd"
    kind = "embedding"
    effect = "mean shift along the reference's first principal axis, in its sds"
    threshold = 0.05

    def test(
        self,
        reference: EmbeddingSketch,
        current: EmbeddingSample,
        threshold: float,
        rng: np.random.Generator,
    ) -> Finding | None:
        n_all, m_all = reference.present, current.present
        x, y = reference.vectors, reference.scaled(current.vectors)
        n, m = x.shape[0], y.shape[0]
        if min(n, m) < MIN_ROWS:
            return not_enough(self.name, threshold, n_all, m_all)
        kernel = _kernel(x, y, reference.bandwidth)
        rows = kernel.sum(axis=1, dtype=np.float64)
        pairs = _Pairs(n, m, float(rows.sum()))
        observed = float(pairs.mmd2(kernel[:n, :n].sum(dtype=np.float64), rows[:n].sum()))
        p_value, drawn = _permutation_p(kernel, rows, pairs, observed, rng)
        resampled = _bootstrap(kernel, n, rng)
        shift = _Shift(
            mean_kernel=float(kernel[:n, :n].sum(dtype=np.float64)) / (n * (n - 1)),
            sigma2=reference.bandwidth**2,
            axis_variance=reference.axis_variance,
        )
        low, high = interval(observed, resampled)
        return Finding(
            self.name,
            threshold,
            n_all,
            m_all,
            statistic=observed,
            p_value=p_value,
            effect=shift(max(observed, 0.0)),
            effect_ci=(shift(low), shift(high)),
            detail={
                "sample_reference": n,
                "sample_current": m,
                "permutations": drawn,
                "bandwidth": reference.bandwidth,
                "largest_mean_shifts": _largest_mean_shifts(reference, current),
            },
        )


def _kernel(x: np.ndarray, y: np.ndarray, sigma: float) -> np.ndarray:
    """The Gaussian kernel over the pooled sample (reference rows first), float32, with a
    zero diagonal (the unbiased statistic never pairs a vector with itself)."""
    pooled = np.vstack([x, y])
    kernel = squared_distances(pooled, pooled)
    kernel *= np.float32(-1 / (2 * sigma * sigma))
    np.exp(kernel, out=kernel)
    np.fill_diagonal(kernel, 0)
    return kernel


class _Pairs:
    """Unbiased MMD^2 from the two sums a labelling changes: `within`, the kernel summed
    over ordered pairs of reference-labelled rows, and `rows`, the kernel's row sums
    summed over those rows (the total over all pairs stays the same)."""

    def __init__(self, n: int, m: int, total: float) -> None:
        self.n, self.m, self.total = n, m, total

    def mmd2(self, within: Any, rows: Any) -> Any:
        n, m = self.n, self.m
        across = rows - within
        other = self.total - 2 * rows + within
        return within / (n * (n - 1)) + other / (m * (m - 1)) - 2 * across / (n * m)


def _permutation_p(
    kernel: np.ndarray,
    rows: np.ndarray,
    pairs: _Pairs,
    observed: float,
    rng: np.random.Generator,
) -> tuple[float, int]:
    """(p-value, permutations drawn): Besag-Clifford sequential, then a fitted tail."""
    size, n = kernel.shape[0], pairs.n
    hits, drawn = 0, 0
    values: list[np.ndarray] = []
    while drawn < PERMUTATIONS:
        b = min(_BATCH, PERMUTATIONS - drawn)
        chosen = np.argpartition(rng.random((b, size)), n - 1, axis=1)[:, :n]
        labels = np.zeros((b, size), dtype=np.float32)
        np.put_along_axis(labels, chosen, 1.0, axis=1)
        within = np.einsum("bi,ib->b", labels, kernel @ labels.T, dtype=np.float64)
        permuted = pairs.mmd2(within, labels @ rows)
        at_or_above = np.flatnonzero(permuted >= observed)
        if hits + at_or_above.size >= STOP_AFTER:
            stopped_at = drawn + int(at_or_above[STOP_AFTER - hits - 1]) + 1
            return STOP_AFTER / stopped_at, stopped_at
        hits += at_or_above.size
        drawn += b
        values.append(permuted)
    p_value = (hits + 1) / (PERMUTATIONS + 1)
    if hits == 0:  # beyond every permutation: how far, from the shape of their spread
        null = np.concatenate(values)
        sd = float(null.std(ddof=1))
        if sd > 0:
            skew = float(stats.skew(null, bias=False))
            tail = float(stats.pearson3.sf((observed - float(null.mean())) / sd, skew))
            p_value = min(p_value, tail)
    return p_value, drawn


def _bootstrap(kernel: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """MMD^2 of BOOTSTRAP resamples of both samples, as weights (a vector drawn k times
    weighs k); a pair of copies of one vector is left out, as the diagonal is."""
    m = kernel.shape[0] - n
    wx, wy = _draw_counts(n, rng), _draw_counts(m, rng)
    from_x = kernel[:, :n] @ wx.T  # each row's kernel with every resample of the reference
    xx = np.einsum("bi,ib->b", wx, from_x[:n], dtype=np.float64)
    xy = np.einsum("bi,ib->b", wy, from_x[n:], dtype=np.float64)
    yy = np.einsum("bi,ib->b", wy, kernel[n:, n:] @ wy.T, dtype=np.float64)
    pairs_x = n * n - np.square(wx, dtype=np.float64).sum(axis=1)
    pairs_y = m * m - np.square(wy, dtype=np.float64).sum(axis=1)
    return xx / pairs_x + yy / pairs_y - 2 * xy / (n * m)  # type: ignore[no-any-return]


def _draw_counts(n: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of n vectors is drawn in each of BOOTSTRAP resamples of n."""
    drawn = rng.integers(0, n, size=(BOOTSTRAP, n)) + n * np.arange(BOOTSTRAP)[:, None]
    counts = np.bincount(drawn.ravel(), minlength=BOOTSTRAP * n)
    return counts.reshape(BOOTSTRAP, n).astype(np.float32)


class _Shift:
    """MMD^2 -> the mean shift along the first principal axis, in its sds, that gives it
    (Gaussian data: MMD^2 = 2c (1 - exp(-q / 2)), q = d^2 lambda / (sigma^2 + 2 lambda))."""

    def __init__(self, mean_kernel: float, sigma2: float, axis_variance: float) -> None:
        self.c = max(mean_kernel, 1e-12)
        self.per_q = (sigma2 + 2 * axis_variance) / axis_variance

    def __call__(self, mmd2: float) -> float:
        share = min(max(mmd2, 0.0) / (2 * self.c), 1 - 1e-12)
        return math.sqrt(-2 * math.log1p(-share) * self.per_q)


def _largest_mean_shifts(reference: EmbeddingSketch, current: EmbeddingSample) -> list[Any]:
    """The five dimensions whose window mean moved most, in that dimension's reference sds
    (every current vector counts, not only the sample)."""
    if current.sums is None or not current.present:
        return []
    std = np.asarray(reference.std)
    moved = (current.sums / current.present - np.asarray(reference.mean)) / np.where(
        std > 0, std, np.inf
    )
    top = np.argsort(-np.abs(moved))[:5]
    return [{"dimension": int(i), "shift_sd": float(moved[i])} for i in top]


register(MaximumMeanDiscrepancy())
register(MissingShare("embedding"))  # missing vectors, as numbers' missing values
