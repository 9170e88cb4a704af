"""Per-column statistics: computed per shard when it is written, merged per version.

Checks (data/checks.py) and `data show` read these, so they never need to scan data.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

MAX_VALUES = 1000  # value counts kept per column; more distinct values => "incomplete"


def _counted(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_integer(t)
        or pa.types.is_boolean(t)
        or pa.types.is_dictionary(t)
    )


def shard_stats(table: pa.Table) -> dict[str, dict[str, Any]]:
    """Mergeable partial statistics of one shard."""
    out: dict[str, dict[str, Any]] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        t = column.type
        part: dict[str, Any] = {"type": str(t), "count": len(column), "nulls": column.null_count}
        valid = len(column) - column.null_count
        if (pa.types.is_integer(t) or pa.types.is_floating(t)) and valid:
            as_float = pc.cast(column, pa.float64())
            finite = pc.filter(as_float, pc.is_finite(as_float))
            mm = pc.min_max(column).as_py()
            part |= {
                "min": mm["min"],
                "max": mm["max"],
                "n": len(finite),
                "sum": pc.sum(finite).as_py() or 0.0,
                "sumsq": pc.sum(pc.multiply(finite, finite)).as_py() or 0.0,
            }
        if (pa.types.is_binary(t) or pa.types.is_large_binary(t)) and valid:
            sizes = pc.binary_length(column)
            mm = pc.min_max(sizes).as_py()
            part |= {
                "bytes_min": mm["min"],
                "bytes_max": mm["max"],
                "bytes_sum": pc.sum(sizes).as_py(),
            }
        if _counted(t):
            counts = pc.value_counts(column.drop_null() if valid else column)
            pairs = sorted(
                (
                    (str(v), int(c))
                    for v, c in zip(
                        counts.field("values").to_pylist(),
                        counts.field("counts").to_pylist(),
                        strict=True,
                    )
                    if v is not None
                ),
                key=lambda vc: -vc[1],
            )
            part["values"] = dict(pairs[:MAX_VALUES])
            part["values_complete"] = len(pairs) <= MAX_VALUES
        out[name] = part
    return out


def merge_stats(parts: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Combine shard statistics into version statistics (the manifest's `columns`)."""
    merged: dict[str, dict[str, Any]] = {}
    for part in parts:
        for name, p in part.items():
            m = merged.setdefault(name, {"type": p["type"], "count": 0, "nulls": 0})
            m["count"] += p["count"]
            m["nulls"] += p["nulls"]
            if "min" in p:
                m["min"] = p["min"] if m.get("min") is None else min(m["min"], p["min"])
                m["max"] = p["max"] if m.get("max") is None else max(m["max"], p["max"])
                for k in ("n", "sum", "sumsq"):
                    m[k] = m.get(k, 0) + p[k]
            if "bytes_min" in p:
                m["bytes_min"] = min(m.get("bytes_min", p["bytes_min"]), p["bytes_min"])
                m["bytes_max"] = max(m.get("bytes_max", p["bytes_max"]), p["bytes_max"])
                m["bytes_sum"] = m.get("bytes_sum", 0) + p["bytes_sum"]
            if "values" in p:
                values = m.setdefault("values", {})
                for v, c in p["values"].items():
                    values[v] = values.get(v, 0) + c
                m["values_complete"] = m.get("values_complete", True) and p["values_complete"]
    return {name: _finish(m) for name, m in merged.items()}


def _finish(m: dict[str, Any]) -> dict[str, Any]:
    n = m.pop("n", 0)
    total, sumsq = m.pop("sum", None), m.pop("sumsq", None)
    if total is not None:
        mean = total / n if n else None
        m["mean"] = mean
        m["std"] = math.sqrt(max(sumsq / n - mean * mean, 0.0)) if n and mean is not None else None
    elif _numeric(m["type"]):
        m |= {"min": None, "max": None, "mean": None, "std": None}
    if "bytes_sum" in m:
        valid = m["count"] - m["nulls"]
        m["bytes_mean"] = m.pop("bytes_sum") / valid if valid else None
    if "values" in m:
        ordered = sorted(m["values"].items(), key=lambda vc: -vc[1])
        complete = m["values_complete"] and len(ordered) <= MAX_VALUES
        m["values"] = dict(ordered[:MAX_VALUES])
        m["values_complete"] = complete
        m["distinct"] = len(ordered) if complete else None
    return m


def _numeric(type_name: str) -> bool:
    return type_name.startswith(("int", "uint", "float", "double", "halffloat"))
