"""kill -9 a writer at random moments: no partial object, no dangling row, store still works."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from conveyor import Workspace
from conveyor.storage.tables import ObjectRecord

WRITER = Path(__file__).with_name("writer.py")


def test_kill_9_mid_write_leaves_the_workspace_consistent(workspace: Workspace) -> None:
    assert workspace.root is not None
    rng = random.Random(7)
    finished: set[str] = set()
    for round_ in range(6):
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(workspace.root), "100000", str(round_)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        for _ in range(rng.randint(1, 8)):  # let it finish a few writes...
            line = proc.stdout.readline()
            if line:
                finished.add(line.strip())
        time.sleep(rng.uniform(0.0, 0.4))  # ...then kill it somewhere inside the next ones
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    with workspace.meta.read() as s:
        indexed = set(s.scalars(select(ObjectRecord.digest)))
    assert finished <= indexed  # every write that returned is durable
    for digest in indexed:  # no dangling row: every indexed object is whole
        workspace.get_object(digest)
    for digest in workspace.objects.digests():  # nothing partial under a content address
        workspace.get_object(digest)

    workspace.objects.remove_stale_temporaries(older_than_s=0)
    again = workspace.put_object(b"still works")
    assert workspace.get_object(again.digest) == b"still works"
    assert all(part.ok for part in workspace.status())
