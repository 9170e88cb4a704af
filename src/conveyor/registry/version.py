"""A ModelVersion: one registered version, read from its manifest.

Every artifact read goes through the object store, which checks the bytes against their
sha256 before returning them; weights are safetensors or ONNX, never a pickle.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import ConveyorError
from conveyor.registry.manifest import ModelManifest
from conveyor.registry.preprocessing import Preprocessing
from conveyor.registry.signature import Signature

if TYPE_CHECKING:
    from conveyor.storage.objects import ObjectStore

ONNX = "model.onnx"
WEIGHTS = "weights.safetensors"
PROFILE = "reference_profile.json"


class ArtifactNotFoundError(ConveyorError):
    """The version has no artifact by that name."""


@dataclass(frozen=True)
class GateResult:
    """One evaluation of a gate on a version: passed or not, and each check's figures."""

    gate: str
    passed: bool
    checks: list[dict[str, Any]]
    evaluated_by: str
    evaluated_at: datetime

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if not c["passed"]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "passed": self.passed,
            "checks": self.checks,
            "evaluated_by": self.evaluated_by,
            "evaluated_at": self.evaluated_at.isoformat(),
        }


class ModelVersion:
    """An immutable registered version (its status and aliases live in the metadata)."""

    def __init__(
        self, objects: ObjectStore, manifest: ModelManifest, digest: str, status: str = "ready"
    ) -> None:
        self._objects = objects
        self.manifest = manifest
        self.digest = digest
        self.status = status

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def number(self) -> int:
        return self.manifest.number

    @property
    def ref(self) -> str:
        return f"{self.name}@v{self.number}"

    @functools.cached_property
    def signature(self) -> Signature:
        return Signature.from_dict(self.manifest.signature)

    @functools.cached_property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing.from_dict(self.manifest.preprocessing)

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.manifest.metrics)

    @property
    def run_id(self) -> str | None:
        return self.manifest.run.id if self.manifest.run else None

    @property
    def datasets(self) -> list[str]:
        return [d.ref for d in self.manifest.datasets]

    @property
    def artifacts(self) -> dict[str, int]:
        """Artifact names and their sizes in bytes."""
        return {name: a.size for name, a in self.manifest.artifacts.items()}

    def artifact(self, name: str) -> bytes:
        """An artifact's bytes, verified against the sha256 the manifest records."""
        entry = self.manifest.artifacts.get(name)
        if entry is None:
            raise ArtifactNotFoundError(
                f"{self.ref} has no artifact {name!r}",
                f"its artifacts are: {', '.join(sorted(self.manifest.artifacts))}",
            )
        return self._objects.get_bytes(entry.digest)

    def onnx_bytes(self) -> bytes:
        if ONNX not in self.manifest.artifacts:
            raise ArtifactNotFoundError(
                f"{self.ref} has no ONNX model (it was registered without one)",
                "register the model again with model=... and example_inputs=..., or onnx=...",
            )
        return self.artifact(ONNX)

    @functools.cached_property
    def reference_profile(self) -> dict[str, Any]:
        """The training data's profile for drift monitoring ({} when none was recorded)."""
        if PROFILE not in self.manifest.artifacts:
            return {}
        profile: dict[str, Any] = json.loads(self.artifact(PROFILE))
        return profile

    def __repr__(self) -> str:
        return f"ModelVersion({self.ref}, status={self.status})"
