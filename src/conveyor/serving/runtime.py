"""Runtimes: a batch in, the model's first output out. ONNX Runtime on CPU, PyTorch on GPU.

The choice is per model (`--runtime digits=torch`). Both take one float batch and
return one numpy array, so the batcher does not care which runs.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import numpy as np

from conveyor.core.errors import MissingExtraError, ServingError
from conveyor.serving.source import ServedModel

RuntimeName = Literal["onnx", "torch"]


class Runtime(Protocol):
    """Runs one batch; called from one thread at a time per model version."""

    name: str

    def run(self, batch: np.ndarray) -> np.ndarray: ...


class OnnxRuntime:
    """ONNX Runtime on the CPU; one intra-op thread by default, since worker processes
    (and the batcher) are the parallelism and extra threads only fight over cores."""

    name = "onnx"

    def __init__(self, model_bytes: bytes, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise MissingExtraError(
                "serving ONNX models needs onnxruntime", "pip install 'conveyor[serve]'"
            ) from e
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(
                model_bytes, options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:
            raise ServingError(
                f"ONNX Runtime cannot load the model ({e})", "re-export it to ONNX"
            ) from e
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        result = self._session.run([self._output], {self._input: batch})[0]
        return np.asarray(result)


class TorchRuntime:
    """A PyTorch module in eval mode under inference_mode, on `device` (a GPU by default)."""

    name = "torch"

    def __init__(self, module: Any, device: str | None = None, threads: int = 1) -> None:
        import torch

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu":
            torch.set_num_threads(threads)
        self._torch = torch
        self._device = torch.device(device)
        self._module = module.to(self._device).eval()

    def run(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self._device, non_blocking=True)
            out = self._module(x)
            if isinstance(out, tuple | list):
                out = out[0]
            return np.asarray(out.detach().to("cpu").numpy())


def load_runtime(
    model: ServedModel, name: RuntimeName = "onnx", threads: int = 1, device: str | None = None
) -> Runtime:
    """Build the runtime a model is served with; a clear error if it lacks the weights."""
    if name == "onnx":
        if model.onnx is None:
            raise ServingError(f"{model.ref} has no ONNX export", "serve it with --runtime torch")
        return OnnxRuntime(model.onnx(), threads=threads)
    if name == "torch":
        if model.torch_module is None:
            raise ServingError(
                f"{model.ref} has no PyTorch weights", "serve it with --runtime onnx"
            )
        return TorchRuntime(model.torch_module(), device=device, threads=threads)
    raise ServingError(f"unknown runtime '{name}'", "use onnx or torch")
