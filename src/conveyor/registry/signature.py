"""What a model takes and gives: named tensors with dtypes and shapes, and class labels.

Plain dataclasses over the standard library only, so the exported runner (a folder that
needs nothing but onnxruntime, numpy and Pillow) carries this file as it is. A shape
entry of None is an axis of any size (the batch axis, usually the first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DTYPES = ("float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool", "string")


class SignatureError(ValueError):
    """A signature that cannot describe a model: unknown dtype, bad shape, duplicate name."""


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output tensor."""

    name: str
    dtype: str
    shape: list[int | None]

    def __post_init__(self) -> None:
        if not self.name:
            raise SignatureError("a tensor needs a name, e.g. 'image'")
        if self.dtype not in DTYPES:
            raise SignatureError(
                f"tensor {self.name!r} has dtype {self.dtype!r}; use one of {', '.join(DTYPES)}"
            )
        for size in self.shape:
            if size is not None and (not isinstance(size, int) or size < 1):
                raise SignatureError(
                    f"tensor {self.name!r} has shape {self.shape}: "
                    "each axis is a positive int or None (any size)"
                )

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(str(data["name"]), str(data["dtype"]), list(data["shape"]))


@dataclass(frozen=True)
class Signature:
    """Inputs and outputs in the order the model takes and gives them; `labels` name the
    classes of a classifier's output axis 1 (empty for anything else)."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    labels: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.inputs or not self.outputs:
            raise SignatureError("a signature needs at least one input and one output")
        names = [t.name for t in [*self.inputs, *self.outputs]]
        if len(set(names)) != len(names):
            raise SignatureError(f"tensor names must be unique, got {names}")
        classes = self.outputs[0].shape[1] if len(self.outputs[0].shape) > 1 else None
        if self.labels and classes is not None and classes != len(self.labels):
            raise SignatureError(
                f"{len(self.labels)} labels for an output of {classes} classes: "
                "give one label per class"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "labels": list(self.labels),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        return cls(
            inputs=[TensorSpec.from_dict(t) for t in data["inputs"]],
            outputs=[TensorSpec.from_dict(t) for t in data["outputs"]],
            labels=[str(label) for label in data.get("labels", [])],
        )

    @property
    def input(self) -> TensorSpec:
        """The first (for most models, the only) input."""
        return self.inputs[0]
