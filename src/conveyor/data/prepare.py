"""Prepare operations: each reads a version and commits a new one with lineage.

Work runs shard-parallel in worker processes. A shard an operation leaves unchanged is
reused as is (same address, no bytes written); a cheap global step between passes
handles what needs all rows at once (which duplicate is first, fill values, splits).
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conveyor.core.errors import ConveyorError
from conveyor.core.processes import spawn_pool
from conveyor.data import transforms
from conveyor.data.manifest import Manifest, Operation, Shard, encode_schema
from conveyor.data.shards import DEFAULT_SHARD_BYTES, read_shard, read_stats, rebatch, write_shard
from conveyor.data.stats import merge_stats
from conveyor.storage.objects import ObjectStore

if TYPE_CHECKING:
    from conveyor.data.catalog import Datasets
    from conveyor.data.dataset import DatasetVersion


# -- worker side ------------------------------------------------------------------------------


@functools.cache
def _store(url: str, options: tuple[tuple[str, Any], ...]) -> ObjectStore:
    return ObjectStore(url, dict(options))


def _run_task(
    store: tuple[str, tuple[tuple[str, Any], ...]], shard: Shard, task: str, args: tuple[Any, ...]
) -> Any:
    """Run one task on one shard in a worker process."""
    objects = _store(*store)
    table = read_shard(objects, shard.digest)
    if task == "keys":
        columns, near = args
        keys = transforms.row_keys(table.select(columns))
        hashes = transforms.perceptual_hashes(table.column("image")) if near else None
        return keys, hashes
    if task == "rewrite":
        (keep,) = args
        if keep is not None:
            table = table.filter(pa.array(keep))
        return write_shard(objects, table, shard.split) if table.num_rows else None
    if task == "fill":
        (values,) = args
        return write_shard(objects, transforms.apply_fill(table, values), shard.split)
    if task == "drop_missing":
        (columns,) = args
        out = transforms.drop_missing(table, columns)
        return write_shard(objects, out, shard.split) if out.num_rows else None
    if task == "filter":
        (expression,) = args
        out = transforms.filter_table(table, expression)
        return write_shard(objects, out, shard.split) if out.num_rows else None
    if task == "map":
        fn_ref, batch_size = args
        out = transforms.apply_map(table, resolve_function(fn_ref), batch_size)
        return write_shard(objects, out, shard.split) if out.num_rows else None
    if task == "columns":
        (columns,) = args
        return table.select(columns)
    raise ValueError(f"unknown task {task}")


def resolve_function(ref: str | Callable[..., Any]) -> Callable[..., Any]:
    """`package.module:function` (or a callable) → the callable."""
    if callable(ref):
        return ref
    module_name, _, attr = ref.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConveyorError(
            f"cannot import map function '{ref}' ({e})",
            "give it as package.module:function, importable from the current directory",
        ) from e
    if not callable(fn):
        raise ConveyorError(f"'{ref}' is not a function", "point at a function")
    return fn  # type: ignore[no-any-return]


# -- orchestration ----------------------------------------------------------------------------


class Preparer:
    """Runs prepare operations for one catalog."""

    def __init__(self, catalog: Datasets, workers: int | None = None) -> None:
        self.catalog = catalog
        self.workers = workers or os.cpu_count() or 1
        objects = catalog.objects
        self._store_args = (objects.url, tuple(sorted(objects.options.items())))

    def _map(
        self, shards: Sequence[Shard], task: str, args: Sequence[tuple[Any, ...]]
    ) -> list[Any]:
        if self.workers <= 1 or len(shards) <= 1:
            return [
                _run_task(self._store_args, s, task, a) for s, a in zip(shards, args, strict=True)
            ]
        with spawn_pool(min(self.workers, len(shards))) as pool:
            futures = [
                pool.submit(_run_task, self._store_args, s, task, a)
                for s, a in zip(shards, args, strict=True)
            ]
            return [f.result() for f in futures]

    def _commit(
        self,
        source: DatasetVersion,
        shards: list[Shard | None],
        operation: Operation,
        into: str | None,
        schema: pa.Schema | None = None,
    ) -> DatasetVersion:
        kept = [s for s in shards if s is not None]
        if not kept:
            raise ConveyorError(
                f"{operation.name} would leave {source.ref} with no rows", "check the parameters"
            )
        schema = schema or source.schema
        fields, arrow_schema = encode_schema(schema)
        stats = [read_stats(self.catalog.objects, s) for s in kept]
        columns = merge_stats(stats)
        draft = Manifest(
            name=into or source.name,
            version=0,
            fields=fields,
            arrow_schema=arrow_schema,
            rows=sum(s.rows for s in kept),
            bytes=sum(s.bytes for s in kept),
            columns=columns,
            identity=[c for c in source.manifest.identity if c in schema.names],
            shards=kept,
            operation=operation,
        )
        # Exact duplicates are only known for what keeps the rows as they are; others recount.
        exact = source.manifest.duplicates.get("exact") if operation.name == "split" else None
        if operation.name == "dedupe":
            exact = 0
        draft.duplicates = {**source.manifest.duplicates, "exact": exact}
        return self.catalog.commit(draft, [source])

    def _with_keep_masks(
        self,
        source: DatasetVersion,
        masks: list[np.ndarray],
        operation: Operation,
        into: str | None,
    ) -> DatasetVersion:
        """Reuse shards that keep every row, rewrite the others with only the kept rows."""
        todo = [i for i, m in enumerate(masks) if not m.all()]
        out = self._rewrite_some(source, todo, "rewrite", [(masks[i],) for i in todo])
        return self._commit(source, out, operation, into)

    # -- operations ----------------------------------------------------------------------------

    def dedupe(
        self,
        source: DatasetVersion,
        near: bool = False,
        max_distance: int = 4,
        into: str | None = None,
    ) -> DatasetVersion:
        """Drop exact duplicates (same content), and near-duplicate images with `near`."""
        if near and "image" not in source.schema.names:
            raise ConveyorError(
                f"{source.ref} has no 'image' column", "near-duplicate search is for image datasets"
            )
        content = source.manifest.duplicates.get("by") or source.manifest.identity
        shards = source.manifest.shards
        results = self._map(shards, "keys", [(content, near)] * len(shards))
        masks = transforms.first_occurrence_mask([keys for keys, _ in results])
        if near:
            near_masks = transforms.near_duplicate_mask([h for _, h in results], max_distance)
            masks = [a & b for a, b in zip(masks, near_masks, strict=True)]
        params = {"near": near, "max_distance": max_distance if near else None}
        return self._with_keep_masks(source, masks, Operation(name="dedupe", params=params), into)

    def fill(
        self,
        source: DatasetVersion,
        columns: list[str],
        strategy: str,
        value: Any = None,
        into: str | None = None,
    ) -> DatasetVersion:
        """Fill missing values in `columns` by mean, median, mode or a constant."""
        self._require(source, columns)
        gathered = self._gather(source, columns)
        values = transforms.fill_values(gathered, columns, strategy, value)  # type: ignore[arg-type]
        todo = self._shards_with_nulls(source, columns)
        out = self._rewrite_some(source, todo, "fill", [(values,)] * len(todo))
        params = {"columns": columns, "strategy": strategy, "values": _jsonable(values)}
        return self._commit(source, out, Operation(name="fill", params=params), into)

    def drop_missing(
        self, source: DatasetVersion, columns: list[str] | None = None, into: str | None = None
    ) -> DatasetVersion:
        """Drop rows with a missing value (in `columns`, or in any column)."""
        self._require(source, columns or [])
        todo = self._shards_with_nulls(source, columns or source.schema.names)
        out = self._rewrite_some(source, todo, "drop_missing", [(columns,)] * len(todo))
        op = Operation(name="drop-missing", params={"columns": columns})
        return self._commit(source, out, op, into)

    def filter(
        self, source: DatasetVersion, expression: str, into: str | None = None
    ) -> DatasetVersion:
        """Keep the rows where a SQL expression is true, e.g. `label != '3' AND width >= 8`."""
        shards = source.manifest.shards
        out = self._map(shards, "filter", [(expression,)] * len(shards))
        op = Operation(name="filter", params={"expression": expression})
        return self._commit(source, out, op, into)

    def map(
        self,
        source: DatasetVersion,
        fn: str | Callable[..., Any],
        batch_size: int = 1024,
        into: str | None = None,
    ) -> DatasetVersion:
        """Apply a user function to every batch of rows (Arrow in, Arrow or dict out)."""
        resolve_function(fn)  # fail early, in this process, with a clear message
        shards = source.manifest.shards
        out = self._map(shards, "map", [(fn, batch_size)] * len(shards))
        kept = [s for s in out if s is not None]
        schema = read_shard(self.catalog.objects, kept[0].digest).schema if kept else None
        fn_name = fn if isinstance(fn, str) else f"{fn.__module__}:{fn.__qualname__}"
        op = Operation(name="map", params={"function": fn_name, "batch_size": batch_size})
        return self._commit(source, out, op, into, schema)

    def split(
        self,
        source: DatasetVersion,
        fractions: dict[str, float],
        seed: int = 0,
        stratify: str | None = None,
        into: str | None = None,
    ) -> DatasetVersion:
        """Assign every row to a split, deterministically from the seed and its content."""
        needed = list(dict.fromkeys([*source.manifest.identity, *([stratify] if stratify else [])]))
        self._require(source, needed)
        gathered = self._gather(source, needed)
        keys = transforms.row_keys(gathered.select(source.manifest.identity))
        strata = gathered.column(stratify).to_numpy(zero_copy_only=False) if stratify else None
        assigned = np.asarray(transforms.assign_splits(keys, fractions, seed, strata)).astype(str)
        table = source.to_arrow().drop_columns([c for c in ["split"] if c in source.schema.names])
        table = table.append_column("split", pa.array(assigned, pa.string()))
        objects = self.catalog.objects
        shards: list[Shard | None] = []
        for name in fractions:
            part = table.filter(pc.equal(table.column("split"), name))
            for chunk in rebatch(part.to_batches(), DEFAULT_SHARD_BYTES):
                shards.append(write_shard(objects, chunk, name))
        params = {"fractions": fractions, "seed": seed, "stratify": stratify}
        return self._commit(
            source, shards, Operation(name="split", params=params), into, table.schema
        )

    # -- helpers -------------------------------------------------------------------------------

    def _rewrite_some(
        self, source: DatasetVersion, todo: list[int], task: str, args: list[tuple[Any, ...]]
    ) -> list[Shard | None]:
        """Run `task` on the shards at `todo`; every other shard is kept as it is."""
        shards: list[Shard | None] = list(source.manifest.shards)
        done = self._map([source.manifest.shards[i] for i in todo], task, args)
        for i, shard in zip(todo, done, strict=True):
            shards[i] = shard
        return shards

    def _shards_with_nulls(self, source: DatasetVersion, columns: list[str]) -> list[int]:
        """Shards whose statistics show a null in any of `columns` (the others need no work)."""
        stats = [read_stats(self.catalog.objects, s) for s in source.manifest.shards]
        return [i for i, st in enumerate(stats) if any(st[c]["nulls"] for c in columns)]

    def _gather(self, source: DatasetVersion, columns: list[str]) -> pa.Table:
        shards = source.manifest.shards
        tables = self._map(shards, "columns", [(columns,)] * len(shards))
        return pa.concat_tables(tables)

    @staticmethod
    def _require(source: DatasetVersion, columns: list[str]) -> None:
        missing = [c for c in columns if c not in source.schema.names]
        if missing:
            raise ConveyorError(
                f"{source.ref} has no column {', '.join(repr(c) for c in missing)}",
                f"columns: {', '.join(source.schema.names)}",
            )


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in values.items()}
