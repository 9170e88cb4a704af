"""The local object store: content addressing, write-once, verification on read."""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

import pytest

from conveyor.core.errors import ObjectCorruptedError, ObjectNotFoundError
from conveyor.storage.objects import ObjectStore


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    s = ObjectStore(str(tmp_path / "objects"))
    s.create()
    return s


def test_bytes_come_back_under_their_sha256(store: ObjectStore) -> None:
    data = os.urandom(10_000)
    stored = store.put_bytes(data)
    assert stored.digest == hashlib.sha256(data).hexdigest()
    assert stored.size == len(data)
    assert store.get_bytes(stored.digest) == data
    assert Path(store.path_of(stored.digest)).is_file()


def test_storing_the_same_bytes_twice_keeps_one_copy(store: ObjectStore) -> None:
    first = store.put_bytes(b"same")
    second = store.put_bytes(b"same")
    assert first == second
    assert list(store.digests()) == [first.digest]


def test_files_and_streams_are_stored_without_loading_them_whole(
    store: ObjectStore, tmp_path: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    from_file = store.put_file(path)
    from_stream = store.put_stream(io.BytesIO(data))
    assert from_file == from_stream
    assert store.get_bytes(from_file.digest) == data


def test_a_flipped_byte_is_caught_on_read(store: ObjectStore) -> None:
    stored = store.put_bytes(b"precious weights")
    path = Path(store.path_of(stored.digest))
    path.write_bytes(b"precious weighTs")
    with pytest.raises(ObjectCorruptedError, match=r"corrupt"):
        store.get_bytes(stored.digest)


def test_a_missing_object_says_so(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFoundError, match=r"not in"):
        store.get_bytes("0" * 64)


def test_a_malformed_address_is_refused(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFoundError, match=r"not a sha256"):
        store.get_bytes("../../etc/passwd")


def test_temporaries_left_by_a_killed_writer_are_cleaned(store: ObjectStore) -> None:
    tmp = Path(store.root) / "tmp"
    tmp.mkdir(exist_ok=True)
    stale, fresh = tmp / "a.part", tmp / "b.part"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert store.remove_stale_temporaries(older_than_s=3600) == 1
    assert not stale.exists()
    assert fresh.exists()  # a writer may still be using it
    assert list(store.digests()) == []
