"""The object store against a local folder and a real S3-compatible server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conveyor import Workspace
from conveyor.core.errors import (
    ObjectCorruptedError,
    ObjectNotFoundError,
    ObjectStoreUnreachableError,
)
from conveyor.storage.objects import ObjectStore


def test_round_trip_and_dedupe(workspace: Workspace, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    a = workspace.put_object(data)
    b = workspace.put_object(data)
    assert a == b
    assert workspace.get_object(a.digest) == data
    assert list(workspace.objects.digests()) == [a.digest]

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 * 1024 * 1024))  # over s3fs's multipart threshold
    stored = workspace.put_object(big)
    assert workspace.get_object(stored.digest) == big.read_bytes()


def test_corruption_in_the_store_is_caught(workspace: Workspace) -> None:
    stored = workspace.put_object(b"the real bytes")
    path = workspace.objects.path_of(stored.digest)
    with workspace.objects.fs.open(path, "wb") as f:  # storage silently altered the bytes
        f.write(b"other bytes")
    with pytest.raises(ObjectCorruptedError):
        workspace.get_object(stored.digest)


def test_missing_object(workspace: Workspace) -> None:
    with pytest.raises(ObjectNotFoundError):
        workspace.get_object("f" * 64)


def test_a_missing_bucket_is_a_clear_error(s3_endpoint: str) -> None:
    store = ObjectStore("s3://no-such-bucket/x", {"endpoint_url": s3_endpoint})
    with pytest.raises(ObjectStoreUnreachableError, match=r"does not exist"):
        store.check()


def test_an_unreachable_endpoint_is_a_clear_error() -> None:
    store = ObjectStore("s3://bucket/x", {"endpoint_url": "http://127.0.0.1:1"})
    with pytest.raises(ObjectStoreUnreachableError, match=r"cannot reach"):
        store.check()
