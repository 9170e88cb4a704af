"""A DatasetVersion: one immutable version, read from its manifest."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from conveyor.core.errors import ConveyorError
from conveyor.data.manifest import Manifest, Shard
from conveyor.data.shards import read_shard

if TYPE_CHECKING:
    from conveyor.data.catalog import Datasets
    from conveyor.data.loader.stream import Loader


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

    @property
    def classes(self) -> list[str]:
        """Sorted distinct values of the `label` column (empty when there is none)."""
        stats = self.manifest.columns.get("label", {})
        if not stats.get("values_complete") or "string" not in stats.get("type", ""):
            return []
        return sorted(stats["values"])

    def loader(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        columns: list[str] | None = None,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        num_workers: int = 0,
        split: str | None = None,
        image_layout: Literal["HWC", "CHW"] = "HWC",
        image_mode: str | None = None,
        with_index: bool = False,
        drop_last: bool = False,
        even: Literal["pad", "drop"] | None = None,
        window: int = 64,
        cache_dir: str | Path | None = None,
        cache_limit_bytes: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        prefetch_factor: int | None = None,
        pin_memory: bool = False,
    ) -> Loader:
        """Batches for a training loop: a dict of tensors per batch (see loader/LOADER.md).

        With torch.distributed initialised, each rank reads its own part of every epoch.
        """
        from conveyor.data.loader.stream import Loader, LoaderSpec

        self._check_columns(columns)
        if batch_size < 1:
            raise ConveyorError(f"batch_size must be at least 1, not {batch_size}", "pick 32")
        if not 0 <= (rank or 0) < (world_size or 1):
            raise ConveyorError(f"rank {rank} is outside world size {world_size}", "check them")
        shards = self.shards(split)
        rank, world_size = _distributed(rank, world_size)
        objects = self._catalog.objects
        if cache_dir is None and not objects.is_local:
            cache_dir = Path(os.environ.get("CONVEYOR_CACHE", "~/.cache/conveyor")) / "shards"
        names = columns or self.schema.names
        spec = LoaderSpec(
            objects_url=objects.url,
            objects_options=objects.options,
            shards=tuple(s.digest for s in shards),
            row_groups=tuple(tuple(self._row_groups(s)) for s in shards),
            ranges=tuple(
                (s.footer, tuple(s.row_group_bytes)) if s.footer and s.row_group_bytes else None
                for s in shards
            ),
            columns=tuple(names),
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            window=window,
            drop_last=drop_last,
            even=even,
            image_layout=image_layout,
            image_mode=image_mode,
            label_column="label" if "label" in names and self.classes else None,
            classes=tuple(self.classes),
            with_index=with_index,
            transform=transform,
            cache_dir=Path(cache_dir).expanduser() if cache_dir is not None else None,
            cache_limit_bytes=cache_limit_bytes,
            rank=rank,
            world=world_size,
        )
        return Loader(spec, num_workers, prefetch_factor, pin_memory)

    def _row_groups(self, shard: Shard) -> list[int]:
        if shard.row_groups is not None:
            return shard.row_groups
        import io

        import pyarrow.parquet as pq

        footer = pq.ParquetFile(io.BytesIO(self._catalog.objects.get_bytes(shard.digest))).metadata
        return [footer.row_group(i).num_rows for i in range(footer.num_row_groups)]

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


def _distributed(rank: int | None, world: int | None) -> tuple[int, int]:
    """Explicit rank and world size, else torch.distributed's, else a single process."""
    if rank is not None and world is not None:
        return rank, world
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
