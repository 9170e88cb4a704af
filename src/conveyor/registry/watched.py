"""What monitoring watches of a model version, defined once for both sides.

The reference (stored at registration from training rows) and every window of served
traffic (from the prediction log) go through `watched_table`, so both sides are the
same columns computed the same way:

- tabular models: each input feature by name, in its raw units;
- image models: `pixel_mean` and `pixel_std` per image, in raw pixel units (0-255);
- every model with a last Linear layer: `embedding`, that layer's input (the model's own
  representation, at most 512 dimensions), computed by the version's ONNX graph;
- classifiers: `predicted` (the label) and `confidence` (its probability).

Embeddings come from the ONNX model with the last Gemm/MatMul's input added as a graph
output, so any registered version has them, whatever trained it.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pyarrow as pa

from conveyor.registry.preprocessing import Preprocessing
from conveyor.registry.signature import Signature

MAX_DIMS = 512  # embedding dimensions kept
_CHUNK = 1024  # rows per ONNX run


class Embedder:
    """The version's ONNX graph with its last linear layer's input exposed."""

    def __init__(self, onnx_bytes: bytes) -> None:
        import onnx
        import onnxruntime as ort

        graph_model = onnx.load_from_string(onnx_bytes)
        graph = graph_model.graph
        linear = [n for n in graph.node if n.op_type in ("Gemm", "MatMul")]
        self.output = linear[-1].input[0] if linear else None
        outputs = {o.name for o in graph.output}
        if self.output is not None and self.output not in outputs:
            graph.output.append(onnx.helper.make_empty_tensor_value_info(self.output))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self._session = ort.InferenceSession(
            graph_model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        self.logits = graph.output[0].name

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Model outputs and embeddings (None without a linear layer) of a batch."""
        wanted = [self.logits] + ([self.output] if self.output else [])
        outs: list[list[np.ndarray]] = [[] for _ in wanted]
        for start in range(0, len(x), _CHUNK):
            got = self._session.run(wanted, {self._input: x[start : start + _CHUNK]})
            for i, part in enumerate(got):
                outs[i].append(np.asarray(part))
        logits = np.concatenate(outs[0]) if len(x) else np.zeros((0, 0), np.float32)
        if not self.output:
            return logits, None
        emb = np.concatenate(outs[1]) if len(x) else np.zeros((0, 0), np.float32)
        return logits, emb.reshape(len(emb), -1)[:, :MAX_DIMS].astype(np.float32)


@functools.lru_cache(maxsize=8)
def embedder(onnx_bytes: bytes) -> Embedder:
    return Embedder(onnx_bytes)


def watched_table(
    pre: Preprocessing,
    signature: Signature,
    x: np.ndarray,
    *,
    embeddings: np.ndarray | None = None,
    predicted: list[str | None] | None = None,
    confidence: np.ndarray | None = None,
) -> pa.Table:
    """The watched columns of model inputs `x` (and what the model answered)."""
    columns: dict[str, Any] = {}
    if pre.kind == "tabular":
        for i, name in enumerate(pre.columns):
            values = x[:, i].astype(np.float64)
            if pre.mean:
                values = values * pre.std[i] + pre.mean[i]
            columns[name] = pa.array(values, pa.float64())
    elif pre.kind == "image" and len(x):
        pixels = _raw_pixels(pre, x)
        flat = pixels.reshape(len(pixels), -1)
        columns["pixel_mean"] = pa.array(flat.mean(axis=1), pa.float64())
        columns["pixel_std"] = pa.array(flat.std(axis=1), pa.float64())
    if embeddings is not None and embeddings.size:
        width = embeddings.shape[1]
        values = pa.array(np.ascontiguousarray(embeddings, np.float32).reshape(-1))
        columns["embedding"] = pa.FixedSizeListArray.from_arrays(values, width)
    if predicted is not None and signature.labels:
        columns["predicted"] = pa.array(predicted, pa.string())
    if confidence is not None and signature.labels:
        columns["confidence"] = pa.array(np.asarray(confidence, np.float64), pa.float64())
    return pa.table(columns) if columns else pa.table({"rows": pa.nulls(len(x), pa.int8())})


def watched_from_model(
    pre: Preprocessing, signature: Signature, onnx_bytes: bytes, x: np.ndarray
) -> pa.Table:
    """Watched columns of inputs the model has not answered yet (training rows)."""
    logits, emb = embedder(onnx_bytes).run(x)
    predicted = confidence = None
    if signature.labels and logits.ndim == 2 and logits.shape[1] == len(signature.labels):
        probs = _softmax(logits.astype(np.float64))
        best = probs.argmax(axis=1)
        predicted = [signature.labels[i] for i in best]
        confidence = probs[np.arange(len(best)), best]
    return watched_table(
        pre, signature, x, embeddings=emb, predicted=predicted, confidence=confidence
    )


def model_input(signature: Signature, flat: np.ndarray) -> np.ndarray:
    """Logged `features` (one flat row per input) back into the model's input shape."""
    shape = [int(d) if d else -1 for d in signature.inputs[0].shape[1:]]
    return np.ascontiguousarray(flat, np.float32).reshape([len(flat), *shape])


def _raw_pixels(pre: Preprocessing, x: np.ndarray) -> np.ndarray:
    """Model input back to raw pixel values (0-255): undo the standardising and scale."""
    out = x.astype(np.float64)
    if pre.mean:
        axis = (1, -1, 1, 1) if pre.layout == "CHW" else (1, 1, 1, -1)
        out = out * np.asarray(pre.std).reshape(axis) + np.asarray(pre.mean).reshape(axis)
    return out / (pre.scale or 1.0)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    out: np.ndarray = z / z.sum(axis=1, keepdims=True)
    return out
