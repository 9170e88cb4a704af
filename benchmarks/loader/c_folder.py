"""Contender: a plain torch DataLoader over the folder of files, Pillow decode (HWC).

With --s3, the files are read one object at a time from a bucket (boto3), as a training
script that points a Dataset at s3:// would.
"""

from __future__ import annotations

from pathlib import Path

import torch
from common import args, decode_rgb, files, run
from torch.utils.data import DataLoader, Dataset


class Folder(Dataset[tuple[torch.Tensor, int, int]]):
    def __init__(self, items: list[tuple[str, int]], s3: str | None, bucket: str) -> None:
        self.items, self.s3, self.bucket, self.client = items, s3, bucket, None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        path, label = self.items[i]
        if self.s3:
            if self.client is None:
                import boto3

                self.client = boto3.client("s3", endpoint_url=self.s3)
            data = self.client.get_object(Bucket=self.bucket, Key=path)["Body"].read()
        else:
            data = Path(path).read_bytes()
        return decode_rgb(data), label, i


def main() -> None:
    a = args()
    found = files(a.data)
    bucket = "bench-folder"
    if a.s3:
        import boto3

        client = boto3.client("s3", endpoint_url=a.s3)
        if a.prepare:
            client.create_bucket(Bucket=bucket)
            for path, _ in found:
                client.upload_file(str(path), bucket, str(path.relative_to(a.data)))
            return
        items = [(str(p.relative_to(a.data)), label) for p, label in found]
    else:
        items = [(str(p), label) for p, label in found]
    if a.prepare:
        return
    loader = DataLoader(
        Folder(items, a.s3, bucket), batch_size=a.batch, shuffle=True, num_workers=a.workers
    )
    run(((images, ids.tolist()) for images, _, ids in loader), len(items))


if __name__ == "__main__":
    main()
