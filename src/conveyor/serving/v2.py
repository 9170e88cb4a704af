"""The Open Inference Protocol v2 (KServe, Triton) JSON codec: metadata, infer, errors.

Tensors in a v2 request are the model's own inputs, as the signature lists them (after
preprocessing), which is what Triton and KServe clients send. The exception is a BYTES
input to an image model: each element is an encoded image, decoded and preprocessed
as /predict does. Data may be flat (row-major) or nested; its length must match the
shape. Errors answer `{"error": "..."}` with a 4xx, as the protocol says.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

from conveyor.core.errors import InvalidInputError
from conveyor.registry.signature import TensorSpec
from conveyor.serving import payloads
from conveyor.serving.source import ServedModel

PLATFORM = {"onnx": "onnxruntime_onnx", "torch": "pytorch_libtorch"}
_DATATYPES = {
    "float32": "FP32",
    "float16": "FP16",
    "float64": "FP64",
    "int64": "INT64",
    "int32": "INT32",
    "int8": "INT8",
    "uint8": "UINT8",
    "bool": "BOOL",
    "string": "BYTES",
}
_FROM_DATATYPE = {v: k for k, v in _DATATYPES.items()}


def datatype(dtype: str) -> str:
    return _DATATYPES.get(dtype, "FP32")


def tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "datatype": datatype(spec.dtype),
        "shape": [-1 if s is None else s for s in spec.shape],
    }


def model_metadata(model: ServedModel, versions: list[int], runtime: str) -> dict[str, Any]:
    return {
        "name": model.name,
        "versions": [str(v) for v in versions],
        "platform": PLATFORM.get(runtime, runtime),
        "inputs": [tensor_metadata(t) for t in model.signature.inputs],
        "outputs": [tensor_metadata(t) for t in model.signature.outputs],
        "parameters": {"labels": list(model.signature.labels)},
    }


def infer_input(model: ServedModel, doc: Any) -> tuple[np.ndarray, str | None, list[Any]]:
    """A v2 infer request -> (model input batch, request id, raw rows for the log)."""
    if not isinstance(doc, dict):
        raise InvalidInputError("a v2 infer request is a JSON object", None, "body")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInputError("'inputs' must be a non-empty list of tensors", None, "inputs")
    if len(inputs) != 1:
        raise InvalidInputError(
            f"{len(inputs)} input tensors; {model.ref} takes one ('{model.signature.input.name}')",
            None,
            "inputs",
        )
    tensor = inputs[0]
    if not isinstance(tensor, dict):
        raise InvalidInputError("inputs[0] must be a tensor object", None, "inputs[0]")
    spec = model.signature.input
    name = tensor.get("name")
    if name != spec.name:
        raise InvalidInputError(
            f"inputs[0].name is {name!r}; the model's input is '{spec.name}'",
            None,
            "inputs[0].name",
        )
    request_id = doc.get("id")
    if tensor.get("datatype") == "BYTES" and model.preprocessing.kind == "image":
        images = [_image_bytes(v, i) for i, v in enumerate(_flat(tensor.get("data")))]
        x = payloads.images_input(
            model, images, [f"inputs[0].data[{i}]" for i in range(len(images))]
        )
        return x, _str_or_none(request_id), images
    x = _tensor(tensor, spec)
    return x, _str_or_none(request_id), []


def _tensor(tensor: dict[str, Any], spec: TensorSpec) -> np.ndarray:
    want = datatype(spec.dtype)
    got = tensor.get("datatype")
    if got != want:
        raise InvalidInputError(
            f"inputs[0].datatype is {got!r}; '{spec.name}' takes {want}",
            None,
            "inputs[0].datatype",
        )
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(s, int) and s >= 0 for s in shape)
    ):
        raise InvalidInputError("inputs[0].shape must be a list of sizes", None, "inputs[0].shape")
    data = tensor.get("data")
    if not isinstance(data, list):
        raise InvalidInputError("inputs[0].data must be a list", None, "inputs[0].data")
    try:
        array = np.array(data)
    except (ValueError, TypeError):
        array = None
    if array is None or array.dtype.kind not in ("f", "i", "u", "b"):
        raise InvalidInputError(
            "inputs[0].data must hold numbers (flat or nested as the shape)",
            None,
            "inputs[0].data",
        )
    if array.size != math.prod(shape):
        raise InvalidInputError(
            f"inputs[0].data has {array.size} values; shape {shape} needs {math.prod(shape)}",
            None,
            "inputs[0].data",
        )
    x: np.ndarray = array.reshape(shape).astype(payloads.NUMPY_DTYPES[spec.dtype], copy=False)
    payloads.check_shape(x, spec, "inputs[0].shape")
    return x


def infer_response(model: ServedModel, out: np.ndarray, request_id: str | None) -> dict[str, Any]:
    spec = model.signature.outputs[0]
    response: dict[str, Any] = {
        "model_name": model.name,
        "model_version": str(model.version),
        "outputs": [
            {
                "name": spec.name,
                "datatype": datatype(str(out.dtype) if str(out.dtype) in _DATATYPES else "float32"),
                "shape": list(out.shape),
                "data": out.reshape(-1).tolist(),
            }
        ],
    }
    if request_id is not None:
        response["id"] = request_id
    return response


def _flat(data: Any) -> list[Any]:
    if not isinstance(data, list) or not data:
        raise InvalidInputError("inputs[0].data must be a non-empty list", None, "inputs[0].data")
    out: list[Any] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


def _image_bytes(value: Any, i: int) -> bytes:
    field = f"inputs[0].data[{i}]"
    if not isinstance(value, str):
        raise InvalidInputError(f"{field}: BYTES data must be base64 strings", None, field)
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise InvalidInputError(f"{field}: not valid base64", None, field) from None


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
