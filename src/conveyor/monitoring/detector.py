"""The seam between the drift engine and its statistical tests: one `Detector` protocol.

A detector reads one kind of column (numeric, categorical) and answers with a `Finding`:
its test statistic and p-value (is the change real?) and an effect size with a bootstrap
confidence interval (is it large enough to matter?). Detectors are registered by kind;
adding a test is one new file and one `register` call. The rules are in DRIFT.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

MIN_ROWS = 20  # fewer values than this on either side: "not enough data", never an alarm
BOOTSTRAP = 200  # resamples for an effect's confidence interval


@dataclass(frozen=True)
class Finding:
    """One test on one column. `statistic`, `p_value`, `effect` are None when not enough data."""

    test: str
    threshold: float
    n_reference: int
    n_current: int
    statistic: float | None = None
    p_value: float | None = None
    effect: float | None = None
    effect_ci: tuple[float, float] | None = None
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def tested(self) -> bool:
        return self.p_value is not None


class Detector(Protocol):
    """A test for one kind of column, with the effect size it is judged by."""

    name: str
    kind: str  # the column kind it reads, "numeric" or "categorical": its sketch's kind
    effect: str  # what its effect measures, for people
    threshold: float  # the default practical threshold on that effect

    def test(
        self, reference: Any, current: Any, threshold: float, rng: np.random.Generator
    ) -> Finding | None:
        """None when the test does not apply (no missing values on either side)."""


_DETECTORS: dict[str, list[Detector]] = {}


def register(detector: Detector) -> Detector:
    _DETECTORS.setdefault(detector.kind, []).append(detector)
    return detector


def detectors_for(kind: str) -> list[Detector]:
    from conveyor.monitoring import (  # noqa: F401  (they register)
        categorical,
        embedding,
        numeric,
        projections,
    )

    return list(_DETECTORS.get(kind, []))


def not_enough(test: str, threshold: float, n: int, m: int) -> Finding:
    return Finding(
        test, threshold, n, m, note=f"not enough data: {n:,} reference and {m:,} current values"
    )


CONFIDENCE = 0.90  # two-sided: its lower end is a one-sided 95% bound on the effect


def interval(estimate: float, samples: np.ndarray) -> tuple[float, float]:
    """The 90% basic bootstrap interval of an effect, from its resampled values.

    Basic, not percentile: the estimate's excess over the truth is taken to be like the
    resamples' excess over the estimate. Distances are biased upwards (noise alone makes
    them positive), so this pulls the interval down, and near no change it reaches 0.
    """
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(samples, [tail, 1 - tail])
    return max(0.0, float(2 * estimate - high)), max(0.0, float(2 * estimate - low))
