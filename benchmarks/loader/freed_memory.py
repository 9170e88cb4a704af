"""Page faults per decoded image in a loader worker, with and without keeping freed memory.

A worker decodes a batch of 64 images of 256x256x3 (196 KB each), stacks them and frees
them. glibc's default may hand each image's pages back to the OS and fault them in again
for the next batch; `decode.keep_freed_memory()` (what every loader worker runs) keeps
them. Whether the default does hand them back depends on the allocator's state (its mmap
threshold rises after earlier frees, and a process that has loaded OpenCV and torch may
be past that already), so this is a figure to watch, not a test: each case runs in a
fresh process, in a plain interpreter and after importing the decoder as a worker does.

    .venv/bin/python benchmarks/loader/freed_memory.py
"""

from __future__ import annotations

import subprocess
import sys

CASE = """
import resource, sys
import numpy as np
if sys.argv[2] == "decoder":
    from conveyor.data.loader import decode
if sys.argv[1] == "kept":
    from conveyor.data.loader import decode
    assert decode.keep_freed_memory()
def batch():
    images = [np.ones((256, 256, 3), np.uint8) for _ in range(64)]
    del images
batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    batch()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / (20 * 64))
"""


def faults(mode: str, start: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CASE, mode, start], capture_output=True, text=True, check=True
    )
    return float(out.stdout)


def main() -> None:
    print("| process | glibc default | freed memory kept |")
    print("|---|--:|--:|")
    for start, label in (("plain", "plain interpreter"), ("decoder", "decoder imported")):
        default, kept = faults("default", start), faults("kept", start)
        print(f"| {label} | {default:.1f} faults/image | {kept:.1f} faults/image |")


if __name__ == "__main__":
    main()
