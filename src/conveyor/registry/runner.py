"""Run an exported model: `python run.py IMAGE...` or `python run.py --csv rows.csv`.

This file is copied as `run.py` into every folder `conveyor models export` writes, next
to `model.onnx`, `signature.json`, `preprocessing.json` and `preprocessing.py`. It needs
only onnxruntime, numpy and Pillow. It prints one JSON line per input: the predicted
label and every class's probability.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def load(folder: Path = HERE) -> tuple[Any, Any, dict[str, Any]]:
    """(onnxruntime session, Preprocessing, signature dict) from an export folder."""
    import onnxruntime as ort

    sys.path.insert(0, str(folder))
    from preprocessing import Preprocessing  # type: ignore[import-not-found,unused-ignore]

    pre = Preprocessing.from_dict(json.loads((folder / "preprocessing.json").read_text()))
    signature = json.loads((folder / "signature.json").read_text())
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sess = ort.InferenceSession(
        str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    return sess, pre, signature


def predict(sess: Any, pre: Any, signature: dict[str, Any], batch: Any) -> list[dict[str, Any]]:
    """Raw inputs (as `preprocessing.apply` takes them) -> label and probabilities each."""
    inputs = pre.apply(batch)
    logits = sess.run(None, {signature["inputs"][0]["name"]: inputs})[0].astype(np.float64)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    labels = signature.get("labels") or [str(i) for i in range(probs.shape[1])]
    return [
        {
            "label": labels[int(p.argmax())],
            "probabilities": {label: float(v) for label, v in zip(labels, p, strict=True)},
        }
        for p in probs
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Predict with the exported model.")
    parser.add_argument("inputs", nargs="*", help="image files (image models)")
    parser.add_argument("--csv", help="a CSV file with the feature columns (tabular models)")
    args = parser.parse_args(argv)
    sess, pre, signature = load()
    batch: list[Any]
    if args.csv:
        with Path(args.csv).open(newline="") as f:
            rows = [{k: (v if v != "" else None) for k, v in r.items()} for r in csv.DictReader(f)]
        names, batch = [f"row {i}" for i in range(len(rows))], rows
    elif args.inputs:
        names, batch = args.inputs, [Path(p).read_bytes() for p in args.inputs]
    else:
        parser.error("give image files, or --csv FILE")
    for name, result in zip(names, predict(sess, pre, signature, batch), strict=True):
        print(json.dumps({"input": name, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
