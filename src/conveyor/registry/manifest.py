"""The model version manifest: everything a version is, as one content-addressed JSON.

Specified in MODEL.md beside this file. The metadata row of a version points at its
manifest; artifacts (ONNX, safetensors weights, the reference profile) are objects the
manifest names with their sha256, so a read of any of them is verified.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from conveyor.storage.tables import utcnow

FORMAT: Literal["conveyor.model/1"] = "conveyor.model/1"
MEDIA_TYPE = "application/vnd.conveyor.model-manifest+json"
ONNX_MEDIA_TYPE = "application/onnx"
SAFETENSORS_MEDIA_TYPE = "application/vnd.safetensors"
JSON_MEDIA_TYPE = "application/json"


class ArtifactEntry(BaseModel):
    digest: str
    size: int
    media_type: str


class DatasetLink(BaseModel):
    """A dataset version the model was built on, down to its shards."""

    ref: str
    manifest: str
    role: str = "train"  # "train" or "eval"
    split: str | None = None
    shards: list[str] = Field(default_factory=list)


class RunLink(BaseModel):
    id: str
    name: str | None = None
    experiment: str | None = None
    git_commit: str | None = None
    user: str | None = None
    host: str | None = None
    params: dict[str, str] = Field(default_factory=dict)


class ExportCheck(BaseModel):
    """How closely the ONNX model matched PyTorch on held-out inputs at registration."""

    exporter: str
    opset: int | None = None
    samples: int
    max_abs_diff: float
    tolerance: float


class ModelManifest(BaseModel):
    format: Literal["conveyor.model/1"] = FORMAT
    name: str
    number: int
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str
    artifacts: dict[str, ArtifactEntry]
    signature: dict[str, Any]
    preprocessing: dict[str, Any]
    metrics: dict[str, float] = Field(default_factory=dict)
    per_class: list[dict[str, Any]] = Field(default_factory=list)
    target: str | None = None
    datasets: list[DatasetLink] = Field(default_factory=list)
    run: RunLink | None = None
    environment: dict[str, str] = Field(default_factory=dict)
    export_check: ExportCheck | None = None
    description: str = ""

    def to_json(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ModelManifest:
        return cls.model_validate_json(data)
