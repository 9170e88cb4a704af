"""int8 quantization for CPUs and edge devices, with onnxruntime.quantization.

dynamic: weights stored as int8, activations quantized on the fly; no data needed.
static: weights and activations int8 (QDQ), activation ranges calibrated on held-out
rows; usually faster for convolutions, and what most edge runtimes want.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from conveyor.core.errors import ConveyorError, MissingExtraError

Mode = Literal["dynamic", "static"]


class QuantizationError(ConveyorError):
    """A model could not be quantized (or static mode got no calibration data)."""


def quantize(
    onnx: bytes, mode: Mode, input_name: str, calibration: list[np.ndarray] | None = None
) -> bytes:
    """The int8 model's bytes; `calibration` (batches of model inputs) for static mode."""
    try:
        from onnxruntime import quantization as q
    except ImportError as e:
        raise MissingExtraError(
            "ONNX Runtime is not installed", "pip install 'conveyor[onnx]'"
        ) from e
    if mode == "static" and not calibration:
        raise QuantizationError(
            "static quantization needs calibration data", "use --quantize dynamic"
        )
    with tempfile.TemporaryDirectory(prefix="conveyor-int8-") as tmp:
        source, target = Path(tmp) / "model.onnx", Path(tmp) / "model-int8.onnx"
        source.write_bytes(onnx)
        try:
            _run(q, mode, source, target, input_name, calibration or [])
        except Exception as e:
            raise QuantizationError(
                f"{mode} quantization failed ({type(e).__name__}: {str(e)[:300]})",
                "try the other mode (--quantize dynamic|static) or export plain onnx",
            ) from e
        return target.read_bytes()


def _run(
    q: Any, mode: Mode, source: Path, target: Path, name: str, calibration: list[np.ndarray]
) -> None:
    with _quiet():
        if mode == "dynamic":
            q.quantize_dynamic(source, target, weight_type=q.QuantType.QInt8)
            return
        q.quantize_static(
            source, target, _Reader(q.CalibrationDataReader, name, calibration),
            quant_format=q.QuantFormat.QDQ, per_channel=True,
            activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
        )  # fmt: skip


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The quantizer logs advice on the root logger; keep it off the user's terminal."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _Reader(base: type, input_name: str, batches: list[np.ndarray]) -> Any:
    """A CalibrationDataReader over `batches` (built on the class onnxruntime gives)."""

    class Reader(base):  # type: ignore[misc]
        def __init__(self) -> None:
            self.items: Iterator[np.ndarray] = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.items, None)
            return None if batch is None else {input_name: batch}

    return Reader()
