"""torch -> ONNX, checked: ONNX Runtime must give PyTorch's outputs on held-out inputs.

The exporter is torch's TorchScript-based one (`dynamo=False`): it runs offline, needs
no onnxscript and takes a fraction of a second for the recipes' models. When it cannot
export a model, the dynamo exporter (`torch.export` + onnxscript, in the `onnx` extra)
is tried. When neither can, the model is saved as TorchScript (`model.ts`) instead,
which PyTorch can serve but ONNX Runtime cannot.
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.core.errors import ConveyorError, MissingExtraError
from conveyor.registry.manifest import ExportCheck
from conveyor.registry.signature import Signature

if TYPE_CHECKING:
    import onnxruntime
    import torch

TOLERANCE = 1e-4  # max abs difference of any output value, PyTorch vs ONNX Runtime
OPSET = 17


class ExportError(ConveyorError):
    """A model could not be exported, or its export does not compute what PyTorch does."""


def session(data: bytes, threads: int = 1) -> onnxruntime.InferenceSession:
    """An ONNX Runtime CPU session over model bytes (one thread unless told)."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise MissingExtraError(
            "ONNX Runtime is not installed", "pip install 'conveyor[onnx]'"
        ) from e
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ExportError(
            f"ONNX Runtime cannot load the model: {str(e)[:300]}", "check the ONNX file"
        ) from e


def run(sess: onnxruntime.InferenceSession, inputs: np.ndarray) -> np.ndarray:
    """The first output for a batch fed to the first input."""
    name = sess.get_inputs()[0].name
    out: np.ndarray = sess.run(None, {name: inputs})[0]
    return out


def export(
    model: torch.nn.Module, example: np.ndarray, signature: Signature, tolerance: float = TOLERANCE
) -> tuple[bytes, ExportCheck]:
    """The model as ONNX bytes with a dynamic batch axis, and the parity check's figures."""
    import torch

    model = model.eval().cpu()
    inputs = torch.from_numpy(np.ascontiguousarray(example, dtype=np.float32))
    try:
        data, exporter = _legacy(model, inputs, signature), "torch.onnx (TorchScript)"
    except Exception as first:  # noqa: BLE001 - any exporter failure: try the other one
        try:
            data, exporter = _dynamo(model, inputs, signature), "torch.onnx (dynamo)"
        except Exception as e:
            raise ExportError(
                f"ONNX export failed ({type(first).__name__}: {str(first)[:200]}; "
                f"dynamo: {type(e).__name__}: {str(e)[:200]})",
                "simplify the model's forward, or register an ONNX file with onnx=...",
            ) from e
    return data, check(data, model, example, exporter, tolerance)


def check(
    data: bytes, model: torch.nn.Module, example: np.ndarray, exporter: str, tolerance: float
) -> ExportCheck:
    """Compare ONNX Runtime with PyTorch on `example`; raise when they differ too much."""
    import torch

    with torch.no_grad():
        expected = model(torch.from_numpy(np.ascontiguousarray(example, np.float32))).numpy()
    got = run(session(data), np.ascontiguousarray(example, np.float32))
    diff = float(np.max(np.abs(got - expected))) if expected.size else 0.0
    if not diff <= tolerance:
        raise ExportError(
            f"ONNX Runtime's outputs differ from PyTorch's by up to {diff:.3g} "
            f"(tolerance {tolerance:g}) on {len(example)} held-out inputs",
            "check the model has no training-only behaviour left on in eval mode",
        )
    return ExportCheck(
        exporter=exporter, opset=OPSET, samples=len(example), max_abs_diff=diff, tolerance=tolerance
    )


def torchscript(model: torch.nn.Module, example: np.ndarray) -> bytes:
    """The fallback where ONNX does not fit: a traced TorchScript module."""
    import torch

    traced = torch.jit.trace(  # type: ignore[no-untyped-call]
        model.eval().cpu(), torch.from_numpy(example.astype(np.float32))
    )
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    return buffer.getvalue()


def _names(signature: Signature) -> dict[str, Any]:
    return {
        "input_names": [t.name for t in signature.inputs],
        "output_names": [t.name for t in signature.outputs],
    }


def _legacy(model: torch.nn.Module, inputs: torch.Tensor, signature: Signature) -> bytes:
    import torch

    buffer = io.BytesIO()
    axes = {t.name: {0: "batch"} for t in [*signature.inputs, *signature.outputs]}
    target: Any = buffer  # torch accepts a file object; its annotation says paths
    with warnings.catch_warnings():  # deprecated in favour of dynamo, chosen on purpose
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (inputs,), target, dynamo=False, opset_version=OPSET, dynamic_axes=axes,
            **_names(signature),
        )  # fmt: skip
    return buffer.getvalue()


def _dynamo(model: torch.nn.Module, inputs: torch.Tensor, signature: Signature) -> bytes:
    import torch

    batch = torch.export.Dim("batch")
    program = torch.onnx.export(
        model, (inputs,), dynamo=True, dynamic_shapes=({0: batch},), verbose=False,
        **_names(signature),
    )  # fmt: skip
    if program is None:
        raise ExportError("the dynamo exporter returned nothing", "register an ONNX file")
    data: bytes = program.model_proto.SerializeToString()
    return data
