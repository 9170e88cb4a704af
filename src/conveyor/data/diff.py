"""What changed between two dataset versions: schema, rows and storage shared."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from conveyor.data.dataset import DatasetVersion
from conveyor.data.shards import read_shard
from conveyor.data.transforms import match_rows, row_keys


@dataclass(frozen=True)
class DatasetDiff:
    a: str
    b: str
    columns_added: list[str]
    columns_removed: list[str]
    columns_retyped: list[str]
    rows_a: int
    rows_b: int
    rows_added: int
    rows_removed: int
    shards_shared: int
    bytes_shared: int
    bytes_new: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def diff_versions(a: DatasetVersion, b: DatasetVersion) -> DatasetDiff:
    """Rows are compared by identity; shards both versions hold are never read."""
    sa, sb = a.schema, b.schema
    types_a = {f.name: f.type for f in sa}
    types_b = {f.name: f.type for f in sb}
    shared = {s.digest for s in a.manifest.shards} & {s.digest for s in b.manifest.shards}
    identity = [c for c in a.manifest.identity if c in types_b and types_a[c] == types_b[c]]
    only_a = [s for s in a.manifest.shards if s.digest not in shared]
    only_b = [s for s in b.manifest.shards if s.digest not in shared]
    if identity:
        keys_a = [row_keys(read_shard(a._catalog.objects, s.digest, identity)) for s in only_a]
        keys_b = [row_keys(read_shard(b._catalog.objects, s.digest, identity)) for s in only_b]
        flat_b = np.concatenate(keys_b) if keys_b else np.zeros((0, 2), dtype=np.uint64)
        added_mask, kept = match_rows(keys_a, flat_b)
        added = int(added_mask.sum())
        removed = int(sum((~k).sum() for k in kept))
    else:  # nothing in common to identify rows by
        added, removed = b.rows, a.rows
    return DatasetDiff(
        a=a.ref,
        b=b.ref,
        columns_added=[c for c in types_b if c not in types_a],
        columns_removed=[c for c in types_a if c not in types_b],
        columns_retyped=[c for c in types_a if c in types_b and types_a[c] != types_b[c]],
        rows_a=a.rows,
        rows_b=b.rows,
        rows_added=added,
        rows_removed=removed,
        shards_shared=len(shared),
        bytes_shared=sum(s.bytes for s in b.manifest.shards if s.digest in shared),
        bytes_new=sum(s.bytes for s in only_b),
    )
