"""The epoch plan: exact partitioning, resumable at any batch, near-global shuffle."""

from __future__ import annotations

import random

import numpy as np
import pytest

from conveyor.data.loader.plan import EpochPlan, make_blocks, rank_batches


def plan(epoch: int = 0, shards: int = 12, rows: int = 300, seed: int = 0) -> EpochPlan:
    groups = [[rows] * 14 for _ in range(shards)]  # 12 shards x 14 row groups x 300 = 50,400
    return EpochPlan(tuple(make_blocks(groups)), seed=seed, epoch=epoch)


def entropy_of_steps(ids: np.ndarray) -> float:
    _, counts = np.unique(np.abs(np.diff(ids)), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def epoch_ids(p: EpochPlan, batch: int, world: int, workers: int, start: int = 0) -> list[int]:
    seen: list[int] = []
    for rank in range(world):
        batches = rank_batches(p.total, batch, rank, world, start)
        for worker in range(workers):
            for b in batches[worker::workers]:
                seen += p.ids_at(b.positions).tolist()
    return seen


@pytest.mark.parametrize(("world", "workers"), [(1, 1), (2, 2), (3, 2), (4, 1)])
def test_every_sample_once_per_epoch(world: int, workers: int) -> None:
    p = plan()
    seen = epoch_ids(p, 256, world, workers)
    assert sorted(seen) == list(range(p.total))


def test_pad_and_drop_give_every_rank_the_same_number_of_batches() -> None:
    p = plan(shards=1, rows=101)  # 1,414 samples: 6 batches of 256 minus change
    for even in ("pad", "drop"):
        counts = {len(rank_batches(p.total, 256, r, 4, even=even)) for r in range(4)}
        assert len(counts) == 1
    padded = [b for r in range(4) for b in rank_batches(p.total, 256, r, 4, even="pad")]
    assert all(len(b.positions) == 256 for b in padded)
    ids = np.concatenate([p.ids_at(b.positions) for b in padded])
    assert set(ids.tolist()) == set(range(p.total))


def test_same_seed_and_epoch_same_order_new_epoch_new_order() -> None:
    a = plan().ids_at(np.arange(1000))
    assert np.array_equal(a, plan().ids_at(np.arange(1000)))
    assert not np.array_equal(a, plan(epoch=1).ids_at(np.arange(1000)))
    assert not np.array_equal(a, plan(seed=1).ids_at(np.arange(1000)))


def test_shuffle_is_close_to_a_global_permutation() -> None:
    p = plan()
    ours = entropy_of_steps(p.ids_at(np.arange(p.total)))
    best = entropy_of_steps(np.random.default_rng(0).permutation(p.total))
    assert ours / best >= 0.99


def test_no_batch_comes_from_a_single_shard() -> None:
    p = plan()
    shard_of = np.repeat(np.arange(12), 14 * 300)
    for b in rank_batches(p.total, 64, 0, 1):
        assert len(set(shard_of[p.ids_at(b.positions)])) > 1


@pytest.mark.parametrize("seed", range(5))
def test_resuming_at_a_random_step_with_another_world_size(seed: int) -> None:
    """Stop after k steps on R ranks, resume on R' ranks: nothing repeated, nothing lost."""
    rng = random.Random(seed)
    p = plan()
    world, new_world = rng.choice([1, 2, 4]), rng.choice([1, 2, 3])
    per_rank = [rank_batches(p.total, 128, r, world) for r in range(world)]
    steps = rng.randint(1, min(len(b) for b in per_rank) - 1)
    done = [i for batches in per_rank for b in batches[:steps] for i in p.ids_at(b.positions)]
    resume_at = steps * world  # what every rank's state_dict says
    rest = epoch_ids(p, 128, new_world, rng.choice([1, 2]), start=resume_at)
    assert sorted(done + rest) == list(range(p.total))


def test_the_first_batch_needs_only_a_few_row_groups() -> None:
    """The ramp: the first batch waits for 8 row groups, not a whole window of 64."""
    p = plan()
    first = p.ids_at(rank_batches(p.total, 256, 0, 1)[0].positions)
    assert len(set((first // 300).tolist())) == 8  # blocks of 300 rows
    assert [len(p.blocks_of_window(w)) for w in range(5)] == [8, 16, 32, 64, 48]
