"""Runtimes: ONNX Runtime and PyTorch give the same answers for the same model."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from conveyor.core.errors import ServingError
from conveyor.registry.preprocessing import Preprocessing
from conveyor.registry.signature import Signature, TensorSpec
from conveyor.serving.runtime import load_runtime
from conveyor.serving.source import ServedModel


def served(with_onnx: bool = True, with_torch: bool = True) -> ServedModel:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    buffer = io.BytesIO()
    torch.onnx.export(
        net,
        (torch.zeros(1, 4),),
        buffer,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
        dynamo=False,
    )
    data = buffer.getvalue()
    signature = Signature(
        [TensorSpec("x", "float32", [None, 4])], [TensorSpec("y", "float32", [None, 3])]
    )
    return ServedModel(
        "m",
        1,
        signature,
        Preprocessing("none"),
        onnx=(lambda: data) if with_onnx else None,
        torch_module=(lambda: net) if with_torch else None,
    )


def test_onnx_and_torch_runtimes_agree() -> None:
    model = served()
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    onnx_out = load_runtime(model, "onnx").run(x)
    torch_out = load_runtime(model, "torch", device="cpu").run(x)
    assert onnx_out.shape == torch_out.shape == (5, 3)
    np.testing.assert_allclose(onnx_out, torch_out, rtol=1e-5, atol=1e-6)


def test_a_missing_runtime_says_which_to_use() -> None:
    with pytest.raises(ServingError, match="--runtime torch"):
        load_runtime(served(with_onnx=False), "onnx")
    with pytest.raises(ServingError, match="--runtime onnx"):
        load_runtime(served(with_torch=False), "torch")
