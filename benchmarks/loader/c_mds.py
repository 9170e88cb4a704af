"""Contender: MosaicML Streaming (MDSWriter once, untimed; StreamingDataset, decode in
__getitem__ with Pillow, HWC), its recommended defaults (py1e shuffle). With --s3 the
shards sit in a bucket and stream into an empty local cache (`remote=s3://...`)."""

from __future__ import annotations

import os
import shutil

import torch
from common import args, bucket, decode_rgb, files, run
from streaming import MDSWriter, StreamingDataset
from torch.utils.data import DataLoader


class Decoded(StreamingDataset):  # type: ignore[misc]
    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        sample = super().__getitem__(i)
        return decode_rgb(sample["image"]), int(sample["id"])


def main() -> None:
    a = args()
    found = files(a.data)
    out = a.work / "mds"
    if not (out / "index.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        columns = {"image": "bytes", "label": "int", "id": "int"}
        with MDSWriter(out=str(out), columns=columns, compression="zstd") as writer:
            for i, (path, label) in enumerate(found):
                writer.write({"image": path.read_bytes(), "label": label, "id": i})
    if a.prepare:
        return  # run.py uploads the folder for --s3
    local = a.work / "mds-local"
    shutil.rmtree(local, ignore_errors=True)
    where = {"local": str(out)}
    if a.s3:
        os.environ["S3_ENDPOINT_URL"] = a.s3
        where = {"remote": f"s3://{bucket(a, 'mds')}", "local": str(local)}
    dataset = Decoded(**where, shuffle=True, shuffle_seed=0, batch_size=a.batch)
    loader = DataLoader(dataset, batch_size=a.batch, num_workers=a.workers)
    run(((images, ids.tolist()) for images, ids in loader), len(found))


if __name__ == "__main__":
    main()
