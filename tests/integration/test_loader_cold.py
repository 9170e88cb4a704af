"""A cold start from S3: what the loader fetches, how often, and who fetches it first."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Workspace
from conveyor.core.errors import ObjectStoreUnreachableError
from conveyor.data.loader import cache as cache_module
from conveyor.data.loader.cache import ShardCache
from conveyor.data.loader.head_start import head_start
from conveyor.storage.objects import ObjectStore
from tests.datagen import image_folder


@pytest.fixture
def s3_pics(
    tmp_path: Path, s3_bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Workspace]:
    from conveyor.data import shards

    monkeypatch.setattr(shards, "ROW_GROUP_BYTES", 16 * 1024)  # ~20 row groups a shard
    ws = Workspace.init(
        tmp_path / "ws",
        objects=f"s3://{s3_bucket}/ws",
        objects_options={"endpoint_url": s3_endpoint},
    )
    image_folder(tmp_path / "imgs", 1200, classes=3, size=24)
    ws.datasets.ingest(tmp_path / "imgs", "pics", shard_bytes=256 * 1024)
    yield ws
    ws.close()


def test_workers_range_read_each_row_group_once(
    s3_pics: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every shard "too big to wait for": the first batches come from range reads, and the
    # training process and both workers share what any of them read
    monkeypatch.setattr(cache_module, "WAIT_FOR_SHARD_BYTES", 0)
    log = tmp_path / "ranges.log"
    read_range = ObjectStore.read_range

    def logged(self: ObjectStore, digest: str, offset: int, length: int) -> bytes:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)  # workers are forked
        os.write(fd, f"{digest} {offset} {length}\n".encode())
        os.close(fd)
        return read_range(self, digest, offset, length)

    monkeypatch.setattr(ObjectStore, "read_range", logged)
    version = s3_pics.datasets.get("pics")
    loader = version.loader(
        batch_size=64, num_workers=2, with_index=True, cache_dir=tmp_path / "cache"
    )
    seen = [i for batch in loader for i in batch["index"].tolist()]
    assert sorted(seen) == list(range(version.rows))
    reads = log.read_text().splitlines()
    assert len(reads) >= 8  # the first window's row groups at least
    assert len(set(reads)) == len(reads), "a range was read twice"
    assert not any((tmp_path / "cache" / "parts").glob("?" * 64)), "kept parts not dropped"


def test_a_kept_row_group_is_reused_and_a_damaged_one_read_again(
    s3_pics: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shard = s3_pics.datasets.get("pics").manifest.shards[0]
    assert shard.row_group_bytes is not None
    part = shard.row_group_bytes[1]
    cache = ShardCache(s3_pics.objects, tmp_path / "cache")
    expected = s3_pics.objects.get_bytes(shard.digest)[part.offset : part.offset + part.length]
    assert cache.part(shard.digest, part) == expected

    def unreachable(*_: object) -> bytes:
        raise ObjectStoreUnreachableError("connection refused", "start the store")

    with monkeypatch.context() as m:  # kept: no request at all
        m.setattr(ObjectStore, "read_range", unreachable)
        assert cache.part(shard.digest, part) == expected
    kept = tmp_path / "cache" / "parts" / part.sha256
    kept.write_bytes(b"torn" + expected[4:])
    assert cache.part(shard.digest, part) == expected  # the damage is noticed and repaired
    assert kept.read_bytes() == expected


@pytest.mark.parametrize("big", [False, True], ids=["small-shards", "big-shards"])
def test_the_training_process_fetches_the_first_batches_while_workers_start(
    s3_pics: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, big: bool
) -> None:
    if big:
        monkeypatch.setattr(cache_module, "WAIT_FOR_SHARD_BYTES", 0)
    version = s3_pics.datasets.get("pics")
    spec = version.loader(batch_size=64, num_workers=2, cache_dir=tmp_path / "cache").spec
    head_start(spec, epoch=0, start=0, workers=2).shutdown(wait=True)
    plan = spec.plan(0)
    needed = {w for b in spec.batches(0, 0)[:2] for w in plan.windows_at(b.positions)}
    blocks = [b for w in sorted(needed) for b in plan.blocks_of_window(w)]
    shards = list(dict.fromkeys(b.shard for b in blocks))
    cache = ShardCache(s3_pics.objects, tmp_path / "cache")
    parts = {p.name for p in (tmp_path / "cache" / "parts").glob("*") if len(p.name) == 64}
    if big:  # nothing whole; every footer and row group the first batches need, kept
        assert not any(cache.has(spec.shards[s]) for s in shards)
        wanted = {spec.ranges[s][0].sha256 for s in shards}  # type: ignore[index]
        wanted |= {spec.ranges[b.shard][1][b.group].sha256 for b in blocks}  # type: ignore[index]
        assert parts == wanted
    else:  # the first few shards whole, the rest of the first window's groups by range
        assert [cache.has(spec.shards[s]) for s in shards[:4]] == [True] * min(4, len(shards))
        later = {b.shard for b in blocks} - set(shards[:4])
        assert {spec.ranges[s][0].sha256 for s in later} <= parts  # type: ignore[index]
