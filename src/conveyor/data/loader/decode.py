"""Columns of a batch into tensors: images decoded to uint8, labels to class ids."""

from __future__ import annotations

import ctypes
import io
import math
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import get_worker_info

try:
    import cv2 as _cv2

    _cv2.setNumThreads(1)  # loader workers are the parallelism
    _CV2_MODES: dict[str | None, int] = {
        None: _cv2.IMREAD_UNCHANGED,
        "RGB": _cv2.IMREAD_COLOR,
    }
    _CV2_RGB: int | None = getattr(_cv2, "IMREAD_COLOR_RGB", None)  # OpenCV 4.11+
    if _CV2_RGB is not None:  # RGB straight from the decoder: no colour conversion
        _CV2_MODES["RGB"] = _CV2_RGB
except ImportError:  # optional: Pillow decodes everything, only slower
    _cv2 = None  # type: ignore[assignment]
    _CV2_MODES = {}
    _CV2_RGB = None

try:
    import pyspng as _spng
except ImportError:  # optional: OpenCV or Pillow decode PNGs too
    _spng = None

_PNG = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_MODES = {0: "L", 2: "RGB", 6: "RGBA"}  # IHDR colour types decoded as they are

Layout = Literal["HWC", "CHW"]


def keep_freed_memory() -> bool:
    """In a loader worker: let glibc reuse freed memory rather than hand it back.

    A decoded 256x256 image is 196 KB, above glibc's default mmap threshold, so each one
    can be mapped, faulted in page by page and unmapped again: 50 page faults an image,
    a fifth of a worker's CPU on one VM (`benchmarks/loader/freed_memory.py` measures it).
    Only the worker processes the loader starts are tuned, never the training process.
    True when glibc took both settings; False where there is no glibc (macOS).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False  # not glibc: nothing to tune
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    trim = mallopt(_M_TRIM_THRESHOLD, 128 << 20)
    mmap = mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest
    return bool(trim == 1 and mmap == 1)  # mallopt answers 1 for a setting it took


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>


def decode_image(data: bytes | np.ndarray, mode: str | None) -> np.ndarray:
    """Encoded bytes to an HWC uint8 array (grayscale gets a channel axis of 1).

    Small images cost more in per-call overhead than in pixels: libspng (pyspng) decodes
    8-bit PNGs about 1.6x faster than OpenCV, which is 2-3x faster than Pillow. Each
    fast path takes only what it decodes exactly as Pillow would; Pillow takes the rest
    (GIF, palettes, 16-bit, mode conversions).
    """
    array = None
    png = _png_mode(data)
    if png and mode in (None, png) and _spng is not None:
        array = _spng.load(bytes(data))
    elif png != "" and _cv2 is not None and mode in _CV2_MODES:
        array = _decode_cv2(data, mode)
    if array is None:
        with Image.open(io.BytesIO(bytes(data))) as img:
            converted = img.convert(mode) if mode is not None and img.mode != mode else img
            array = np.array(converted, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def _png_mode(data: bytes | np.ndarray) -> str | None:
    """An 8-bit grey, RGB or RGBA PNG's mode; "" for other PNGs (palettes, 16-bit), which
    the fast paths decode differently from Pillow; None when it is not a PNG."""
    head = bytes(data[:26])
    if head[:8] != _PNG:
        return None
    if len(head) < 26 or head[24] != 8:
        return ""
    return _PNG_COLOUR_MODES.get(head[25], "")


def _decode_cv2(data: bytes | np.ndarray, mode: str | None) -> np.ndarray | None:
    assert _cv2 is not None
    flag = _CV2_MODES[mode]
    array = _cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if array is None or array.dtype != np.uint8:
        return None
    if flag == _CV2_RGB:
        return array  # already RGB
    if array.ndim == 3 and array.shape[2] == 3:
        return _cv2.cvtColor(array, _cv2.COLOR_BGR2RGB)
    if array.ndim == 3 and array.shape[2] == 4:
        return _cv2.cvtColor(array, _cv2.COLOR_BGRA2RGBA)
    return array


def images_to_tensor(arrays: list[np.ndarray], layout: Layout) -> torch.Tensor | list[torch.Tensor]:
    """Stack same-sized images into (B,H,W,C) or (B,C,H,W); mixed sizes stay a list."""
    if len({a.shape for a in arrays}) == 1:
        stacked = _batch_buffer((len(arrays), *arrays[0].shape))
        np.stack(arrays, out=stacked.numpy())
        # CHW is a view in PyTorch's channels_last memory format: no copy, and the layout
        # convolutions run fastest on; `.contiguous()` gives the plain layout if needed.
        return stacked.permute(0, 3, 1, 2) if layout == "CHW" else stacked
    return [image_to_tensor(a, layout) for a in arrays]


def _batch_buffer(shape: tuple[int, ...]) -> torch.Tensor:
    """A uint8 tensor to stack a batch into. In a DataLoader worker it is allocated in
    shared memory, as torch's own collate does: sending it to the training process then
    moves no bytes (a plain tensor is copied into shared memory on the way)."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=torch.uint8)
    storage = torch.UntypedStorage._new_shared(math.prod(shape))  # type: ignore[no-untyped-call]
    return torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)


def image_to_tensor(array: np.ndarray, layout: Layout) -> torch.Tensor:
    if layout == "CHW":
        array = array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))
