"""The loader a training loop iterates: an IterableDataset under a torch DataLoader.

Each DataLoader worker computes the epoch plan (cheap, no I/O), keeps the batches that
are its own, prefetches the shards it will need next into the local cache, reads row
groups, decodes images and yields ready-made batches.
"""

from __future__ import annotations

import bisect
import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from conveyor.core.errors import ConveyorError
from conveyor.data.loader.cache import PREFETCH_SHARDS, ShardCache, worth_waiting_for
from conveyor.data.loader.columns import Column, Values, gather, group_columns
from conveyor.data.loader.decode import Layout, decode_image, image_to_tensor, keep_freed_memory
from conveyor.data.loader.handoff import Arrays, maps, opened, to_batch
from conveyor.data.loader.head_start import head_start
from conveyor.data.loader.plan import RAMP_FIRST, Batch, EpochPlan, Even, make_blocks, rank_batches
from conveyor.data.loader.ranges import MappedShard, read_footer, read_group
from conveyor.data.manifest import ByteRange
from conveyor.storage.objects import ObjectStore

READ_THREADS = RAMP_FIRST  # row groups range-read at once: all of an epoch's first window


@dataclass(frozen=True)
class LoaderSpec:
    """Everything a worker process needs; small and picklable."""

    objects_url: str
    objects_options: dict[str, Any]
    shards: tuple[str, ...]
    row_groups: tuple[tuple[int, ...], ...]
    columns: tuple[str, ...]
    batch_size: int
    ranges: tuple[tuple[ByteRange, tuple[ByteRange, ...]] | None, ...] = ()  # footer, groups
    shuffle: bool = True
    seed: int = 0
    window: int = 64
    drop_last: bool = False
    even: Even = None
    image_column: str | None = "image"
    image_layout: Layout = "HWC"
    image_mode: str | None = None
    label_column: str | None = None
    classes: tuple[str, ...] = ()
    with_index: bool = False
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    cache_dir: Path | None = None
    cache_limit_bytes: int | None = None
    rank: int = 0
    world: int = 1

    def plan(self, epoch: int) -> EpochPlan:
        blocks = tuple(make_blocks(self.row_groups))
        return EpochPlan(blocks, self.seed, epoch, self.shuffle, self.window)

    def batches(self, epoch: int, start: int) -> list[Batch]:
        total = self.plan(epoch).total
        return rank_batches(
            total, self.batch_size, self.rank, self.world, start, self.drop_last, self.even
        )


class ShardStream(IterableDataset[dict[str, Any]]):
    """The batches of one rank for one epoch, from global batch `start` on."""

    def __init__(self, spec: LoaderSpec, epoch: int, start: int) -> None:
        self.spec, self.epoch, self.start = spec, epoch, start

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        spec = self.spec
        plan = spec.plan(self.epoch)
        mine = spec.batches(self.epoch, self.start)[worker::workers]
        with _BlockReader(spec, plan) as reader:
            reader.plan_prefetch([plan.windows_at(b.positions) for b in mine])
            for i, batch in enumerate(mine):
                reader.advance(i)
                ids = plan.ids_at(batch.positions)
                yield self._make_batch(reader.rows(ids), ids)

    def _make_batch(self, columns: dict[str, Values], ids: np.ndarray) -> dict[str, Any]:
        spec = self.spec
        if spec.transform is not None:
            return _collate([spec.transform(s) for s in _samples(columns, spec, ids)])
        out: dict[str, Any] = {}
        arrays: Arrays = []
        for name, values in columns.items():
            if name == spec.image_column and not isinstance(values, np.ndarray):
                images = [decode_image(b, spec.image_mode) for b in values]
                if len({a.shape for a in images}) == 1:
                    arrays.append((name, images))
                else:  # mixed sizes stay a list
                    out[name] = [image_to_tensor(a, spec.image_layout) for a in images]
            elif isinstance(values, np.ndarray):  # numbers as their dtype, floats as float32
                floats = values.dtype.kind == "f"
                arrays.append((name, values.astype(np.float32) if floats else values))
            else:
                out[name] = values
        if spec.with_index:
            arrays.append(("index", ids.copy()))
        out.update(to_batch(arrays, spec.image_layout))
        return out


