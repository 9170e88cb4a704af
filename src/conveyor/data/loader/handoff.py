"""Batches from DataLoader workers to the training process through reused shared memory.

torch hands each batch tensor over in fresh shared memory: the worker faults in and
zeroes every page (about 15 ms for a 12.6 MB batch on a VM), and the training process
maps it again. Here each worker keeps a few slots, one memfd each, that it fills batch
after batch. The training process maps a slot once, on the first batch it brings; the
tensors it builds are views of it. When the last of them is freed, the slot's first
byte is set back to 0 and the worker may fill it again. A worker never waits for a
slot: when every slot is still held (a loop that keeps its batches), it falls back to
torch's own shared memory. Linux only (memfd); elsewhere torch's path is used.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
import uuid
import weakref
from dataclasses import dataclass
from multiprocessing.reduction import DupFd
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

from conveyor.data.loader.decode import Layout, images_to_tensor

MAX_SLOTS = 6  # prefetch_factor (2) in the queue, one being filled, some held by the loop
_HEADER = mmap.PAGESIZE  # byte 0: 1 while the training process holds the slot
_ALIGN = 64


SHARED = "__conveyor_shared__"  # the batch key a SharedBatch travels under


@dataclass(frozen=True)
class Field:
    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    dims: tuple[int, ...] | None = None  # permuted to these dims on arrival (CHW)


class SharedBatch:
    """What a worker sends in place of a batch's arrays: where they are in which slot."""

    def __init__(
        self, key: tuple[str, int, int], size: int, fields: tuple[Field, ...], fd: Any
    ) -> None:
        self.key, self.size, self.fields, self.fd = key, size, fields, fd

    def __reduce__(self) -> tuple[Any, ...]:
        fd = None if self.fd is None else DupFd(self.fd)
        return (_arrived, (self.key, self.size, self.fields, fd))

    def pin_memory(self) -> dict[str, torch.Tensor]:
        """DataLoader's pin thread: a pinned copy, and the slot is free again at once."""
        return {k: v.pin_memory() for k, v in arrays(self).items()}


class _Slot:
    def __init__(self, capacity: int, generation: int) -> None:
        self.fd = os.memfd_create("conveyor-batch", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, _HEADER + capacity)
        self.map = mmap.mmap(self.fd, _HEADER + capacity)
        self.capacity, self.generation, self.sent = capacity, generation, False

    def close(self) -> None:
        with contextlib.suppress(BufferError):  # a view still alive keeps the map until it goes
            self.map.close()
        os.close(self.fd)


Wanted = tuple[str, tuple[int, ...], "np.dtype[Any]", tuple[int, ...] | None]


