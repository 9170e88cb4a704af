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

Vector cases (one embedding "emb" of 384 or 256 float32 columns, declared as
`DataDefinition(embeddings={"emb": [...]})`): the `EmbeddingsDrift` metric's own drift
methods, called as the metric calls them (`method(current[emb], reference[emb])`), because
the metric also fits a t-SNE picture of 2 x 2,500 rows on every run (10 s at 500 + 500 rows,
and its result does not say whether drift was found, only the score):
  model   the metric's default: model(bootstrap=reference rows < 1,000): a logistic
          SGDClassifier told reference from current on a 50/50 split; drift when its ROC
          AUC > 0.55, or, below 1,000 reference rows, when it beats the 95th percentile of
          100 random scorings' AUC
  mmd     MMDDriftMethod(): unbiased MMD^2, Gaussian kernel (sigma = median distance
          between up to 1,000 x 1,000 rows), drift when > 0.015 (a fixed threshold, no
          test); only up to 5,000 rows (its kernel is (n + m)^2 float64)
  report  the whole Report([EmbeddingsDrift("emb")]) with its t-SNE (speed rows only;
          flag: AUC > 0.55, the default at >= 1,000 reference rows)
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import common
import evidently
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.legacy.metrics.data_drift.embedding_drift_methods import MMDDriftMethod, model
from evidently.metrics import EmbeddingsDrift
from evidently.presets import DataDriftPreset

warnings.filterwarnings("ignore")


MMD_ROWS = 5000  # its kernel is (n + m)^2 float64: 10,000 rows are 800 MB


class Evidently:
    variants: ClassVar[list[str]] = [""]
    vector_variants: ClassVar[list[str]] = ["model", "mmd"]
    engine = f"evidently {evidently.__version__}"

    def load(
        self, t: common.Table | common.Vectors, variants: list[str]
    ) -> tuple[pd.DataFrame, DataDefinition]:
        if isinstance(t, common.Vectors):
            names = [f"e{i}" for i in range(t.values.shape[1])]
            return pd.DataFrame(t.values, columns=names), DataDefinition(embeddings={"emb": names})
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
        if definition.embeddings:
            return self._embeddings(ref_df, cur_df, definition, variant)
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

    def _embeddings(
        self, ref: pd.DataFrame, cur: pd.DataFrame, definition: DataDefinition, variant: str
    ) -> dict[str, common.Flag]:
        names = definition.embeddings["emb"]
        if variant == "report":
            snapshot = Report([EmbeddingsDrift(embeddings_name="emb")]).run(
                current_data=Dataset.from_pandas(cur, data_definition=definition),
                reference_data=Dataset.from_pandas(ref, data_definition=definition),
            )
            score = float(snapshot.dict()["metrics"][0]["value"])
            return {"report": (score > 0.55, {"emb"} if score > 0.55 else set())}
        if variant == "mmd" and len(ref) + len(cur) > 2 * MMD_ROWS:
            return {}
        # as the metric calls them: on column selections (copies; the model method adds
        # a "target" column to what it is given)
        method = model(bootstrap=len(ref) < 1000) if variant == "model" else MMDDriftMethod()
        _, drift, _ = method(cur[names], ref[names])
        return {variant: (bool(drift), {"emb"} if drift else set())}

    def nbytes(self, data: tuple[pd.DataFrame, DataDefinition]) -> int:
        # Shallow: the str objects of a categorical column are the ~100 category names,
        # shared by every row; a row costs its 8-byte pointer.
        return int(data[0].memory_usage(deep=False).sum())


if __name__ == "__main__":
    common.run_tasks(Evidently())
