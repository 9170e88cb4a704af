"""The streaming loader against real stores: local folder and S3 (through the cache)."""

from __future__ import annotations

import io
import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conveyor import Workspace
from conveyor.core.errors import ConveyorError, ObjectCorruptedError, ObjectStoreUnreachableError
from conveyor.data.loader.cache import ShardCache
from conveyor.storage.objects import ObjectStore
from tests.datagen import csv_file, image_folder

DDP_WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.fixture
def pics(workspace: Workspace, tmp_path: Path) -> Workspace:
    image_folder(tmp_path / "imgs", 1500, classes=3, size=24)
    workspace.datasets.ingest(tmp_path / "imgs", "pics", shard_bytes=256 * 1024)
    return workspace


def loader_kwargs(tmp_path: Path, **extra: object) -> dict[str, object]:
    return {"cache_dir": tmp_path / "cache", "with_index": True, **extra}


def test_an_epoch_gives_every_image_once_decoded(pics: Workspace, tmp_path: Path) -> None:
    version = pics.datasets.get("pics")
    table = version.to_arrow(columns=["image", "label"])
    loader = version.loader(batch_size=100, image_layout="CHW", **loader_kwargs(tmp_path))
    seen = []
    for batch in loader:
        assert batch["image"].dtype == torch.uint8 and batch["image"].shape[1:] == (1, 24, 24)
        assert batch["label"].dtype == torch.int64
        for index, image, label in zip(batch["index"], batch["image"], batch["label"], strict=True):
            original = np.array(Image.open(io.BytesIO(table["image"][int(index)].as_py())))
            assert np.array_equal(image[0].numpy(), original)
            assert version.classes[int(label)] == table["label"][int(index)].as_py()
            seen.append(int(index))
    assert sorted(seen) == list(range(version.rows))
    assert len(loader) == 15


def test_workers_change_nothing_but_speed(pics: Workspace, tmp_path: Path) -> None:
    version = pics.datasets.get("pics")
    orders = []
    for workers in (0, 2):
        loader = version.loader(
            batch_size=64, num_workers=workers, seed=3, columns=["label"], **loader_kwargs(tmp_path)
        )
        orders.append([i for b in loader for i in b["index"].tolist()])
    assert orders[0] == orders[1]
    assert sorted(orders[0]) == list(range(version.rows))


@pytest.mark.parametrize("layout", ["HWC", "CHW"])
def test_batches_a_loop_keeps_stay_intact(pics: Workspace, tmp_path: Path, layout: str) -> None:
    # Workers reuse a few shared-memory slots for their batches. A loop that keeps every
    # batch (more than the slots) must still see each one as it was handed out.
    version = pics.datasets.get("pics")
    kwargs = loader_kwargs(tmp_path, batch_size=32, seed=5, image_layout=layout)
    expected = {
        int(i): image.clone()
        for batch in version.loader(num_workers=0, **kwargs)
        for i, image in zip(batch["index"], batch["image"], strict=True)
    }
    kept = list(version.loader(num_workers=2, **kwargs))
    assert len(kept) == 47
    for batch in kept:
        assert batch["image"].shape[1:] == ((1, 24, 24) if layout == "CHW" else (24, 24, 1))
        for i, image in zip(batch["index"], batch["image"], strict=True):
            assert torch.equal(image, expected[int(i)])
    # and one that drops each batch at once gets the same images through reused slots
    for batch in version.loader(num_workers=2, **kwargs):
        for i, image in zip(batch["index"], batch["image"], strict=True):
            assert torch.equal(image, expected[int(i)])


