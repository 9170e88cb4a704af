"""Contender: LitData (optimize once, untimed; StreamingDataset + StreamingDataLoader,
decode in __getitem__ with Pillow, HWC). With --s3 the chunks sit in a bucket and
stream into an empty cache folder (boto3 with the server's endpoint_url)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from common import args, bucket, decode_rgb, files, run
from litdata import StreamingDataLoader, StreamingDataset, optimize


def to_sample(item: tuple[str, int, int]) -> dict[str, object]:
    path, label, index = item
    return {"image": Path(path).read_bytes(), "label": label, "id": index}


class Decoded(StreamingDataset):  # type: ignore[misc]
    def __getitem__(self, i: object) -> tuple[torch.Tensor, int]:
        sample = super().__getitem__(i)
        return decode_rgb(sample["image"]), int(sample["id"])


def main() -> None:
    a = args()
    found = files(a.data)
    items = [(str(p), label, i) for i, (p, label) in enumerate(found)]
    out = a.work / "litdata"
    if not (out / "index.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        optimize(
            fn=to_sample,
            inputs=items,
            output_dir=str(out),
            chunk_bytes="64MB",
            num_workers=1,
        )
    if a.prepare:
        return  # run.py uploads the folder for --s3
    if a.s3:
        from litdata.streaming import downloader

        # its chunk fetcher (obstore) refuses plain http unless told; a local server has no TLS
        downloader._OBSTORE_CLIENT_OPTIONS["allow_http"] = True
        cache = a.work / "litdata-cache"
        shutil.rmtree(cache, ignore_errors=True)
        dataset = Decoded(
            f"s3://{bucket(a, 'litdata')}",
            shuffle=True,
            seed=0,
            cache_dir=str(cache),
            storage_options={"endpoint_url": a.s3},
        )
    else:
        dataset = Decoded(str(out), shuffle=True, seed=0)
    loader = StreamingDataLoader(dataset, batch_size=a.batch, num_workers=a.workers)
    run(((images, ids.tolist()) for images, ids in loader), len(found))


if __name__ == "__main__":
    main()
