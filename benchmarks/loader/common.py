"""Shared by every contender (standard library + numpy only): timing, CPU, memory, order."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np


def args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, required=True, help="folder of class subfolders")
    p.add_argument("--work", type=Path, required=True, help="scratch folder for this tool")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--s3", default=None, help="S3 endpoint: read cold from a bucket there")
    p.add_argument("--prepare", action="store_true", help="only write the tool's format")
    return p.parse_args()


def files(data: Path) -> list[tuple[Path, int]]:
    """The images in sorted order with their class index: sample id = position."""
    classes = sorted(p.name for p in data.iterdir() if p.is_dir())
    out = []
    for label, name in enumerate(classes):
        out += [(f, label) for f in sorted((data / name).iterdir())]
    return sorted(out, key=lambda fl: str(fl[0].relative_to(data)))


def entropy_ratio(ids: list[int]) -> float:
    """Entropy of |consecutive id differences| over that of a global permutation."""

    def entropy(seq: np.ndarray) -> float:
        _, counts = np.unique(np.abs(np.diff(seq)), return_counts=True)
        p = counts / counts.sum()
        return float(-(p * np.log2(p)).sum())

    order = np.asarray(ids)
    return entropy(order) / entropy(np.random.default_rng(0).permutation(len(order)))


def decode_rgb(data: bytes) -> Any:
    """Encoded image bytes to an HWC uint8 torch tensor with Pillow, as the rivals do."""
    import io

    import torch
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return torch.from_numpy(image.copy())


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + kids) / 1024


def measure(batches: Iterable[tuple[Any, list[int]]], expected: int) -> Iterator[None]:
    """Time one epoch; `batches` yields (images, sample ids). Emits the result line."""
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    first, ids, shape = None, [], None
    for images, batch_ids in batches:
        if first is None:
            first = time.perf_counter() - t0
            shape = [list(images.shape), str(images.dtype)]
        ids += batch_ids
        yield
    seconds = time.perf_counter() - t0
    if sorted(ids) != list(range(expected)):
        raise SystemExit(f"wrong samples: {len(ids)} seen, {len(set(ids))} distinct of {expected}")
    emit(
        seconds=seconds,
        images_per_s=len(ids) / seconds,
        first_batch_s=first,
        cpu_s_per_1000=1000 * (cpu_seconds() - cpu0) / len(ids),
        peak_rss_mb=peak_rss_mb(),
        shuffle_quality=entropy_ratio(ids),
        batch=shape,
    )


def run(batches: Iterable[tuple[Any, list[int]]], expected: int) -> None:
    for _ in measure(batches, expected):
        pass


def emit(**result: Any) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def bucket(a: argparse.Namespace, tool: str) -> str:
    """One bucket per tool and data set (the work folder's parent names the data set)."""
    return f"bench-{tool}-{a.work.parent.name}"