def _samples(
    columns: dict[str, Values], spec: LoaderSpec, ids: np.ndarray
) -> Iterator[dict[str, Any]]:
    """One decoded sample at a time, for per-sample user transforms."""
    for i in range(len(ids)):
        sample: dict[str, Any] = {}
        for name, values in columns.items():
            value = values[i]
            if name == spec.image_column and not isinstance(values, np.ndarray):
                sample[name] = image_to_tensor(
                    decode_image(value, spec.image_mode), spec.image_layout
                )
            else:
                sample[name] = value.item() if isinstance(value, np.generic) else value
        if spec.with_index:
            sample["index"] = int(ids[i])
        yield sample


def _collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    from torch.utils.data import default_collate

    try:
        return default_collate(samples)  # type: ignore[no-any-return]
    except (RuntimeError, TypeError):  # mixed shapes: keep lists
        return {k: [s[k] for s in samples] for k in samples[0]}


class _BlockReader:
    """Reads the rows a batch needs, a row group at a time, with shards prefetched."""

    def __init__(self, spec: LoaderSpec, plan: EpochPlan) -> None:
        self.spec = spec
        self.blocks = plan.blocks
        self.starts = np.array([b.start for b in plan.blocks], dtype=np.int64)
        store = ObjectStore(spec.objects_url, spec.objects_options)
        self.cache = ShardCache(store, spec.cache_dir, spec.cache_limit_bytes)
        self.plan = plan
        self.groups: OrderedDict[int, dict[str, Column]] = OrderedDict()
        self.files: OrderedDict[int, pq.ParquetFile] = OrderedDict()
        self.whole: set[int] = set()  # shards this reader has had whole
        self.footers: dict[int, pq.FileMetaData] = {}
        self.mapped: OrderedDict[int, MappedShard] = OrderedDict()  # local store: mapped
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(PREFETCH_SHARDS, thread_name_prefix="conveyor-prefetch")
        self.readers = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="conveyor-read")
        self.futures: dict[int, Future[Path]] = {}
        self.need_order: list[int] = []
        self.first_need: list[int] = []

    def __enter__(self) -> _BlockReader:
        return self

    def __exit__(self, *exc: object) -> None:
        for shard in self.whole:  # the row groups kept for others while it downloaded
            ranges = self.spec.ranges[shard] if self.spec.ranges else None
            if ranges is not None:
                self.cache.forget_parts([ranges[0], *ranges[1]])
        for future in self.futures.values():
            future.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.readers.shutdown(wait=False, cancel_futures=True)

    def plan_prefetch(self, windows_per_batch: list[list[int]]) -> None:
        """Note which shard each batch first needs, in order, for prefetching."""
        if self.spec.cache_dir is None and self.spec.ranges:
            return  # a local store with row-group hashes: groups are read and verified alone
        seen_windows: set[int] = set()
        seen: set[int] = set()
        for i, windows in enumerate(windows_per_batch):
            for w in windows:
                if w in seen_windows:
                    continue
                seen_windows.add(w)
                for block in self.plan.blocks_of_window(w):
                    if block.shard not in seen:
                        seen.add(block.shard)
                        self.need_order.append(block.shard)
                        self.first_need.append(i)

    def advance(self, batch: int) -> None:
        """Start fetching the shards needed up to a few shards beyond this batch."""
        reach = bisect.bisect_right(self.first_need, batch) + PREFETCH_SHARDS
        for shard in self.need_order[:reach]:
            if shard not in self.futures:
                digest = self.spec.shards[shard]
                self.futures[shard] = self.pool.submit(self.cache.path, digest)

    def rows(self, ids: np.ndarray) -> dict[str, Values]:
        """The rows with these global ids, in this order, column by column."""
        block_of = np.searchsorted(self.starts, ids, side="right") - 1
        self._forget_before(int(self.plan.window_of_block[block_of].min()))
        order = np.argsort(block_of, kind="stable")  # the batch's rows grouped by block
        cuts = np.flatnonzero(np.diff(block_of[order])) + 1
        runs = [(int(block_of[where[0]]), where) for where in np.split(order, cuts)]
        self._read_ahead([b for b, _ in runs])
        groups = [(self._group(b), ids[where] - self.starts[b]) for b, where in runs]
        inverse = np.empty(len(ids), dtype=np.int64)
        inverse[order] = np.arange(len(ids))
        out: dict[str, Values] = {}
        for name in self.spec.columns:
            gathered = gather([(g[name], local) for g, local in groups])
            if isinstance(gathered, np.ndarray):
                out[name] = gathered[inverse]
            else:
                out[name] = [gathered[int(i)] for i in inverse]
        return out

    def _read_ahead(self, blocks: list[int]) -> None:
        """Range-read the row groups a batch still lacks on several threads at once.

        A window's first batch needs all of its ~64 groups; Arrow, hashing and the
        network release the GIL, so reading them together cuts the wait for it.
        """
        missing = [b for b in blocks if b not in self.groups]
        ranged = [b for b in missing if not self._cached_soon(self.blocks[b].shard)]
        if len(ranged) < 2:
            return
        columns = list(self.spec.columns)
        shards = sorted({self.blocks[b].shard for b in ranged})
        list(self.readers.map(self._footer, shards))  # footers once, at once, before the groups
        tables = self.readers.map(
            lambda b: self._ranged(self.blocks[b].shard, self.blocks[b].group, columns), ranged
        )
        for b, table in zip(ranged, tables, strict=True):
            self._keep(b, table)

    def _group(self, b: int) -> dict[str, Column]:
        if b in self.groups:
            self.groups.move_to_end(b)
            return self.groups[b]
        block = self.blocks[b]
        columns = list(self.spec.columns)
        if self._cached_soon(block.shard):
            table = self._file(block.shard).read_row_group(
                block.group, columns=columns, use_threads=False
            )
        else:  # still downloading, or a local store: read (and verify) just this row group
            table = self._ranged(block.shard, block.group, columns)
        return self._keep(b, table)

    def _keep(self, b: int, table: pa.Table) -> dict[str, Column]:
        self.groups[b] = group_columns(table, self.spec.label_column, self.spec.classes)
        return self.groups[b]

    def _forget_before(self, window: int) -> None:
        """Drop the row groups of windows this reader has moved past.

        A batch needs every group of its window, and of both windows where it straddles
        two; a fixed-size cache would drop some of them and read them again.
        """
        done = [b for b in self.groups if self.plan.window_of_block[b] < window]
        for b in done:
            del self.groups[b]

    def _cached_soon(self, shard: int) -> bool:
        """Whether to read from the (cached or local) file rather than by range: yes once
        it is here, or while it downloads if it is small; shards still queued behind
        others are read by range."""
        ranges = self.spec.ranges[shard] if self.spec.ranges else None
        if ranges is None:
            return True  # an older manifest without row-group hashes: whole shards only
        if self.cache.folder is None:
            return False  # local: verifying one group's bytes beats hashing the whole shard
        future = self.futures.get(shard)
        if shard in self.files or (future is not None and future.done()):
            return True
        footer = ranges[0]
        return worth_waiting_for(footer.offset + footer.length) and shard in self._in_flight()

    def _in_flight(self) -> list[int]:
        """The shards being downloaded now (futures start in the order they were asked)."""
        return [s for s, f in self.futures.items() if not f.done()][:PREFETCH_SHARDS]

    def _ranged(self, shard: int, group: int, columns: list[str]) -> pa.Table:
        footer, parts = self.spec.ranges[shard]  # type: ignore[misc]
        if self.cache.objects.is_local:
            return self._mapped(shard).group(group, parts[group], columns)
        digest = self.spec.shards[shard]
        size = footer.offset + footer.length
        metadata = self._footer(shard)
        data = self.cache.part(digest, parts[group])
        return read_group(data, metadata, group, parts[group], size, columns)

    def _mapped(self, shard: int) -> MappedShard:
        with self.lock:  # reader threads: map each shard once, keep the 16 latest
            if shard not in self.mapped:
                footer, _ = self.spec.ranges[shard]  # type: ignore[misc]
                digest = self.spec.shards[shard]
                self.mapped[shard] = MappedShard(self.cache.objects, digest, footer)
                if len(self.mapped) > 16:  # unmapped once no Arrow buffer refers to it
                    self.mapped.popitem(last=False)
            self.mapped.move_to_end(shard)
            return self.mapped[shard]

    def _footer(self, shard: int) -> pq.FileMetaData:
        if self.cache.objects.is_local:
            return self._mapped(shard).metadata
        if shard not in self.footers:
            footer, _ = self.spec.ranges[shard]  # type: ignore[misc]
            self.footers[shard] = read_footer(self.cache.part(self.spec.shards[shard], footer))
        return self.footers[shard]

    def _file(self, shard: int) -> pq.ParquetFile:
        if shard in self.files:
            self.files.move_to_end(shard)
            return self.files[shard]
        future = self.futures.get(shard) or self.pool.submit(
            self.cache.path, self.spec.shards[shard]
        )
        self.futures[shard] = future
        path = future.result()
        try:
            # mapped, so row groups are parsed in the page cache; stays readable if the
            # cache evicts the file later
            handle = pq.ParquetFile(path, memory_map=True)
        except FileNotFoundError:  # evicted between prefetch and first use: fetch it again
            handle = pq.ParquetFile(self.cache.path(self.spec.shards[shard]), memory_map=True)
        self.files[shard] = handle
        self.whole.add(shard)
        if len(self.files) > 16:
            _, old = self.files.popitem(last=False)
            with contextlib.suppress(OSError):
                old.close()
        return handle


