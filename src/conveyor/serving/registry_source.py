"""The registry as a model source: `ws.models` versions, verified, and their aliases.

Every artifact is read through the object store, which checks its sha256 against the
manifest's address, so a server never runs bytes that changed since registration.
ONNX Runtime runs the version's `model.onnx`. PyTorch runs its TorchScript artifact
when the registry kept one, or the version's safetensors weights loaded into a module
built by a function the user names (`modules={"digits": "pkg.nets:build_cnn"}`):
weights are never unpickled.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import ServingError
from conveyor.serving.source import ServedModel

if TYPE_CHECKING:
    from conveyor.registry.version import ModelVersion
    from conveyor.workspace import Workspace

ONNX = "model.onnx"
WEIGHTS = "weights.safetensors"
TORCHSCRIPT = "model.ts"
ModuleFactory = Callable[[], Any]


class RegistrySource:
    """Serve versions registered in a workspace (`conveyor serve digits:production`)."""

    def __init__(
        self, workspace: Workspace, modules: dict[str, str | ModuleFactory] | None = None
    ) -> None:
        self.workspace = workspace
        self.modules = dict(modules or {})

    def load(self, name: str, version: int) -> ServedModel:
        mv = self.workspace.models.get(f"{name}@v{version}")
        if mv.status == "archived":
            raise ServingError(f"{mv.ref} is archived", "serve a version that is not archived")
        artifacts = mv.artifacts
        onnx = _artifact(mv, ONNX) if ONNX in artifacts else None
        return ServedModel(
            name=mv.name,
            version=mv.number,
            signature=mv.signature,
            preprocessing=mv.preprocessing,
            onnx=onnx,
            torch_module=self._torch_loader(mv),
        )

    def resolve(self, name: str, selector: str) -> int:
        return self.workspace.models.resolve(name, selector)

    def _torch_loader(self, mv: ModelVersion) -> ModuleFactory | None:
        factory = self.modules.get(mv.name)
        if factory is not None and WEIGHTS in mv.artifacts:
            build = _import(factory) if isinstance(factory, str) else factory
            return lambda: _with_weights(build(), mv.artifact(WEIGHTS), mv.ref)
        if TORCHSCRIPT in mv.artifacts:
            return lambda: _torchscript(mv.artifact(TORCHSCRIPT))
        return None


def _artifact(mv: ModelVersion, name: str) -> Callable[[], bytes]:
    return lambda: mv.artifact(name)


def _import(spec: str) -> ModuleFactory:
    module, _, attr = spec.partition(":")
    try:
        factory: ModuleFactory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ServingError(
            f"cannot import the module factory '{spec}' ({e})",
            "give package.module:function returning the torch module",
        ) from e
    return factory


def _with_weights(module: Any, weights: bytes, ref: str) -> Any:
    from safetensors.torch import load

    try:
        module.load_state_dict(load(weights))
    except RuntimeError as e:
        raise ServingError(
            f"the weights of {ref} do not fit the module built for it ({e})",
            "build the architecture the version was trained with",
        ) from e
    return module


def _torchscript(data: bytes) -> Any:
    import io

    import torch

    return torch.jit.load(io.BytesIO(data), map_location="cpu")  # type: ignore[no-untyped-call]