def test_each_row_group_is_read_once_per_epoch(
    pics: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # batches straddle windows (8, 16, 16... row groups here); none may cost a second read
    from conveyor.data import shards
    from conveyor.data.loader import stream

    monkeypatch.setattr(shards, "ROW_GROUP_BYTES", 8 * 1024)
    pics.datasets.ingest(tmp_path / "imgs", "small-groups", shard_bytes=128 * 1024)
    reads: list[int] = []
    keep = stream._BlockReader._keep
    monkeypatch.setattr(
        stream._BlockReader, "_keep", lambda self, b, table: reads.append(b) or keep(self, b, table)
    )
    version = pics.datasets.get("small-groups")
    loader = version.loader(batch_size=96, window=16, columns=["label"], **loader_kwargs(tmp_path))
    assert sum(len(b["index"]) for b in loader) == version.rows
    assert len(set(reads)) > 40 and sorted(reads) == sorted(set(reads))


def test_only_the_loader_workers_keep_freed_memory(
    pics: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the workers are forked, so they inherit the recorder; each writes its pid
    from conveyor.data.loader import stream

    tuned = tmp_path / "tuned"
    tuned.mkdir()
    monkeypatch.setattr(stream, "keep_freed_memory", lambda: (tuned / str(os.getpid())).touch())
    loader = pics.datasets.get("pics").loader(
        batch_size=100, num_workers=2, columns=["label"], **loader_kwargs(tmp_path)
    )
    assert sum(len(b["index"]) for b in loader) == 1500
    pids = {int(p.name) for p in tuned.iterdir()}
    assert len(pids) == 2 and os.getpid() not in pids


def test_epochs_reshuffle(pics: Workspace, tmp_path: Path) -> None:
    loader = pics.datasets.get("pics").loader(
        batch_size=500, columns=["label"], **loader_kwargs(tmp_path)
    )
    first = [i for b in loader for i in b["index"].tolist()]
    second = [i for b in loader for i in b["index"].tolist()]
    assert sorted(first) == sorted(second) and first != second


def test_stop_at_random_steps_and_resume(pics: Workspace, tmp_path: Path) -> None:
    version = pics.datasets.get("pics")
    rng = random.Random(11)
    for _ in range(3):
        loader = version.loader(batch_size=50, columns=["label"], **loader_kwargs(tmp_path))
        seen: list[int] = []
        stop = rng.randint(1, len(loader) - 1)
        for step, batch in enumerate(loader):
            seen += batch["index"].tolist()
            if step + 1 == stop:
                break
        state = json.loads(json.dumps(loader.state_dict()))  # survives a checkpoint file
        resumed = version.loader(
            batch_size=50, columns=["label"], num_workers=2, **loader_kwargs(tmp_path)
        )
        resumed.load_state_dict(state)
        seen += [i for b in resumed for i in b["index"].tolist()]
        assert sorted(seen) == list(range(version.rows))


def test_resume_with_a_different_world_size(pics: Workspace, tmp_path: Path) -> None:
    version = pics.datasets.get("pics")
    kwargs = {"batch_size": 40, "columns": ["label"], **loader_kwargs(tmp_path)}
    ranks = [version.loader(rank=r, world_size=2, **kwargs) for r in range(2)]  # type: ignore[arg-type]
    seen: list[int] = []
    iterators = [iter(r) for r in ranks]
    for _ in range(7):  # lockstep, as DDP runs
        for it in iterators:
            seen += next(it)["index"].tolist()
    state = ranks[0].state_dict()
    assert state == ranks[1].state_dict()
    for r in range(3):  # now three ranks
        loader = version.loader(rank=r, world_size=3, **kwargs)  # type: ignore[arg-type]
        loader.load_state_dict(state)
        seen += [i for b in loader for i in b["index"].tolist()]
    assert sorted(seen) == list(range(version.rows))


def test_two_ranks_two_workers_with_torch_distributed(pics: Workspace, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    outs = [tmp_path / f"rank{r}.json" for r in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(DDP_WORKER), str(r), "2", port, str(pics.root), str(outs[r])],
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    parts = [json.loads(o.read_text()) for o in outs]
    assert not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == list(range(1500))


def test_a_dataset_larger_than_the_cache_still_trains(pics: Workspace, tmp_path: Path) -> None:
    version = pics.datasets.get("pics")
    limit = version.manifest.bytes // 3
    loader = version.loader(
        batch_size=100, columns=["label"], cache_limit_bytes=limit, **loader_kwargs(tmp_path)
    )
    seen = [i for b in loader for i in b["index"].tolist()]
    assert sorted(seen) == list(range(version.rows))
    cached = sum(p.stat().st_size for p in (tmp_path / "cache").glob("*/*") if len(p.name) == 64)
    biggest = max(s.bytes for s in version.shards())
    assert cached <= limit + biggest


def test_two_loaders_share_one_cache(pics: Workspace, tmp_path: Path) -> None:
    version = pics.datasets.get("pics")
    a = version.loader(batch_size=100, columns=["label"], seed=1, **loader_kwargs(tmp_path))
    b = version.loader(
        batch_size=100, columns=["label"], seed=2, num_workers=2, **loader_kwargs(tmp_path)
    )
    ia, ib = iter(a), iter(b)
    seen_a: list[int] = []
    seen_b: list[int] = []
    for batch_a, batch_b in zip(ia, ib, strict=True):  # interleaved over the same folder
        seen_a += batch_a["index"].tolist()
        seen_b += batch_b["index"].tolist()
    assert sorted(seen_a) == sorted(seen_b) == list(range(version.rows))


def test_a_corrupt_shard_is_a_clear_error(pics: Workspace, tmp_path: Path) -> None:
    version = pics.datasets.get("pics")
    digest = version.shards()[0].digest
    with pics.objects.fs.open(pics.objects.path_of(digest), "wb") as f:
        f.write(b"not the shard")
    loader = version.loader(batch_size=100, columns=["label"], **loader_kwargs(tmp_path))
    with pytest.raises(ObjectCorruptedError, match=digest[:12]):
        for _ in loader:
            pass


@pytest.mark.parametrize("cached", [True, False], ids=["cache", "in-place"])
def test_one_flipped_byte_inside_a_shard_is_caught_before_use(
    pics: Workspace, tmp_path: Path, cached: bool
) -> None:
    # in place: a local store's shards are memory-mapped and each row group is hashed
    # where it sits; through the cache, whole shards or ranges are hashed on the way in
    version = pics.datasets.get("pics")
    shard = version.shards()[0]
    path = pics.objects.path_of(shard.digest)
    data = bytearray(pics.objects.fs.cat_file(path))
    data[len(data) // 3] ^= 0xFF  # same size: only the hashes can tell
    with pics.objects.fs.open(path, "wb") as f:
        f.write(bytes(data))
    kwargs = loader_kwargs(tmp_path)
    if not cached:
        kwargs["cache_dir"] = None if pics.objects.is_local else tmp_path / "another-cache"
    loader = version.loader(batch_size=100, columns=["image"], **kwargs)
    with pytest.raises(ObjectCorruptedError, match=shard.digest[:12]):
        for _ in loader:
            pass


def test_tabular_columns_come_out_as_tensors(workspace: Workspace, tmp_path: Path) -> None:
    workspace.datasets.ingest(csv_file(tmp_path / "t.csv", 300), "t")
    batch = next(
        iter(
            workspace.datasets.get("t").loader(
                batch_size=300, shuffle=False, columns=["id", "x", "city"]
            )
        )
    )
    assert batch["id"].dtype == torch.int64 and batch["id"].tolist() == list(range(300))
    assert batch["x"].dtype == torch.float32
    assert len(batch["city"]) == 300


def test_bad_arguments(pics: Workspace) -> None:
    version = pics.datasets.get("pics")
    with pytest.raises(ConveyorError, match="batch_size"):
        version.loader(batch_size=0)
    with pytest.raises(ConveyorError, match="no column"):
        version.loader(batch_size=8, columns=["nope"])
    loader = version.loader(batch_size=8, seed=1)
    with pytest.raises(ConveyorError, match="seed"):
        loader.load_state_dict({**version.loader(batch_size=8).state_dict()})


class FlakyStore(ObjectStore):
    """A real local store whose first reads fail as a flaky network would."""

    failures = 2

    def fetch_to(self, digest: str, dest: Path) -> None:
        if FlakyStore.failures:
            FlakyStore.failures -= 1
            raise ObjectStoreUnreachableError("connection reset by peer", "retry")
        super().fetch_to(digest, dest)


def test_transient_store_errors_are_retried(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    ws.datasets.ingest(csv_file(tmp_path / "t.csv", 100), "t")
    digest = ws.datasets.get("t").shards()[0].digest
    cache = ShardCache(FlakyStore(ws.objects.url), tmp_path / "cache")
    path = cache.path(digest)
    assert FlakyStore.failures == 0
    assert path.read_bytes() == ws.objects.get_bytes(digest)
