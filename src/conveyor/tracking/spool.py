"""The local spool: run events waiting for the metadata store (format: SPOOL.md).

When the store is unreachable, or a run ends before its last points are delivered, the
writer appends them here instead of dropping them. One file per writer, locked (flock)
while that writer's process lives; a file nobody holds is a leftover that any later
process may deliver and delete. Delivery is idempotent, so a file delivered twice, or
lines duplicated by a crash, never duplicate data.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

FORMAT = "conveyor-run-spool"
VERSION = 1
SUFFIX = ".spool"

# One event: a tuple whose first item says what it is (see SPOOL.md for each kind).
Event = tuple[Any, ...]


class Spool:
    """An append-only spool file for one run, created on the first append."""

    def __init__(self, folder: Path, run_id: str) -> None:
        self.folder = folder
        self.run_id = run_id
        self.path = folder / f"{run_id}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        self._file: IO[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def exists(self) -> bool:
        return self._file is not None

    def append(self, events: Sequence[Event]) -> None:
        """Append events durably (flush + fsync) before returning."""
        if not events:
            return
        with self._lock:
            if self._file is None:
                self._file = self._create()
            data = b"".join(_encode(e) for e in events)
            self._file.write(data)
            self._file.flush()
            os.fsync(self._file.fileno())

    def events(self) -> list[Event]:
        """Everything appended so far (read back from the file)."""
        return read_events(self.path)[1] if self._file is not None else []

    def remove(self) -> None:
        """Delete the file once its events are delivered, and release the lock."""
        with self._lock:
            if self._file is not None:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                self._file.close()
                self._file = None

    def release(self) -> None:
        """Close the file but keep it: a later process delivers it."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _create(self) -> IO[bytes]:
        self.folder.mkdir(parents=True, exist_ok=True)
        # Locked and given its header under a temporary name, so a file with the spool
        # suffix is always whole and always locked while its writer lives.
        tmp = self.path.with_suffix(".tmp")
        f = tmp.open("ab")
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        header = {
            "format": FORMAT,
            "version": VERSION,
            "run": self.run_id,
            "pid": os.getpid(),
            "host": platform.node(),
            "created_at": datetime.now(UTC).isoformat(),
        }
        f.write(json.dumps(header).encode() + b"\n")
        f.flush()
        tmp.rename(self.path)
        return f


@dataclass(frozen=True)
class Leftover:
    """A spool file whose writer is gone, claimed (locked) by this process."""

    path: Path
    run_id: str
    events: list[Event]


def _encode(event: Event) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


def read_events(path: Path) -> tuple[dict[str, Any], list[Event]]:
    """The header and events of a spool file; a torn last line (a crash mid-write) is skipped."""
    lines = path.read_bytes().split(b"\n")
    header: dict[str, Any] = json.loads(lines[0]) if lines and lines[0] else {}
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise ValueError(f"{path} is not a version {VERSION} Conveyor spool file")
    events: list[Event] = []
    for line in lines[1:]:
        if not line:
            continue
        try:
            events.append(tuple(json.loads(line)))
        except ValueError:
            break  # only the last line can be torn; nothing valid follows it
    return header, events


@contextlib.contextmanager
def claim_leftovers(folder: Path, run_id: str | None = None) -> Iterator[list[Leftover]]:
    """Lock and read every spool file in `folder` whose writer has gone (optionally one run's).

    Files held by a live writer are skipped. The caller deletes each file it delivers.
    """
    held: list[IO[bytes]] = []
    found: list[Leftover] = []
    try:
        for path in sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []:
            if run_id is not None and not path.name.startswith(f"{run_id}-"):
                continue
            try:
                f: IO[bytes] = path.open("rb")
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()  # its writer is alive and delivers it itself
                continue
            held.append(f)
            try:
                header, events = read_events(path)
            except (ValueError, FileNotFoundError):
                continue
            found.append(Leftover(path, str(header["run"]), events))
        yield found
    finally:
        for f in held:
            f.close()
