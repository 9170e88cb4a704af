"""Columns of a batch into tensors: images decoded to uint8, labels to class ids."""

from __future__ import annotations

import io
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import torch
from PIL import Image

from conveyor.core.errors import ConveyorError

try:
    import cv2 as _cv2

    _cv2.setNumThreads(1)  # loader workers are the parallelism
    _CV2_MODES: dict[str | None, int] = {
        None: _cv2.IMREAD_UNCHANGED,
        "RGB": _cv2.IMREAD_COLOR,
        "L": _cv2.IMREAD_GRAYSCALE,
    }
except ImportError:  # optional: Pillow decodes everything, only slower
    _cv2 = None  # type: ignore[assignment]
    _CV2_MODES = {}

Layout = Literal["HWC", "CHW"]
_FLOAT = torch.float32


def decode_image(data: bytes, mode: str | None) -> np.ndarray:
    """Encoded bytes to an HWC uint8 array (grayscale gets a channel axis of 1).

    OpenCV decodes small images about 3x faster than Pillow (no per-image Python work);
    Pillow takes over for what OpenCV does not cover (GIF, 16-bit, other modes).
    """
    array = _decode_cv2(data, mode) if _cv2 is not None and mode in _CV2_MODES else None
    if array is None:
        with Image.open(io.BytesIO(data)) as img:
            converted = img.convert(mode) if mode is not None and img.mode != mode else img
            array = np.array(converted, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def _decode_cv2(data: bytes, mode: str | None) -> np.ndarray | None:
    assert _cv2 is not None
    flag = _CV2_MODES[mode]
    array = _cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if array is None or array.dtype != np.uint8:
        return None
    if array.ndim == 3 and array.shape[2] == 3:
        return _cv2.cvtColor(array, _cv2.COLOR_BGR2RGB)
    if array.ndim == 3 and array.shape[2] == 4:
        return _cv2.cvtColor(array, _cv2.COLOR_BGRA2RGBA)
    return array


def images_to_tensor(arrays: list[np.ndarray], layout: Layout) -> torch.Tensor | list[torch.Tensor]:
    """Stack same-sized images into (B,H,W,C) or (B,C,H,W); mixed sizes stay a list."""
    if len({a.shape for a in arrays}) == 1:
        stacked = torch.from_numpy(np.stack(arrays))
        # CHW is a view in PyTorch's channels_last memory format: no copy, and the layout
        # convolutions run fastest on; `.contiguous()` gives the plain layout if needed.
        return stacked.permute(0, 3, 1, 2) if layout == "CHW" else stacked
    return [image_to_tensor(a, layout) for a in arrays]


def image_to_tensor(array: np.ndarray, layout: Layout) -> torch.Tensor:
    if layout == "CHW":
        array = array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))


def column_to_tensor(column: pa.ChunkedArray | pa.Array, name: str) -> Any:
    """Numbers become tensors of their dtype (floats as float32); the rest stay Python lists."""
    t = column.type
    if pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_floating(t):
        if column.null_count:
            raise ConveyorError(
                f"column '{name}' has missing values, which tensors cannot hold",
                "fill or drop them first: `conveyor data fill` or `conveyor data drop-missing`",
            )
        array = np.array(column.to_numpy(), copy=True)  # Arrow's buffers are read-only
        tensor = torch.from_numpy(array)
        return tensor.to(_FLOAT) if pa.types.is_floating(t) else tensor
    return column.to_pylist()


def labels_to_tensor(column: pa.ChunkedArray | pa.Array, classes: list[str]) -> torch.Tensor:
    """String labels to class ids (their position in the sorted list of classes)."""
    lookup = {c: i for i, c in enumerate(classes)}
    return torch.tensor([lookup[v] for v in column.to_pylist()], dtype=torch.int64)
