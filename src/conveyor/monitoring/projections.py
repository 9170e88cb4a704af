"""Embedding columns, a second test that grows with the window: the reference's top 8
principal axes (fitted on its sample), every vector on each side projected onto them,
and the numeric columns' binned KS with its Wasserstein / sd effect on each axis. The
finding is the axis that moved most; its p-value is the smallest over the axes times 8
(Bonferroni). The rules and the numbers behind them are in DRIFT.md."""

from __future__ import annotations

import numpy as np

from conveyor.data.sketch import EmbeddingSample, EmbeddingSketch
from conveyor.monitoring.detector import Finding, not_enough, register
from conveyor.monitoring.numeric import KolmogorovSmirnov

_KS = KolmogorovSmirnov()


class Projections:
    """KS + Wasserstein / sd on each of the reference's principal axes (numeric.py).

    The reference side of each axis is a NumericSketch of every present reference vector
    outside the sample (centred, scaled and projected as the sample is); the window's is
    its NumericCounts against those edges, counted batch by batch, so both sides count
    every vector and the test's power grows with the window, unlike the MMD's, which sees
    1,000 + 2,000 vectors. p-value: min over the K axes x K, capped at 1. Effect: the
    Wasserstein distance along the axis where it is largest, in the reference's sds along
    that axis, with that axis's bootstrap interval: a 0.1-sd mean shift along an axis
    reads 0.1. None when the sketch has no projections (an older one, or a reference no
    larger than its sample).
    """

    name = "projections"
    kind = "embedding"
    effect = "Wasserstein distance / reference sd along the principal axis that moved most"
    threshold = 0.05

    def test(
        self,
        reference: EmbeddingSketch,
        current: EmbeddingSample,
        threshold: float,
        rng: np.random.Generator,
    ) -> Finding | None:
        axes = len(reference.projections)
        if not axes or len(current.projected) != axes:
            return None
        n, m = reference.projections[0].present, current.present
        findings = [
            _KS.test(r, c, threshold, rng)
            for r, c in zip(reference.projections, current.projected, strict=True)
        ]
        tested = [f for f in findings if f is not None and f.tested]
        if len(tested) < axes:
            return not_enough(self.name, threshold, n, m)
        axis = int(np.argmax([f.effect or 0.0 for f in tested]))
        best = tested[axis]
        p_min = min(f.p_value for f in tested if f.p_value is not None)
        return Finding(
            self.name,
            threshold,
            n,
            m,
            statistic=best.statistic,
            p_value=min(1.0, p_min * axes),
            effect=best.effect,
            effect_ci=best.effect_ci,
            detail={
                "axis": axis,
                "axis_share": reference.axis_shares[axis],
                "axes": axes,
            },
        )


register(Projections())
