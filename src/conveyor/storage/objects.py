"""Content-addressed, write-once object storage over a local folder or any fsspec URL.

Layout and guarantees are specified in OBJECTS.md beside this file. In short: an object
lives at `sha256/<first two hex>/<full hex digest>`, it only ever appears there whole
(local: temporary file, fsync, rename; object stores: a single PUT or a completed
multipart upload, both atomic), and every read checks the bytes against the address.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import fsspec

from conveyor.core.errors import (
    InvalidURLError,
    MissingExtraError,
    ObjectCorruptedError,
    ObjectNotFoundError,
    ObjectStoreUnreachableError,
)

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure"}


@dataclass(frozen=True)
class StoredObject:
    """What a put returns: the content address and the size in bytes."""

    digest: str
    size: int


class ObjectStore:
    """Write-once bytes addressed by their sha256."""

    def __init__(self, url: str, options: dict[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        protocol, path = fsspec.core.split_protocol(self.url)
        self.protocol = protocol or "file"
        self.is_local = self.protocol in ("file", "local")
        self.options = dict(options or {})  # as given, so worker processes can reopen the store
        options = dict(self.options)
        if self.protocol in _EXTRAS:
            # Another process may write any moment: never answer "exists?" from a stale listing.
            options.setdefault("use_listings_cache", False)
        try:
            if self.protocol in ("s3", "s3a") and not {"session", "profile"} & set(options):
                options["session"] = _shared_s3_session()
            self.fs = fsspec.filesystem(self.protocol, **options)
        except ImportError as e:
            extra = _EXTRAS.get(self.protocol, self.protocol)
            raise MissingExtraError(
                f"storage '{self.protocol}://' needs a package that is not installed ({e.name})",
                f"pip install 'conveyor[{extra}]'",
            ) from e
        except ValueError as e:
            raise InvalidURLError(
                f"unknown storage scheme in '{url}'", "use a path or s3://"
            ) from e
        self.root = path if self.is_local else self.fs._strip_protocol(self.url)

    # -- addresses -------------------------------------------------------------------------

    def path_of(self, digest: str) -> str:
        """Where the object with this digest lives inside the store."""
        if not _DIGEST.match(digest):
            raise ObjectNotFoundError(
                f"'{digest}' is not a sha256 content address", "pass 64 lowercase hex digits"
            )
        return f"{self.root}/sha256/{digest[:2]}/{digest}"

    # -- writing ---------------------------------------------------------------------------

    def put_bytes(self, data: bytes) -> StoredObject:
        """Store bytes; storing the same bytes again is free and returns the same address."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path_of(digest)
        with self._translate("write to"):
            if self._exists(target):
                return StoredObject(digest, len(data))
            if self.is_local:
                self._commit_local(target, [data])
            else:
                self.fs.pipe_file(target, data)
        return StoredObject(digest, len(data))

    def put_file(self, path: str | Path) -> StoredObject:
        """Store a local file without reading it all into memory."""
        digest, size = _hash_file(Path(path))
        target = self.path_of(digest)
        with self._translate("write to"):
            if self._exists(target):
                return StoredObject(digest, size)
            if self.is_local:
                with Path(path).open("rb") as f:
                    self._commit_local(target, iter(lambda: f.read(_CHUNK), b""))
            else:
                self.fs.put_file(str(path), target)
        return StoredObject(digest, size)

    def put_stream(self, stream: IO[bytes]) -> StoredObject:
        """Store a stream of unknown length by spooling it to a local temporary file first."""
        with tempfile.NamedTemporaryFile(prefix="conveyor-put-") as spool:
            for chunk in iter(lambda: stream.read(_CHUNK), b""):
                spool.write(chunk)
            spool.flush()
            return self.put_file(spool.name)

    def _commit_local(self, target: str, chunks: Any) -> None:
        """Write to a temporary name in the store, fsync, then rename into place."""
        tmp_dir = Path(self.root) / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / f"{uuid.uuid4().hex}.part"
        try:
            with tmp.open("wb") as f:
                for chunk in chunks:
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            final = Path(target)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp.replace(final)
            _fsync_dir(final.parent)
        finally:
            tmp.unlink(missing_ok=True)

    # -- reading ---------------------------------------------------------------------------

    def get_bytes(self, digest: str) -> bytes:
        """Read an object and check that its bytes still hash to its address."""
        target = self.path_of(digest)
        try:
            with self._translate("read from"):
                data: bytes = self.fs.cat_file(target)
        except FileNotFoundError as e:
            raise self._missing(digest) from e
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise self._corrupt(digest, f"its bytes hash to {actual[:12]}…")
        return data

    def fetch_to(self, digest: str, dest: Path) -> None:
        """Copy an object to a local file, streaming and verifying it; `dest` appears whole.

        Several processes may fetch the same object to the same place at once: each writes
        its own temporary file and renames it into place, and all copies are identical.
        """
        source = self.path_of(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f"{dest.name}.{uuid.uuid4().hex}.part")
        h = hashlib.sha256()
        try:
            with (
                self._translate("read from"),
                self.fs.open(source, "rb") as src,
                tmp.open("wb") as f,
            ):
                for chunk in iter(lambda: src.read(_CHUNK * 8), b""):
                    h.update(chunk)
                    f.write(chunk)
            if h.hexdigest() != digest:
                raise self._corrupt(digest, f"its bytes hash to {h.hexdigest()[:12]}…")
            tmp.replace(dest)
        except FileNotFoundError as e:
            raise self._missing(digest) from e
        finally:
            tmp.unlink(missing_ok=True)

    def read_range(self, digest: str, offset: int, length: int) -> bytes:
        """Bytes [offset, offset+length) of an object; the caller verifies them."""
        try:
            with self._translate("read from"):
                data: bytes = self.fs.cat_file(
                    self.path_of(digest), start=offset, end=offset + length
                )
        except FileNotFoundError as e:
            raise self._missing(digest) from e
        except ObjectStoreUnreachableError as e:
            if not isinstance(e.__cause__, OSError) or e.__cause__.errno != errno.EINVAL:
                raise
            # the store says the range is past the object's end
            raise self._corrupt(digest, "it is shorter than recorded") from e
        return data

    def exists(self, digest: str) -> bool:
        with self._translate("read from"):
            return self._exists(self.path_of(digest))

    def _exists(self, target: str) -> bool:
        if self.is_local:
            return Path(target).is_file()
        return bool(self.fs.exists(target))

    def digests(self) -> Iterator[str]:
        """Every content address present in the store (for verification and gc)."""
        with self._translate("list"):
            pattern = f"{self.root}/sha256/*/*"
            for found in sorted(self.fs.glob(pattern)):
                name = found.rsplit("/", 1)[-1]
                if _DIGEST.match(name):
                    yield name

    # -- upkeep ----------------------------------------------------------------------------

    def check(self) -> None:
        """Raise ObjectStoreUnreachableError unless the store can be listed."""
        with self._translate("reach"):
            if self.is_local:
                if not Path(self.root).is_dir():
                    raise FileNotFoundError(self.root)
            else:
                self.fs.ls(self.root.split("/", 1)[0], refresh=True)

    def create(self) -> None:
        """Make the local folder; buckets are never created implicitly."""
        if self.is_local:
            with self._translate("create"):
                Path(self.root).mkdir(parents=True, exist_ok=True)
        self.check()

    def remove_stale_temporaries(self, older_than_s: float = 3600.0) -> int:
        """Delete temporary files left by killed writers (local stores only)."""
        tmp_dir = Path(self.root) / "tmp"
        if not self.is_local or not tmp_dir.is_dir():
            return 0
        cutoff = time.time() - older_than_s
        removed = 0
        for part in tmp_dir.glob("*.part"):
            with contextlib.suppress(FileNotFoundError):
                if part.stat().st_mtime < cutoff:
                    part.unlink()
                    removed += 1
        return removed

    def _missing(self, digest: str) -> ObjectNotFoundError:
        return ObjectNotFoundError(
            f"object {digest[:12]}… is not in {self.url}",
            "check the workspace points at the right store",
        )

    def _corrupt(self, digest: str, why: str) -> ObjectCorruptedError:
        return ObjectCorruptedError(
            f"object {digest[:12]}… in {self.url} is corrupt ({why})",
            "restore it from a backup or recreate the data that wrote it",
        )

    @contextlib.contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        """Turn the many errors storage libraries raise into one the user can act on."""
        try:
            yield
        except FileNotFoundError as e:
            if action in ("read from",):
                raise
            raise ObjectStoreUnreachableError(
                f"cannot {action} object store {self.url}: it does not exist",
                "create the folder or bucket, or fix [objects] url in conveyor.toml",
            ) from e
        except PermissionError as e:
            raise ObjectStoreUnreachableError(
                f"cannot {action} object store {self.url}: permission denied",
                "check the credentials (AWS_* variables) or folder permissions",
            ) from e
        except (ObjectNotFoundError, ObjectCorruptedError):
            raise
        except OSError as e:
            raise ObjectStoreUnreachableError(
                f"cannot {action} object store {self.url}: {_reason(e)}",
                "check the URL, the endpoint and that the service is running",
            ) from e
        except Exception as e:  # botocore and friends raise their own types
            if type(e).__module__.split(".")[0] not in ("botocore", "aiobotocore", "s3fs"):
                raise
            raise ObjectStoreUnreachableError(
                f"cannot {action} object store {self.url}: {_reason(e)}",
                "check the URL, the endpoint and the credentials",
            ) from e


_S3_SESSION: Any = None


def _shared_s3_session() -> Any:
    """One botocore session per process tree, made before loader workers fork.

    Parsing botocore's service models takes ~0.2 s of CPU; a worker that inherits a
    session that already did it connects in a third of the time.
    """
    global _S3_SESSION
    if _S3_SESSION is None:
        from aiobotocore.session import AioSession  # type: ignore[import-untyped]

        _S3_SESSION = AioSession()
    return _S3_SESSION


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:200]


def _hash_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
