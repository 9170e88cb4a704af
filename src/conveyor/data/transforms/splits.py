"""Deterministic, stratified train/val/test assignment."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from conveyor.core.errors import ConveyorError
from conveyor.data.transforms.inputs import _U64, Keys
from conveyor.data.transforms.keys import _check_keys

_MIX1, _MIX2, _GOLDEN = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0x9E3779B97F4A7C15


def _mix(values: Keys) -> Keys:
    """SplitMix64's finaliser: a bijection on 64 bits that spreads every input bit."""
    values = values ^ (values >> np.uint64(30))
    values = values * np.uint64(_MIX1)  # uint64 arrays wrap around, as intended
    values = values ^ (values >> np.uint64(27))
    values = values * np.uint64(_MIX2)
    return values ^ (values >> np.uint64(31))


def _check_fractions(fractions: Mapping[str, float]) -> list[tuple[str, float]]:
    if not fractions:
        raise ConveyorError("no splits given", "give fractions such as train=0.8 test=0.2")
    for name, fraction in fractions.items():
        if not isinstance(name, str) or not name:
            raise ConveyorError(f"split name {name!r} is not a name", "use names like train, test")
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, int | float)
            or not math.isfinite(fraction)
            or not 0 < fraction <= 1
        ):
            raise ConveyorError(
                f"fraction of split '{name}' is {fraction!r}", "each fraction is a number in (0, 1]"
            )
    total = math.fsum(fractions.values())
    if abs(total - 1) > 1e-6:
        listed = ", ".join(f"{n}={f:g}" for n, f in fractions.items())
        raise ConveyorError(f"split fractions sum to {total:g}, not 1 ({listed})",
                            "make the fractions add up to 1")  # fmt: skip
    return sorted((str(n), float(f)) for n, f in fractions.items())


def _stratum_codes(strata: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
    """Integer codes for stratum values; null (None or NaN) is a stratum of its own."""
    if strata.dtype != object:
        return np.unique(strata, return_inverse=True)[1].reshape(-1).astype(np.intp)
    codes: dict[Any, int] = {}
    null = object()
    out = np.empty(len(strata), dtype=np.intp)
    for i, value in enumerate(strata.tolist()):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            value = null
        out[i] = codes.setdefault(value, len(codes))
    return out


def assign_splits(
    keys: npt.NDArray[Any],
    fractions: Mapping[str, float],
    seed: int,
    strata: npt.NDArray[Any] | None = None,
) -> npt.NDArray[np.str_]:
    """The split name of every row: exact proportions, deterministic from seed and content.

    `keys` are the `row_keys` of all rows (any order, any sharding); `fractions` maps split
    names to fractions summing to 1. Within each stratum (each distinct `strata` value,
    null included; the whole dataset without strata), rows are ordered by a seeded mix of
    their key and cut at the cumulative fractions, splits taken in name order. So each
    split holds its fraction of every stratum to within one row, and the same rows with the
    same seed get the same splits whatever their order or shards. Rows with the same key
    (exact duplicates) sit next to each other and are told apart by position, so a
    duplicate may land on either side of a cut.

    A row's split also depends on the other rows of its stratum (the cut is global): adding
    rows moves a few rows across the cuts, it does not reshuffle the rest.
    """
    array = _check_keys(keys, "split")
    named = _check_fractions(fractions)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ConveyorError(f"split seed must be a whole number, not {seed!r}", "use e.g. 0 or 42")
    rows = len(array)
    if strata is None:
        codes = np.zeros(rows, dtype=np.intp)
    else:
        strata = np.asarray(strata)
        if strata.ndim != 1 or len(strata) != rows:
            raise ConveyorError(
                f"split: {len(strata)} stratum values for {rows} rows",
                "give one stratum value (e.g. the label) per row",
            )
        codes = _stratum_codes(strata)
    state = int(seed) & _U64
    salt = int(_mix(np.array([(state + _GOLDEN) & _U64], dtype=np.uint64))[0])
    score = _mix(_mix(array[:, 0] ^ np.uint64(salt)) ^ array[:, 1])
    order = np.lexsort((np.arange(rows), array[:, 1], array[:, 0], score, codes))
    sorted_codes = codes[order]
    counts = np.bincount(codes) if rows else np.zeros(0, dtype=np.intp)
    starts = np.r_[0, np.cumsum(counts)[:-1]].astype(np.intp) if rows else counts
    position = np.arange(rows) - starts[sorted_codes]
    size = counts[sorted_codes].astype(np.float64)
    which = np.zeros(rows, dtype=np.intp)
    cumulative = 0.0
    for _, fraction in named[:-1]:
        cumulative += fraction
        cut = np.floor(cumulative * size + 0.5)  # round half up: no banker's rounding
        which += position >= cut
    assigned = np.empty(rows, dtype=np.intp)
    assigned[order] = which
    names = np.array([n for n, _ in named], dtype=np.str_)
    return names[assigned]


# -- map --------------------------------------------------------------------------------------
