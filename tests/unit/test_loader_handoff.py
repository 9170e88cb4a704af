"""Worker-to-training handoff through reused shared-memory slots (one process plays both
sides here; the loader tests run it across real DataLoader workers)."""

from __future__ import annotations

import gc
import os
import pickle

import numpy as np
import pytest

from conveyor.data.loader import handoff

pytestmark = pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="memfd is Linux only")


def send(slots: handoff.Slots, images: np.ndarray, labels: np.ndarray) -> handoff.SharedBatch:
    wanted: list[handoff.Wanted] = [
        ("image", images.shape, images.dtype, (0, 3, 1, 2)),
        ("label", labels.shape, labels.dtype, None),
    ]
    reserved = slots.reserve(wanted)
    assert reserved is not None
    shared, (image_view, label_view) = reserved
    image_view[...] = images
    label_view[...] = labels
    arrived = pickle.loads(pickle.dumps(shared))  # as the DataLoader queue does
    assert isinstance(arrived, handoff.SharedBatch)
    return arrived


def test_a_slot_is_filled_again_only_after_every_tensor_of_its_batch_is_gone() -> None:
    slots = handoff.Slots()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (4, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(4, dtype=np.int64)
    first = handoff.arrays(send(slots, images, labels))
    assert np.array_equal(first["image"].numpy(), images.transpose(0, 3, 1, 2))  # CHW view
    assert first["label"].tolist() == [0, 1, 2, 3]
    image = first["image"][1]  # a view the loop keeps
    del first
    gc.collect()
    second = send(slots, images + 1, labels)
    assert second.key[1] == 1  # slot 0 is still held through `image`
    assert np.array_equal(image.numpy(), images[1].transpose(2, 0, 1))
    del image
    gc.collect()
    third = send(slots, images, labels)
    assert third.key[1] == 0 and third.fd is None  # reused, and mapped here already
    handoff.maps.forget({slots.token})


def test_with_every_slot_held_a_worker_falls_back_instead_of_waiting() -> None:
    slots = handoff.Slots()
    images = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    labels = np.zeros(2, dtype=np.int64)
    held = [handoff.arrays(send(slots, images, labels)) for _ in range(handoff.MAX_SLOTS)]
    wanted: list[handoff.Wanted] = [("image", images.shape, images.dtype, None)]
    assert slots.reserve(wanted) is None
    held.pop()
    gc.collect()
    assert slots.reserve(wanted) is not None
    handoff.maps.forget({slots.token})


def test_a_bigger_batch_gets_a_bigger_slot() -> None:
    slots = handoff.Slots()
    small = handoff.arrays(send(slots, np.ones((2, 4, 4, 3), np.uint8), np.zeros(2, np.int64)))
    del small
    gc.collect()
    big_images = np.full((64, 32, 32, 3), 7, np.uint8)
    big = handoff.arrays(send(slots, big_images, np.zeros(64, np.int64)))
    assert big["image"].shape == (64, 3, 32, 32) and int(big["image"].sum()) == 7 * big_images.size
    handoff.maps.forget({slots.token})
