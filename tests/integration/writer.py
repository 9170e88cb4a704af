"""A process that writes objects and their index rows into a workspace until told to stop.

Used by the concurrency and kill -9 tests: `python writer.py WORKSPACE COUNT SEED`.
It prints one line per finished write so the test knows how far it got.
"""

from __future__ import annotations

import random
import sys

from conveyor import Workspace


def main() -> None:
    root, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    with Workspace.open(root) as ws:
        for i in range(count):
            size = rng.choice([10, 1_000, 100_000, 2_000_000])
            data = rng.randbytes(size)
            stored = ws.put_object(data, media_type=f"test/{seed}-{i}")
            print(stored.digest, flush=True)


if __name__ == "__main__":
    main()
