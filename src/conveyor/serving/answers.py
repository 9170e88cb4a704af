"""Model outputs to answers: labels and scores for classifiers, values for the rest.

A classifier is a model whose first output has a class axis (shape [batch, k], k > 1).
Its scores are probabilities: the output as is when it is named like "probabilities",
else the softmax of its logits, computed in float64 and given as float32, so a row's
score does not depend on how many rows shared its batch. Labels come from the signature
(class index otherwise).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from conveyor.serving.source import ServedModel

_SMALL = 8  # batches up to this many rows are answered without numpy
_FLOAT32 = struct.Struct("f")  # scores are float32 whichever path computed them


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


class Answerer:
    """Turns one model version's output rows into JSON-ready predictions."""

    def __init__(self, model: ServedModel) -> None:
        shape = model.signature.outputs[0].shape
        self.classifier = len(shape) == 2 and (shape[1] is None or shape[1] > 1)
        self.probabilities = model.outputs_probabilities
        self.labels = list(model.signature.labels)

    def predictions(self, out: np.ndarray, all_scores: bool = False) -> list[dict[str, Any]]:
        if not self.classifier or out.ndim != 2:
            values = out.reshape(len(out), -1)
            if values.shape[1] == 1:
                return [{"value": float(v)} for v in values[:, 0].tolist()]
            return [{"value": row} for row in values.tolist()]
        if not all_scores and len(out) <= _SMALL:
            return self._few(out.tolist())
        probs = out if self.probabilities else softmax(out.astype(np.float64))
        best = probs.argmax(axis=1)
        scores = probs[np.arange(len(probs)), best].astype(np.float32).tolist()
        labels = self.labels
        names = [labels[i] if i < len(labels) else str(i) for i in best.tolist()]
        if not all_scores:
            return [{"label": n, "score": s} for n, s in zip(names, scores, strict=True)]
        keys = labels if len(labels) == probs.shape[1] else [str(i) for i in range(probs.shape[1])]
        return [
            {"label": n, "score": s, "scores": dict(zip(keys, row, strict=True))}
            for n, s, row in zip(names, scores, probs.tolist(), strict=True)
        ]

    def _few(self, rows: list[list[float]]) -> list[dict[str, Any]]:
        """A handful of rows in plain Python: cheaper than numpy's per-call overhead."""
        labels = self.labels
        answers = []
        for row in rows:
            top = max(row)
            best = row.index(top)
            # the softmax at the argmax is 1 / sum(exp(v - max))
            score = top if self.probabilities else 1.0 / sum(math.exp(v - top) for v in row)
            score = _FLOAT32.unpack(_FLOAT32.pack(score))[0]  # as numpy's float32 path
            name = labels[best] if best < len(labels) else str(best)
            answers.append({"label": name, "score": score})
        return answers
