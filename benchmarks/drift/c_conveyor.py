"""Conveyor's drift engine (conveyor.monitoring.drift), run in the project's .venv.

Tables are pyarrow Tables (numeric float64 with NaN for missing, categorical plain
strings; a vector case is one column "emb" of fixed_size_list<float32>). The reference
side is precomputed with `Reference.from_table` (timed apart, as build_s);
`check(reference, current, alpha=0.05)` is what rows/s times. Its one dataset-level flag
is the report's `drift`.

DRIFT_BENCH_CONVEYOR_MODULE=path/to/file.py loads the engine from that file instead of
conveyor.monitoring.drift (to try the harness on another implementation); every result
then names that file as its engine.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any, ClassVar

import common
import pyarrow as pa

ALPHA = 0.05


def _engine() -> tuple[Any, str]:
    path = os.environ.get("DRIFT_BENCH_CONVEYOR_MODULE")
    if path:
        spec = importlib.util.spec_from_file_location("drift_engine_under_test", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module, f"file {path}"
    from conveyor.monitoring import drift

    return drift, "conveyor.monitoring.drift"


class Conveyor:
    variants: ClassVar[list[str]] = [""]

    def __init__(self) -> None:
        self.drift, self.engine = _engine()

    def load(self, t: common.Table | common.Vectors, variants: list[str]) -> pa.Table:
        if isinstance(t, common.Vectors):
            flat = pa.array(t.values.ravel())
            return pa.table({"emb": pa.FixedSizeListArray.from_arrays(flat, t.values.shape[1])})
        columns: dict[str, pa.Array] = {name: pa.array(v) for name, v in t.numeric.items()}
        for name, codes in t.categorical.items():
            encoded = pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(t.vocab[name]))
            columns[name] = encoded.cast(pa.string())
        return pa.table(columns)

    def build(self, ref: pa.Table, variant: str) -> Any:
        return self.drift.Reference.from_table(ref)

    def check(self, detector: Any, cur: pa.Table, variant: str) -> dict[str, common.Flag]:
        d = self.drift.check(detector, cur, alpha=ALPHA).to_dict()
        flagged = {c["name"] for c in d["columns"] if c.get("drift")}
        return {"drift": (bool(d["drift"]), flagged)}

    def nbytes(self, data: pa.Table) -> int:
        return int(data.nbytes)


if __name__ == "__main__":
    common.run_tasks(Conveyor())
