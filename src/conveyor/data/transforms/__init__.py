"""Pure transforms behind the prepare operations: one shard, or small arrays from all shards.

Nothing here reads or writes storage. `prepare.py` runs the per-shard functions in worker
processes and the global ones (which duplicate comes first, fill values, splits) in between.
"""

from __future__ import annotations

from conveyor.data.transforms.filtering import filter_table
from conveyor.data.transforms.keys import first_occurrence_mask, match_rows, row_keys
from conveyor.data.transforms.mapping import apply_map
from conveyor.data.transforms.missing import apply_fill, drop_missing, fill_values
from conveyor.data.transforms.near import INVALID_HASH, near_duplicate_mask, perceptual_hashes
from conveyor.data.transforms.splits import assign_splits

__all__ = [
    "INVALID_HASH",
    "apply_fill",
    "apply_map",
    "assign_splits",
    "drop_missing",
    "fill_values",
    "filter_table",
    "first_occurrence_mask",
    "match_rows",
    "near_duplicate_mask",
    "perceptual_hashes",
    "row_keys",
]
