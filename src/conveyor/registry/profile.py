"""The reference profile: what the training data looked like, for drift monitoring.

Tabular data: per-feature count, missing share, mean, std, quantiles and a histogram.
Images: per-channel pixel mean and std, a brightness histogram and the stored sizes.
With the model at hand, also its embedding statistics (the input of its last Linear
layer: per-dimension mean and std, and the norm's quantiles) and the distribution of
its predictions and confidences. Plain JSON (format `conveyor.profile/1`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.registry.preprocessing import Preprocessing

if TYPE_CHECKING:
    import torch

FORMAT = "conveyor.profile/1"
QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
_BINS = 16
_MAX_DIMS = 512


def build_profile(
    preprocessing: Preprocessing,
    raw: Any,
    *,
    source: str,
    model: torch.nn.Module | None = None,
    labels: Sequence[str] = (),
) -> dict[str, Any]:
    """Profile a sample of raw training inputs (the batch `preprocessing.apply` takes)."""
    profile: dict[str, Any] = {"format": FORMAT, "kind": preprocessing.kind, "source": source}
    inputs = preprocessing.apply(raw)
    profile["rows"] = len(inputs)
    if preprocessing.kind == "tabular":
        columns = raw if isinstance(raw, dict) else None
        profile["features"] = {
            name: numeric_summary(_column(columns, inputs, preprocessing, i, name))
            for i, name in enumerate(preprocessing.columns)
        }
    elif preprocessing.kind == "image":
        pixels = np.stack([preprocessing.decode(item) for item in raw]) if len(raw) else None
        profile["image"] = image_summary(pixels, preprocessing)
    if model is not None and len(inputs):
        profile.update(model_summary(model, inputs, labels))
    return profile


def numeric_summary(values: np.ndarray) -> dict[str, Any]:
    """Count, missing share, mean, std, quantiles and a histogram of one numeric feature."""
    values = np.asarray(values, dtype=np.float64)
    present = values[~np.isnan(values)]
    out: dict[str, Any] = {
        "count": int(values.size),
        "missing": float(1 - present.size / values.size) if values.size else 0.0,
    }
    if present.size:
        out["mean"] = float(present.mean())
        out["std"] = float(present.std())
        out["quantiles"] = {
            str(q): float(v)
            for q, v in zip(QUANTILES, np.quantile(present, QUANTILES), strict=True)
        }
        counts, edges = np.histogram(present, bins=_BINS)
        out["histogram"] = {"edges": edges.tolist(), "counts": counts.tolist()}
    return out


def image_summary(pixels: np.ndarray | None, pre: Preprocessing) -> dict[str, Any]:
    if pixels is None:
        return {"count": 0}
    flat = pixels.reshape(len(pixels), -1, pixels.shape[-1]).astype(np.float64)
    brightness = flat.mean(axis=(1, 2))
    counts, edges = np.histogram(brightness, bins=_BINS, range=(0, 255))
    return {
        "count": len(pixels),
        "mode": pre.mode,
        "size": list(pixels.shape[1:3]),
        "channel_mean": flat.mean(axis=(0, 1)).tolist(),
        "channel_std": flat.std(axis=(0, 1)).tolist(),
        "brightness": {
            **numeric_summary(brightness),
            "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
        },
    }


def model_summary(
    model: torch.nn.Module, inputs: np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    """Embedding statistics (input of the last Linear layer) and prediction shares."""
    import torch

    captured: list[torch.Tensor] = []
    last = _last_linear(model)
    hook = None
    if last is not None:
        hook = last[1].register_forward_hook(lambda _m, args, _out: captured.append(args[0]))
    try:
        with torch.no_grad():
            logits = model.eval()(torch.from_numpy(inputs)).float()
    finally:
        if hook is not None:
            hook.remove()
    out: dict[str, Any] = {}
    if captured:
        emb = captured[0].flatten(1).double().numpy()[:, :_MAX_DIMS]
        norms = np.linalg.norm(emb, axis=1)
        out["embedding"] = {
            "layer": last[0] if last else "",
            "dims": int(emb.shape[1]),
            "mean": emb.mean(axis=0).tolist(),
            "std": emb.std(axis=0).tolist(),
            "norm": numeric_summary(norms),
        }
    if logits.ndim == 2 and logits.shape[1] > 1:
        probs = torch.softmax(logits, dim=1).numpy()
        predicted = probs.argmax(axis=1)
        names = list(labels) or [str(i) for i in range(probs.shape[1])]
        shares = np.bincount(predicted, minlength=probs.shape[1]) / len(predicted)
        out["predictions"] = {
            "classes": {name: float(s) for name, s in zip(names, shares, strict=False)},
            "confidence": numeric_summary(probs.max(axis=1)),
        }
    return out


def _last_linear(model: torch.nn.Module) -> tuple[str, torch.nn.Module] | None:
    import torch

    found = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    return found[-1] if found else None


def _column(
    columns: dict[str, Any] | None, inputs: np.ndarray, pre: Preprocessing, i: int, name: str
) -> np.ndarray:
    """A feature's raw values (before standardising), for readable quantiles."""
    if columns is not None:
        return np.array([np.nan if v is None else float(v) for v in columns[name]], np.float64)
    values = inputs[:, i].astype(np.float64)
    if pre.mean:
        values = values * pre.std[i] + pre.mean[i]
    return values
