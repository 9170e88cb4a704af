"""alibi-detect 0.13.0's tabular detectors, run in benchmarks/.envs/alibi-detect.

Tables are numpy arrays: the numeric columns as float64 (NaN kept: scipy's K-S then gives a
NaN p-value, which never counts as drift), the categorical columns as integer codes of the
reference's categories (an unseen category gets a code of its own, as a fitted encoder
would give it). Each detector is constructed with x_ref outside the timing (build_s; it
only stores x_ref), `predict()` is what rows/s times. All at their defaults: p_val=0.05,
correction="bonferroni" (drift when any feature's p-value < 0.05 / features).

Flags:
  ks        KSDrift on the numeric columns
  chi2      ChiSquareDrift on the categorical columns (categories inferred from x_ref)
  ks+chi2   either of the two (so up to about 2 x 0.05 false alarms)
  tabular   TabularDrift on all columns (K-S or chi-square per column, one Bonferroni
            correction over all of them): the one detector for a mixed table
  mmd       MMDDrift on a vector column (the embedding and image cases): Gaussian kernel,
            sigma by the median heuristic on x_ref (configure_kernel_from_x_ref=True),
            100 permutations, the PyTorch backend (CPU torch 2.13.0); all its defaults
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, ClassVar

import alibi_detect
import common
import numpy as np
from alibi_detect.cd import ChiSquareDrift, KSDrift, TabularDrift

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
ALPHA = 0.05

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, list[str], list[str]]


class Alibi:
    variants: ClassVar[list[str]] = ["ks+chi2", "tabular"]
    vector_variants: ClassVar[list[str]] = ["mmd"]
    engine = f"alibi-detect {alibi_detect.__version__}"

    def load(self, t: common.Table | common.Vectors, variants: list[str]) -> Any:
        """Only the arrays the variants use (an unused one would count in the memory)."""
        if isinstance(t, common.Vectors):
            return t.values
        empty = np.empty((0, 0))
        numeric = codes = both = empty
        if "ks+chi2" in variants:
            numeric = np.column_stack(list(t.numeric.values()))
            codes = np.column_stack(list(t.categorical.values())).astype(np.int64)
        if "tabular" in variants:
            both = np.column_stack([*t.numeric.values(), *t.categorical.values()])
        return numeric, codes, both, list(t.numeric), list(t.categorical)

    def build(self, ref: Any, variant: str) -> Any:
        if variant == "mmd":
            from alibi_detect.cd import MMDDrift  # imports torch: only for the vector cases

            return MMDDrift(ref, backend="pytorch", p_val=ALPHA)
        numeric, codes, both, num_names, cat_names = ref
        if variant == "ks+chi2":
            return (
                KSDrift(numeric, p_val=ALPHA),
                ChiSquareDrift(codes, p_val=ALPHA),
                num_names,
                cat_names,
            )
        k_num = numeric.shape[1]
        categories = {k_num + j: None for j in range(codes.shape[1])}
        return (
            TabularDrift(both, p_val=ALPHA, categories_per_feature=categories),
            num_names + cat_names,
        )

    def check(self, detector: Any, cur: Any, variant: str) -> dict[str, common.Flag]:
        if variant == "mmd":
            drift = bool(detector.predict(cur)["data"]["is_drift"])
            return {"mmd": (drift, {"emb"} if drift else set())}
        numeric, codes, both, _, _ = cur
        if variant == "ks+chi2":
            ks, chi2, num_names, cat_names = detector
            ks_flag = _flag(ks.predict(numeric), num_names)
            chi2_flag = _flag(chi2.predict(codes), cat_names)
            either = (ks_flag[0] or chi2_flag[0], ks_flag[1] | chi2_flag[1])
            return {"ks": ks_flag, "chi2": chi2_flag, "ks+chi2": either}
        tabular, names = detector
        return {"tabular": _flag(tabular.predict(both), names)}

    def nbytes(self, data: Any) -> int:
        if isinstance(data, np.ndarray):
            return int(data.nbytes)
        return sum(int(a.nbytes) for a in data[:3])


def _flag(prediction: dict[str, Any], names: list[str]) -> common.Flag:
    data = prediction["data"]
    below = np.asarray(data["p_val"]) < data["threshold"]
    return bool(data["is_drift"]), {name for name, hit in zip(names, below, strict=True) if hit}


if __name__ == "__main__":
    common.run_tasks(Alibi())
