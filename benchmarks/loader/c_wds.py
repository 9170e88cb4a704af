"""Contender: WebDataset (tar shards written once, untimed; shard shuffle + a 1,000-sample
buffer, as its docs recommend; decode "rgb8" = Pillow, HWC uint8). With --s3 the tars
sit in a bucket and are read over HTTP into its `cache_dir`, as its docs suggest for
object stores (it has no s3:// opener of its own)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import webdataset as wds
from common import args, bucket, files, run


def main() -> None:
    a = args()
    found = files(a.data)
    out = a.work / "wds"
    if not (out / "done").exists():
        out.mkdir(parents=True, exist_ok=True)
        with wds.ShardWriter(
            str(out / "shard-%05d.tar"), maxcount=max(50, len(found) // 20), mtime=0
        ) as sink:
            for i, (path, label) in enumerate(found):
                sink.write({"__key__": f"{i:07d}", "png": path.read_bytes(), "cls": label})
        (out / "done").touch()
    names = sorted(p.name for p in Path(out).glob("shard-*.tar"))
    if a.prepare:
        return  # run.py uploads the folder for --s3
    urls = [str(out / n) for n in names]
    options: dict[str, object] = {}
    if a.s3:
        urls = [f"{a.s3}/{bucket(a, 'wds')}/{n}" for n in names]
        cache = a.work / "wds-cache"
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        options = {"cache_dir": str(cache)}
    dataset = (
        wds.WebDataset(urls, shardshuffle=True, nodesplitter=wds.split_by_node, seed=0, **options)
        .shuffle(1000)
        .decode("rgb8")
        .to_tuple("png", "__key__")
        .map_tuple(lambda im: torch.from_numpy(im.copy()), int)
        .batched(a.batch, partial=True)
    )
    loader = wds.WebLoader(dataset, batch_size=None, num_workers=a.workers)
    run(((images, list(ids)) for images, ids in loader), len(found))


if __name__ == "__main__":
    main()
