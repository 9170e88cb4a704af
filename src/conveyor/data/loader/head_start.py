"""The training process fetches the workers' first shards while they start.

Forking a worker and connecting it to the object store takes ~0.2 s, and every worker's
first batch needs the same row groups (those of the epoch's first window). The training
process already has a connection and nothing to do until a batch arrives, so it fetches
them into the cache folder: whole shards, or row groups under `parts/`. A worker that
wants one meanwhile waits on its lock and then finds it there.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from conveyor.data.loader.cache import PREFETCH_SHARDS, ShardCache, worth_waiting_for
from conveyor.data.loader.plan import RAMP_FIRST
from conveyor.storage.objects import ObjectStore

if TYPE_CHECKING:
    from conveyor.data.loader.stream import LoaderSpec


def head_start(spec: LoaderSpec, epoch: int, start: int, workers: int) -> ThreadPoolExecutor:
    """Start fetching what the first batch of each worker needs; shut it down after.

    Like a worker, it downloads the first few shards whole when they are small, and
    range-reads the row groups of the others (see `_BlockReader._cached_soon`).
    """
    pool = ThreadPoolExecutor(RAMP_FIRST, thread_name_prefix="conveyor-head-start")
    if not workers or spec.cache_dir is None or not spec.ranges:
        return pool  # no one to wait for; a local store is read in place
    cache = ShardCache(ObjectStore(spec.objects_url, spec.objects_options), spec.cache_dir)
    plan = spec.plan(epoch)
    windows: dict[int, None] = {}
    for batch in spec.batches(epoch, start)[:workers]:
        windows.update(dict.fromkeys(plan.windows_at(batch.positions)))
    blocks = [b for w in windows for b in plan.blocks_of_window(w)]
    whole: list[int] = []
    for shard in dict.fromkeys(b.shard for b in blocks):
        ranges = spec.ranges[shard]
        if ranges is None or cache.has(spec.shards[shard]):
            continue
        footer, _ = ranges
        if worth_waiting_for(footer.offset + footer.length) and len(whole) < PREFETCH_SHARDS:
            whole.append(shard)
            pool.submit(cache.path, spec.shards[shard])
        else:  # a footer first: a worker needs it to parse any of the shard's groups
            pool.submit(cache.part, spec.shards[shard], footer)
            for b in blocks:
                if b.shard == shard:
                    pool.submit(cache.part, spec.shards[shard], ranges[1][b.group])
    return pool
