"""Ceilings: how fast this machine can merely read (and sha256) the input files.

    python ceilings.py --mode read|sha256 --kind images|csv --source PATH --out DIR

One thread, standard library only; the timed part lists the files, then reads each
whole (and, with --mode sha256, hashes it). Nothing is written: output bytes are 0.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from _common import Timer, contender_args, emit, list_images

BLOCK = 8 << 20


def consume(path: Path, hashing: bool) -> int:
    """Read path to the end, hashing it if asked; the number of bytes read."""
    size = 0
    digest = hashlib.sha256() if hashing else None
    with path.open("rb", buffering=0) as f:
        while block := f.read(BLOCK):
            size += len(block)
            if digest is not None:
                digest.update(block)
    if digest is not None:
        digest.hexdigest()
    return size


def main() -> None:
    args = contender_args(__doc__.splitlines()[0], modes=["read", "sha256"])
    hashing = args.mode == "sha256"
    with Timer() as timer:
        if args.kind == "images":
            paths = [p for p, _label in list_images(args.source)]
        else:
            paths = [args.source]
        read = sum(consume(p, hashing) for p in paths)
    emit(
        {
            "contender": f"ceiling-{args.mode}",
            "kind": args.kind,
            "seconds": timer.seconds,
            "items": len(paths),
            "input_bytes_read": read,
            "output_bytes": 0,
        }
    )


if __name__ == "__main__":
    main()
