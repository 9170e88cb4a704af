"""`conveyor models export`: a self-contained folder that runs with only onnxruntime,
numpy and Pillow installed (layout in MODEL.md).

For `onnx-int8` the folder's model is quantized, and the report says what it costs and
gains, measured here: accuracy on the evaluation split before and after, single-row
latency (p50) before and after, and the file sizes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from conveyor.core.errors import ConveyorError
from conveyor.registry import bench
from conveyor.registry.evaluate import batches, evaluate
from conveyor.registry.quantize import Mode, quantize

if TYPE_CHECKING:
    from conveyor.data.dataset import DatasetVersion
    from conveyor.registry.version import ModelVersion

Format = Literal["onnx", "onnx-int8"]
FORMATS = ("onnx", "onnx-int8")
_HERE = Path(__file__).resolve().parent
_CALIBRATION_ROWS = 256


@dataclass
class ExportReport:
    """What was written, and for int8 the measured accuracy, speed and size changes."""

    ref: str
    format: str
    folder: str
    files: list[str]
    size_bytes: int
    quantization: str | None = None
    fp32: dict[str, Any] = field(default_factory=dict)
    int8: dict[str, Any] = field(default_factory=dict)
    accuracy_change: float | None = None
    speedup: float | None = None
    size_ratio: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def export_folder(
    mv: ModelVersion,
    fmt: str,
    out: Path,
    data: DatasetVersion | None = None,
    split: str | None = None,
    mode: Mode | None = None,
) -> ExportReport:
    """Write the folder; `data`/`split` evaluate and calibrate int8 (default: the
    model's dataset)."""
    if fmt not in FORMATS:
        raise ConveyorError(f"unknown export format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    if out.exists() and any(out.iterdir()):
        raise ConveyorError(f"{out} is not empty", "pick a new folder for the export")
    if mv.preprocessing.kind == "text":
        raise ConveyorError(
            f"{mv.ref} takes text embeddings, which the runner cannot compute",
            "serve it with `conveyor serve`, which embeds the text first",
        )
    model = mv.onnx_bytes()
    report = ExportReport(mv.ref, fmt, str(out), [], 0)
    if fmt == "onnx-int8":
        model = _int8(mv, model, data, split, mode, report)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "model.onnx": model,
        "signature.json": _json(mv.signature.to_dict()),
        "preprocessing.json": _json(mv.preprocessing.to_dict()),
        "requirements.txt": b"onnxruntime\nnumpy\npillow\n",
        "README.md": _readme(mv, fmt).encode(),
    }
    for name, content in files.items():
        (out / name).write_bytes(content)
    shutil.copyfile(_HERE / "preprocessing.py", out / "preprocessing.py")
    shutil.copyfile(_HERE / "runner.py", out / "run.py")
    report.files = sorted([*files, "preprocessing.py", "run.py", "export.json"])
    report.size_bytes = len(model)
    (out / "export.json").write_bytes(_json({**report.to_dict(), "manifest": mv.digest}))
    return report


def _int8(
    mv: ModelVersion,
    model: bytes,
    data: DatasetVersion | None,
    split: str | None,
    mode: Mode | None,
    report: ExportReport,
) -> bytes:
    calibration: list[np.ndarray] = []
    if data is not None:
        for inputs, _ in batches(data, mv.preprocessing, split, []):
            calibration.append(inputs)
            if sum(len(c) for c in calibration) >= _CALIBRATION_ROWS:
                break
    chosen: Mode = mode or ("static" if calibration else "dynamic")
    int8 = quantize(model, chosen, mv.signature.input.name, calibration)
    report.quantization = chosen
    example = calibration[0] if calibration else bench.example_input(mv.signature.input.shape)
    before, after = bench.measure(model, example), bench.measure(int8, example)
    report.fp32 = {"size_bytes": len(model), "p50_ms": before.p50_ms}
    report.int8 = {"size_bytes": len(int8), "p50_ms": after.p50_ms}
    report.speedup = before.p50_ms / after.p50_ms if after.p50_ms else None
    report.size_ratio = len(int8) / len(model)
    if data is not None and mv.signature.labels:
        fp32_eval = evaluate(mv, data, split, onnx=model)
        int8_eval = evaluate(mv, data, split, onnx=int8)
        report.fp32["accuracy"] = fp32_eval.metrics["accuracy"]
        report.int8["accuracy"] = int8_eval.metrics["accuracy"]
        report.fp32["data"] = report.int8["data"] = fp32_eval.data
        report.accuracy_change = int8_eval.metrics["accuracy"] - fp32_eval.metrics["accuracy"]
    return int8


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=1).encode() + b"\n"


def _readme(mv: ModelVersion, fmt: str) -> str:
    usage = (
        "python run.py --csv rows.csv      # one row per line, the feature columns as headers"
        if mv.preprocessing.kind == "tabular"
        else "python run.py image1.png image2.jpg"
    )
    return (
        f"# {mv.ref} ({fmt})\n\n"
        "Exported by `conveyor models export`. Needs only onnxruntime, numpy and Pillow:\n\n"
        "    python3 -m venv .venv && .venv/bin/pip install -r requirements.txt\n"
        f"    {usage}\n\n"
        "Each input gives one JSON line: the predicted label and each class's probability.\n"
        "`preprocessing.py` is the same transform Conveyor applies in training and serving;\n"
        "`signature.json` names the model's input and output tensors and its labels.\n"
    )