class Slots:
    """One worker's slots."""

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex
        self.slots: list[_Slot] = []

    def reserve(self, wanted: list[Wanted]) -> tuple[SharedBatch, list[np.ndarray]] | None:
        """Writable arrays in a free slot for (name, shape, dtype, dims) each, and the
        SharedBatch to send once they are filled; None when no slot is free."""
        fields, size = [], 0
        for name, shape, dtype, dims in wanted:
            fields.append(Field(name, dtype.str, shape, size, dims))
            size += -(-int(np.prod(shape, dtype=np.int64)) * dtype.itemsize // _ALIGN) * _ALIGN
        index = self._free(size)
        if index is None:
            return None
        slot = self.slots[index]
        slot.map[0] = 1
        views = [
            np.ndarray(f.shape, np.dtype(f.dtype), slot.map, _HEADER + f.offset) for f in fields
        ]
        fd = None if slot.sent else slot.fd
        slot.sent = True
        key = (self.token, index, slot.generation)
        return SharedBatch(key, slot.capacity, tuple(fields), fd), views

    def _free(self, size: int) -> int | None:
        for i, slot in enumerate(self.slots):
            if slot.map[0] == 0 and slot.capacity >= size:
                return i
        for i, slot in enumerate(self.slots):  # free but too small: replace it
            if slot.map[0] == 0:
                slot.close()
                self.slots[i] = _Slot(_capacity(size), slot.generation + 1)
                return i
        if len(self.slots) < MAX_SLOTS:
            self.slots.append(_Slot(_capacity(size), 0))
            return len(self.slots) - 1
        return None


def _capacity(size: int) -> int:
    """Whole pages; batches of one loader have one size (a last partial batch is smaller)."""
    return -(-size // mmap.PAGESIZE) * mmap.PAGESIZE


Arrays = list[tuple[str, np.ndarray | list[np.ndarray]]]  # numbers, or same-sized images


def to_batch(columns: Arrays, layout: Layout) -> dict[str, Any]:
    """A batch's arrays, packed into a slot in a DataLoader worker, as tensors elsewhere
    (and in a worker whose slots are all held)."""
    slots = worker_slots() if get_worker_info() is not None else None
    if slots is not None:
        wanted: list[Wanted] = []
        for name, values in columns:
            if isinstance(values, list):  # decoded images: uint8 HWC, stacked
                chw = (0, 3, 1, 2) if layout == "CHW" else None
                wanted.append((name, (len(values), *values[0].shape), np.dtype(np.uint8), chw))
            else:
                wanted.append((name, values.shape, values.dtype, None))
        reserved = slots.reserve(wanted)
        if reserved is not None:
            shared, views = reserved
            try:
                for (_, values), view in zip(columns, views, strict=True):
                    if isinstance(values, list):
                        np.stack(values, out=view)
                    else:
                        view[...] = values
            except BaseException:
                slots.slots[shared.key[1]].map[0] = 0  # never sent: free again
                raise
            return {SHARED: shared}
    return {
        name: images_to_tensor(values, layout)
        if isinstance(values, list)
        else torch.from_numpy(np.ascontiguousarray(values))
        for name, values in columns
    }


_worker_slots: Slots | None = None


def worker_slots() -> Slots | None:
    """This worker process's slots (None where memfd does not exist)."""
    global _worker_slots
    if _worker_slots is None and hasattr(os, "memfd_create"):
        _worker_slots = Slots()
    return _worker_slots


def _arrived(key: tuple[str, int, int], size: int, fields: tuple[Field, ...], fd: Any) -> Any:
    """Unpickled in the training process: map a slot it has not seen yet right away,
    while its worker is sure to be alive (DataLoader stops a worker once it has sent its
    last batch, and the slot's descriptor comes from that worker)."""
    if fd is not None:
        maps.add(key, fd.detach(), size)
    return SharedBatch(key, size, fields, None)


class _Maps:
    """The training process's view of every worker's slots, mapped once each."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # the pin thread maps slots too
        self.maps: dict[tuple[str, int], tuple[int, mmap.mmap]] = {}

    def add(self, key: tuple[str, int, int], fd: int, size: int) -> None:
        token, index, generation = key
        try:
            mapped = mmap.mmap(fd, _HEADER + size)
        finally:
            os.close(fd)
        with self.lock:
            self.maps[(token, index)] = (generation, mapped)

    def get(self, batch: SharedBatch) -> mmap.mmap:
        token, index, generation = batch.key
        with self.lock:
            known = self.maps.get((token, index))
        if known is None or known[0] != generation:
            raise RuntimeError(f"a batch arrived for a slot never mapped here: {batch.key}")
        return known[1]

    def forget(self, tokens: set[str]) -> None:
        """Drop the maps of these (finished) workers; batches still held keep theirs."""
        with self.lock:
            for key in [k for k in self.maps if k[0] in tokens]:
                del self.maps[key]


maps = _Maps()


def arrays(batch: SharedBatch) -> dict[str, torch.Tensor]:
    """Tensors viewing the slot; the slot is released when the last of them is freed.

    Each tensor holds the very array made here (numpy would collapse a view of a view
    onto the mmap, so a finalizer on a shared parent array could fire too early).
    """
    mapped = maps.get(batch)
    hold = _Hold(mapped, len(batch.fields))
    out = {}
    for field in batch.fields:
        array = np.ndarray(field.shape, np.dtype(field.dtype), mapped, _HEADER + field.offset)
        weakref.finalize(array, hold.drop)
        tensor = torch.from_numpy(array)
        out[field.name] = tensor if field.dims is None else tensor.permute(field.dims)
    return out


def opened(batch: dict[str, Any], tokens: set[str]) -> dict[str, Any]:
    """A batch as the training loop sees it: a SharedBatch's arrays as tensors.
    `tokens` collects the workers seen, for `maps.forget` when the epoch is over."""
    shared = batch.pop(SHARED, None)
    if isinstance(shared, SharedBatch):
        tokens.add(shared.key[0])
        shared = arrays(shared)
    if shared is not None:
        batch.update(shared)
    return batch


class _Hold:
    """Counts a slot's live arrays; the last one gone hands the slot back to its worker."""

    def __init__(self, mapped: mmap.mmap, count: int) -> None:
        self.mapped, self.count, self.lock = mapped, count, threading.Lock()

    def drop(self) -> None:
        with self.lock:
            self.count -= 1
            if self.count == 0 and not self.mapped.closed:
                self.mapped[0] = 0