def _worker_started(worker: int) -> None:
    keep_freed_memory()


class Loader:
    """Iterate for batches (dicts of tensors); `state_dict()` / `load_state_dict()` resume.

    Iterating again after a full pass starts the next epoch; iterating again after
    stopping early carries on where the last batch handed out left off.
    """

    def __init__(
        self,
        spec: LoaderSpec,
        num_workers: int = 0,
        prefetch_factor: int | None = None,
        pin_memory: bool = False,
    ) -> None:
        self.spec = spec
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor if num_workers else None
        self.pin_memory = pin_memory
        self.epoch = 0
        self.start = 0  # first global batch of the current pass
        self.consumed = 0  # batches of this rank handed out since `start`

    def __len__(self) -> int:
        return len(self.spec.batches(self.epoch, self.start))

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.start, self.consumed = epoch, 0, 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.consumed:
            self.start, self.consumed = self.next_global_batch, 0
        stream = ShardStream(self.spec, self.epoch, self.start)
        loader = DataLoader(
            stream,
            batch_size=None,
            num_workers=self.num_workers,
            prefetch_factor=self.prefetch_factor,
            pin_memory=self.pin_memory,
            worker_init_fn=_worker_started if self.num_workers else None,
        )
        workers: set[str] = set()
        batches = iter(loader)  # forks the workers
        warming = head_start(self.spec, self.epoch, self.start, self.num_workers)
        try:
            for batch in batches:
                self.consumed += 1
                yield opened(batch, workers)
        finally:
            warming.shutdown(wait=False, cancel_futures=True)
            maps.forget(workers)
        self.set_epoch(self.epoch + 1)

    @property
    def next_global_batch(self) -> int:
        return self.start + self.consumed * self.spec.world

    def state_dict(self) -> dict[str, Any]:
        """Where this epoch stands; the same on every rank of a lockstep DDP job."""
        return {
            "epoch": self.epoch,
            "next_global_batch": self.next_global_batch,
            "batch_size": self.spec.batch_size,
            "seed": self.spec.seed,
            "shuffle": self.spec.shuffle,
            "samples": self.spec.plan(self.epoch).total,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved state, with any number of ranks and workers."""
        for key in ("batch_size", "seed", "shuffle"):
            if state.get(key) != getattr(self.spec, key):
                raise ConveyorError(
                    f"the saved loader state has {key}={state.get(key)!r}, this loader "
                    f"{getattr(self.spec, key)!r}",
                    f"resume with the same {key} so no sample is repeated or skipped",
                )
        if state.get("samples") != self.spec.plan(state["epoch"]).total:
            raise ConveyorError(
                "the saved loader state is for a different dataset version",
                "resume with the version the run was trained on",
            )
        self.epoch, self.start, self.consumed = state["epoch"], state["next_global_batch"], 0
