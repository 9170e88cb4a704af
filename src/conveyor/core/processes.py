"""Process pools for CPU-bound work (reading files, rewriting shards), with one clear error.

They use the spawn start method, so each worker imports the caller's main module afresh;
a script without an `if __name__ == "__main__":` guard then starts pools recursively and
Python's own message is a BrokenProcessPool traceback that names neither.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from multiprocessing import get_context

from conveyor.core.errors import ConveyorError


@contextmanager
def spawn_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A pool of `workers` spawned processes; a worker that dies is a ConveyorError."""
    try:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            yield pool
    except BrokenProcessPool as e:
        raise ConveyorError(
            "a worker process stopped before finishing its part",
            'in a script, put the call under `if __name__ == "__main__":` (workers start '
            "by importing the script); otherwise the machine may have run out of memory: "
            "pass workers=1",
        ) from e
