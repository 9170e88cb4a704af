"""Evidently 0.7.23's DataDriftPreset, run in benchmarks/.envs/evidently.

Tables are pandas DataFrames (numeric float64 with NaN, categorical object columns of
str), passed with an explicit DataDefinition so that no column type is guessed. Evidently
has no precomputed reference: every check runs the whole report on both windows, and
that whole run (Dataset.from_pandas for both, Report.run, the snapshot's dict) is what
rows/s times.

Flags, read from the snapshot's tests (`Report(..., include_tests=True)`):
  dataset     the preset's dataset-level result: its DriftedColumnsCount test ("Share of
              Drifted Columns: Less 0.500") failed, i.e. at least half the columns drifted
              (0.7 has no `dataset_drift` field any more; this is the same rule)
  any_column  any "Value Drift for column ..." test failed
The per-column defaults: up to 1,000 rows, K-S (numeric) and chi-square (categorical)
p-value < 0.05; above, Wasserstein distance normed by the reference SD >= 0.1 (numeric)
and Jensen-Shannon distance >= 0.1 (categorical).
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import common
import evidently
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

warnings.filterwarnings("ignore")


class Evidently:
    variants: ClassVar[list[str]] = [""]
    engine = f"evidently {evidently.__version__}"

    def load(self, t: common.Table, variants: list[str]) -> tuple[pd.DataFrame, DataDefinition]:
        data: dict[str, Any] = dict(t.numeric)
        data.update({name: t.strings(name) for name in t.categorical})
        definition = DataDefinition(
            numerical_columns=list(t.numeric), categorical_columns=list(t.categorical)
        )
        return pd.DataFrame(data), definition

    def build(self, ref: tuple[pd.DataFrame, DataDefinition], variant: str) -> Any:
        return ref  # nothing to precompute: the report reads the reference every time

    def check(self, detector: Any, cur: Any, variant: str) -> dict[str, common.Flag]:
        ref_df, definition = detector
        cur_df, _ = cur
        snapshot = Report([DataDriftPreset()], include_tests=True).run(
            current_data=Dataset.from_pandas(cur_df, data_definition=definition),
            reference_data=Dataset.from_pandas(ref_df, data_definition=definition),
        )
        dataset, columns, seen = False, set(), 0
        for test in snapshot.dict()["tests"]:
            params = test["metric_config"]["params"]
            failed = test["status"] == "FAIL"
            if params["type"].endswith("DriftedColumnsCount"):
                dataset = failed
                seen += 1
            elif params["type"].endswith("ValueDrift") and failed:
                columns.add(params["column"])
        if seen != 1:
            raise RuntimeError("no DriftedColumnsCount test in the snapshot")
        return {
            "dataset": (dataset, columns if dataset else set()),
            "any_column": (bool(columns), columns),
        }

    def nbytes(self, data: tuple[pd.DataFrame, DataDefinition]) -> int:
        # Shallow: the str objects of a categorical column are the ~100 category names,
        # shared by every row; a row costs its 8-byte pointer.
        return int(data[0].memory_usage(deep=False).sum())


if __name__ == "__main__":
    common.run_tasks(Evidently())
