"""The transform between raw inputs and a model's input tensor, stored with the model.

One function for everyone: the training recipes call `Preprocessing.normalize` on the
loader's batches, serving calls `apply` on request payloads, and the exported folder
carries this very file for its runner. So it imports only the standard library, numpy
and Pillow; inside Conveyor, images are decoded by the loader's decoder
(`conveyor.data.loader.decode.decode_image`), so serving sees the pixels training saw.
Without Conveyor (the exported runner) Pillow decodes: the same pixels for PNG, BMP,
GIF and TIFF; JPEGs may differ by a level or two where OpenCV's decoder would be used.

Kinds (as JSON):
    image:   {"kind": "image", "column": "image", "mode": "L"|"RGB", "size": [H, W],
              "layout": "CHW"|"HWC", "scale": 1/255, "mean": [...], "std": [...]}
    tabular: {"kind": "tabular", "columns": [...], "mean": [...], "std": [...]}
    text:    {"kind": "text", "column": "text", "encoder": "..."}  (embeddings; see apply)
    none:    {"kind": "none"}  (the batch already is the model's input)
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

KINDS = ("image", "tabular", "text", "none")
_Decoder = Callable[[bytes, str | None], np.ndarray]


class PreprocessingError(ValueError):
    """A preprocessing spec or an input batch that does not fit it; the text says why."""


@dataclass(frozen=True)
class Preprocessing:
    """A JSON-serialisable transform; `apply(batch)` gives the model's float32 input."""

    kind: str
    column: str | None = None
    mode: str | None = None
    size: list[int] | None = None
    layout: str = "CHW"
    scale: float = 1.0
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    encoder: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise PreprocessingError(f"unknown preprocessing kind {self.kind!r}; use {KINDS}")
        if len(self.mean) != len(self.std) or any(s == 0 for s in self.std):
            raise PreprocessingError("mean and std need the same length and std no zeros")
        if self.kind == "image":
            self._check_image()
        if self.kind == "tabular":
            if not self.columns:
                raise PreprocessingError("tabular preprocessing needs its feature columns")
            if self.mean and len(self.mean) != len(self.columns):
                raise PreprocessingError("tabular mean/std need one value per column")

    def _check_image(self) -> None:
        if self.mode not in ("L", "RGB"):
            raise PreprocessingError(f"image mode {self.mode!r}: use 'L' or 'RGB'")
        if self.layout not in ("CHW", "HWC"):
            raise PreprocessingError(f"image layout {self.layout!r}: use 'CHW' or 'HWC'")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise PreprocessingError(f"image size {self.size}: use [height, width]")
        if self.mean and len(self.mean) != self.channels:
            raise PreprocessingError(f"mode {self.mode} needs {self.channels} mean/std values")

    # -- JSON ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Only the fields the kind uses, so the JSON reads like the spec above."""
        used = {
            "image": ("column", "mode", "size", "layout", "scale", "mean", "std"),
            "tabular": ("columns", "mean", "std"),
            "text": ("column", "encoder"),
            "none": (),
        }[self.kind]
        out: dict[str, Any] = {"kind": self.kind}
        for name in used:
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, list) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise PreprocessingError(f"unknown preprocessing field(s): {sorted(unknown)}")
        values = dict(data)
        for name in ("size", "mean", "std", "columns"):
            if values.get(name) is not None:
                values[name] = list(values[name])
        return cls(**values)

    @classmethod
    def image(
        cls,
        mode: str,
        size: Sequence[int] | None,
        *,
        column: str = "image",
        scale: float = 1 / 255,
        mean: Sequence[float] = (),
        std: Sequence[float] = (),
        layout: str = "CHW",
    ) -> Preprocessing:
        return cls(
            "image", column, mode, list(size) if size else None, layout, scale,
            list(mean), list(std),
        )  # fmt: skip

    @classmethod
    def tabular(
        cls, columns: Sequence[str], mean: Sequence[float] = (), std: Sequence[float] = ()
    ) -> Preprocessing:
        return cls("tabular", columns=list(columns), mean=list(mean), std=list(std))

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3

    # -- the transform ---------------------------------------------------------------------

    def apply(self, batch: Any) -> np.ndarray:
        """Raw inputs -> the model's float32 input.

        image: a sequence of encoded images (bytes) or decoded HWC uint8 arrays;
        tabular: a mapping of column -> values, a sequence of records (mappings), or a
        2-D array already in `columns` order; none: anything numpy turns into floats.
        """
        if self.kind == "image":
            images = [self.decode(item) for item in _sequence(batch, "images")]
            return self.normalize(np.stack(images) if images else self._empty(), "HWC")
        if self.kind == "tabular":
            return self._tabular(batch)
        if self.kind == "text":
            raise PreprocessingError(
                f"text inputs need the {self.encoder} encoder; embed the texts with it "
                "and pass the embeddings to a model with 'none' preprocessing"
            )
        return np.asarray(batch, dtype=np.float32)

    def decode(self, item: bytes | np.ndarray) -> np.ndarray:
        """One encoded image (or HWC uint8 array) -> HWC uint8 in `mode`, at `size`."""
        if isinstance(item, bytes | bytearray | memoryview):
            array = _decoder()(bytes(item), self.mode)
        else:
            array = np.asarray(item)
            if array.dtype != np.uint8:
                raise PreprocessingError(f"decoded images must be uint8, not {array.dtype}")
            array = array[:, :, None] if array.ndim == 2 else array
        if array.ndim != 3 or array.shape[2] != self.channels:
            raise PreprocessingError(
                f"an image of shape {array.shape} does not have the {self.channels} "
                f"channel(s) of mode {self.mode}; send encoded bytes so they are converted"
            )
        if self.size is not None and list(array.shape[:2]) != list(self.size):
            array = resize_bilinear(array, self.size[0], self.size[1])
        return array

    def normalize(self, images: Any, given: str = "HWC") -> np.ndarray:
        """A stacked uint8 batch in layout `given` ((N,H,W,C), or (N,C,H,W) as the loader
        yields for the recipes) -> float32 in `layout`, scaled and standardised."""
        array = np.asarray(images)
        if array.ndim != 4 or given not in ("CHW", "HWC"):
            raise PreprocessingError(f"expected a batch of {given} images, got {array.shape}")
        if given != self.layout:
            array = array.transpose(0, 3, 1, 2) if given == "HWC" else array.transpose(0, 2, 3, 1)
        out = array.astype(np.float32) * np.float32(self.scale)
        if self.mean:
            axis = (1, -1, 1, 1) if self.layout == "CHW" else (1, 1, 1, -1)
            mean = np.asarray(self.mean, np.float32).reshape(axis)
            out = (out - mean) / np.asarray(self.std, np.float32).reshape(axis)
        return np.ascontiguousarray(out, dtype=np.float32)

    def _empty(self) -> np.ndarray:
        h, w = self.size or (1, 1)
        return np.zeros((0, h, w, self.channels), np.uint8)

    def _tabular(self, batch: Any) -> np.ndarray:
        if isinstance(batch, Mapping):
            missing = [c for c in self.columns if c not in batch]
            _check_missing(missing)
            rows = np.stack([_floats(batch[c]) for c in self.columns], axis=1)
        elif isinstance(batch, Sequence) and batch and isinstance(batch[0], Mapping):
            missing = sorted({c for r in batch for c in self.columns if c not in r})
            _check_missing(missing)
            rows = np.array([[_float(r[c]) for c in self.columns] for r in batch], np.float32)
        else:
            rows = np.asarray(batch, dtype=np.float32).reshape(-1, len(self.columns))
        rows = rows.astype(np.float32)
        if self.mean:
            rows = (rows - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.nan_to_num(rows, nan=0.0).astype(np.float32)


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """HWC uint8 -> (height, width), as torch's `interpolate(mode="bilinear")` (half-pixel
    centres, no antialiasing) followed by rounding: the recipes' Resize transform."""
    src = image.astype(np.float32)
    h0, h1, hw = _axis(image.shape[0], height)
    w0, w1, ww = _axis(image.shape[1], width)
    top = src[h0][:, w0] * (1 - ww)[None, :, None] + src[h0][:, w1] * ww[None, :, None]
    bottom = src[h1][:, w0] * (1 - ww)[None, :, None] + src[h1][:, w1] * ww[None, :, None]
    out = top * (1 - hw)[:, None, None] + bottom * hw[:, None, None]
    resized: np.ndarray = np.clip(np.round(out), 0, 255).astype(np.uint8)
    return resized


def _axis(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scale = np.float32(size_in / size_out)
    source = np.maximum((np.arange(size_out, dtype=np.float32) + 0.5) * scale - 0.5, 0)
    low = np.minimum(np.floor(source).astype(np.int64), size_in - 1)
    high = np.minimum(low + 1, size_in - 1)
    return low, high, (source - low).astype(np.float32)


def _decoder() -> _Decoder:
    """The loader's decoder when Conveyor is installed, else Pillow's equivalent."""
    try:
        from conveyor.data.loader.decode import decode_image
    except ImportError:
        return _decode_pillow
    decode: _Decoder = decode_image
    return decode


def _decode_pillow(data: bytes, mode: str | None) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        converted = img.convert(mode) if mode is not None and img.mode != mode else img
        array = np.array(converted, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def _sequence(batch: Any, what: str) -> list[Any]:
    if isinstance(batch, bytes | bytearray) or not isinstance(batch, Sequence | np.ndarray):
        raise PreprocessingError(f"expected a list of {what}, got {type(batch).__name__}")
    return list(batch)


def _check_missing(missing: list[str]) -> None:
    if missing:
        raise PreprocessingError(f"missing feature column(s): {', '.join(missing)}")


def _float(value: Any) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise PreprocessingError(f"feature value {value!r} is not a number") from None


def _floats(values: Any) -> np.ndarray:
    return np.array([_float(v) for v in values], dtype=np.float32)
