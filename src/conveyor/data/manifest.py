"""The dataset manifest: everything a version is, as one content-addressed JSON object.

Specified in MANIFEST.md beside this file. The metadata row of a version only points at
its manifest, so a lost database can be rebuilt from the object store.
"""

from __future__ import annotations

import base64
import builtins
import json
from datetime import datetime
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from conveyor.storage.tables import utcnow

FORMAT: Literal["conveyor.dataset/1"] = "conveyor.dataset/1"
MEDIA_TYPE = "application/vnd.conveyor.dataset-manifest+json"


class ColumnSchema(BaseModel):
    name: str
    type: str
    nullable: bool = True


class ByteRange(BaseModel):
    """A verified slice of a shard: a row group's column chunks, or the Parquet footer."""

    offset: int
    length: int
    sha256: str


class Shard(BaseModel):
    """One Parquet shard: its address, size, rows, its statistics object and its split."""

    digest: str
    rows: int
    bytes: int
    stats: str
    split: str | None = None
    row_groups: list[int] | None = None  # rows per Parquet row group, for loaders
    row_group_bytes: list[ByteRange] | None = None  # so a loader can range-read one group
    footer: ByteRange | None = None


class Parent(BaseModel):
    name: str
    version: int
    manifest: str


class Operation(BaseModel):
    """What made the version, with the parameters needed to make it again."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class Manifest(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    format: Literal["conveyor.dataset/1"] = FORMAT
    name: str
    version: int
    created_at: datetime = Field(default_factory=utcnow)
    fields: list[ColumnSchema] = Field(alias="schema")
    arrow_schema: str
    rows: int
    bytes: int
    columns: dict[str, dict[str, Any]]
    identity: list[str]
    shards: list[Shard]
    parents: list[Parent] = Field(default_factory=list)
    operation: Operation
    duplicates: dict[str, Any] = Field(default_factory=dict)
    rejects: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> builtins.bytes:
        return json.dumps(self.model_dump(mode="json", by_alias=True), indent=1).encode()

    @classmethod
    def from_json(cls, data: builtins.bytes) -> Manifest:
        return cls.model_validate_json(data)

    def schema(self) -> pa.Schema:  # type: ignore[override]
        """The exact Arrow schema of every shard."""
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(self.arrow_schema)))

    def splits(self) -> dict[str, int]:
        """Rows per split (empty when the version has no splits)."""
        counts: dict[str, int] = {}
        for shard in self.shards:
            if shard.split is not None:
                counts[shard.split] = counts.get(shard.split, 0) + shard.rows
        return counts


def encode_schema(schema: pa.Schema) -> tuple[list[ColumnSchema], str]:
    fields = [ColumnSchema(name=f.name, type=str(f.type), nullable=f.nullable) for f in schema]
    return fields, base64.b64encode(schema.serialize().to_pybytes()).decode()
