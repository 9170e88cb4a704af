"""A DatasetVersion: one immutable version, read from its manifest."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from conveyor.core.errors import ConveyorError
from conveyor.data.manifest import Manifest, Shard
from conveyor.data.shards import read_shard

if TYPE_CHECKING:
    from conveyor.data.catalog import Datasets


@dataclass(frozen=True)
class LineageStep:
    """One version in a lineage walk: what made it and from which parents."""

    ref: str
    operation: str
    params: dict[str, object]
    parents: list[str]
    rows: int


class DatasetVersion:
    """An immutable dataset version: a manifest over Parquet shards."""

    def __init__(self, catalog: Datasets, manifest: Manifest, digest: str) -> None:
        self._catalog = catalog
        self.manifest = manifest
        self.digest = digest

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def ref(self) -> str:
        return f"{self.name}@v{self.version}"

    @property
    def rows(self) -> int:
        return self.manifest.rows

    @property
    def schema(self) -> pa.Schema:
        return self.manifest.schema()

    def shards(self, split: str | None = None) -> list[Shard]:
        """The shards, or only those of one split (`train`, `val`, `test`...)."""
        if split is None:
            return list(self.manifest.shards)
        splits = self.manifest.splits()
        if split not in splits:
            known = ", ".join(sorted(splits)) or "none (run `conveyor data split` first)"
            raise ConveyorError(f"{self.ref} has no split '{split}'", f"splits: {known}")
        return [s for s in self.manifest.shards if s.split == split]

    def iter_tables(
        self, columns: list[str] | None = None, split: str | None = None
    ) -> Iterator[pa.Table]:
        """Shard by shard, each verified against its hash."""
        self._check_columns(columns)
        for shard in self.shards(split):
            yield read_shard(self._catalog.objects, shard.digest, columns)

    def to_arrow(self, columns: list[str] | None = None, split: str | None = None) -> pa.Table:
        """The whole version (or one split) as one Arrow table."""
        tables = list(self.iter_tables(columns, split))
        if not tables:
            schema = (
                self.schema
                if columns is None
                else pa.schema([self.schema.field(c) for c in columns])
            )
            return schema.empty_table()
        return pa.concat_tables(tables)

    def lineage(self) -> list[LineageStep]:
        """This version and every version it was made from, back to the ingests."""
        return self._catalog.lineage(self)

    def _check_columns(self, columns: list[str] | None) -> None:
        missing = [c for c in columns or [] if c not in self.schema.names]
        if missing:
            raise ConveyorError(
                f"{self.ref} has no column {', '.join(repr(c) for c in missing)}",
                f"columns: {', '.join(self.schema.names)}",
            )

    def __repr__(self) -> str:
        return f"DatasetVersion({self.ref}, rows={self.rows}, shards={len(self.manifest.shards)})"
