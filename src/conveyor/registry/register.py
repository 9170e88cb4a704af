"""What registering stores: weights as safetensors, the checked ONNX model, the profile.

Everything is built and written to the object store before the version's row exists, so
a process killed half-way leaves only unreferenced objects, never a half version.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor import __version__
from conveyor.core.errors import ConveyorError
from conveyor.registry import onnx_export
from conveyor.registry.manifest import (
    JSON_MEDIA_TYPE,
    ONNX_MEDIA_TYPE,
    SAFETENSORS_MEDIA_TYPE,
    ArtifactEntry,
    ExportCheck,
)
from conveyor.registry.signature import Signature
from conveyor.registry.version import ONNX, PROFILE, WEIGHTS

if TYPE_CHECKING:
    import torch

    from conveyor.storage.objects import ObjectStore

TORCHSCRIPT = "model.ts"


class RegistrationError(ConveyorError):
    """A model that cannot be registered as given; the text says what to pass."""


def build_artifacts(
    objects: ObjectStore,
    signature: Signature,
    *,
    model: torch.nn.Module | None,
    onnx: bytes | str | Path | None,
    example_inputs: Any,
    reference_profile: dict[str, Any] | None,
    tolerance: float,
) -> tuple[dict[str, ArtifactEntry], ExportCheck | None]:
    """Store the version's artifacts; returns their entries and the ONNX parity check."""
    if model is None and onnx is None:
        raise RegistrationError(
            "nothing to register", "pass model=<torch module> (with example_inputs) or onnx=..."
        )
    blobs: dict[str, tuple[bytes, str]] = {}
    check: ExportCheck | None = None
    example = _example(example_inputs) if example_inputs is not None else None
    if model is not None:
        blobs[WEIGHTS] = (_safetensors(model), SAFETENSORS_MEDIA_TYPE)
        if onnx is None:
            if example is None:
                raise RegistrationError(
                    "exporting to ONNX needs example inputs",
                    "pass example_inputs= a few held-out rows as the model takes them",
                )
            try:
                data, check = onnx_export.export(model, example, signature, tolerance)
                blobs[ONNX] = (data, ONNX_MEDIA_TYPE)
            except onnx_export.ExportError as e:
                if "differ" in e.message:
                    raise
                blobs[TORCHSCRIPT] = (
                    onnx_export.torchscript(model, example),
                    "application/x-torchscript",
                )
    if onnx is not None:
        data = _read(onnx)
        _check_onnx(data, signature)
        if model is not None and example is not None:
            check = onnx_export.check(data, model, example, "given", tolerance)
        blobs[ONNX] = (data, ONNX_MEDIA_TYPE)
    if reference_profile:
        profile = json.dumps(reference_profile, sort_keys=True).encode()
        blobs[PROFILE] = (profile, JSON_MEDIA_TYPE)
    entries = {}
    for name, (data, media_type) in blobs.items():
        stored = objects.put_bytes(data)
        entries[name] = ArtifactEntry(digest=stored.digest, size=stored.size, media_type=media_type)
    return entries, check


def environment() -> dict[str, str]:
    """Versions of what built and checked the model, for lineage."""
    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "conveyor": __version__,
    }
    for package in ("torch", "onnx", "onnxruntime", "numpy"):
        try:
            env[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return env


def _safetensors(model: torch.nn.Module) -> bytes:
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    return save(tensors)


def _example(value: Any) -> np.ndarray:
    array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
    if array.ndim < 1 or len(array) == 0:
        raise RegistrationError("example_inputs is empty", "pass a batch of a few held-out rows")
    return np.ascontiguousarray(array, dtype=np.float32)


def _read(onnx: bytes | str | Path) -> bytes:
    if isinstance(onnx, bytes):
        return onnx
    path = Path(onnx)
    if not path.is_file():
        raise RegistrationError(
            f"no ONNX file at {path}", "pass the path of a .onnx file or its bytes"
        )
    return path.read_bytes()


def _check_onnx(data: bytes, signature: Signature) -> None:
    """The ONNX model loads, and its inputs and outputs are the signature's."""
    sess = onnx_export.session(data)
    inputs = [i.name for i in sess.get_inputs()]
    outputs = [o.name for o in sess.get_outputs()]
    wanted_in = [t.name for t in signature.inputs]
    wanted_out = [t.name for t in signature.outputs]
    if inputs != wanted_in or outputs[: len(wanted_out)] != wanted_out:
        raise RegistrationError(
            f"the ONNX model takes {inputs} and gives {outputs}, but the signature says "
            f"{wanted_in} -> {wanted_out}",
            "name the signature's tensors as the ONNX graph does",
        )
