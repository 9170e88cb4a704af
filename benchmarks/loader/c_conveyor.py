"""Contender: Conveyor's loader over a dataset version (decodes in workers; CHW uint8).

Ingest (untimed) into a workspace under --work, local or, with --s3, objects in a bucket
and an empty shard cache (cold).
"""

from __future__ import annotations

import shutil

from common import args, files, run

from conveyor import Workspace


def main() -> None:
    a = args()
    expected = len(files(a.data))
    root = a.work / ("ws-s3" if a.s3 else "ws")
    if a.prepare:  # untimed, in its own process so its memory is not counted below
        if a.s3:
            import boto3

            boto3.client("s3", endpoint_url=a.s3).create_bucket(Bucket="bench-conveyor")
            shutil.rmtree(root, ignore_errors=True)
            ws = Workspace.init(
                root, objects="s3://bench-conveyor/ws", objects_options={"endpoint_url": a.s3}
            )
        else:
            ws = Workspace.open(root) if root.exists() else Workspace.init(root)
        ws.datasets.ingest(a.data, "bench")
        return
    ws = Workspace.open(root)
    cache = a.work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    loader = ws.datasets.get("bench").loader(
        batch_size=a.batch,
        shuffle=True,
        seed=0,
        num_workers=a.workers,
        columns=["image", "label"],
        image_layout="CHW",
        with_index=True,
        image_mode="RGB",
        cache_dir=cache if a.s3 else None,
    )
    run(((b["image"], b["index"].tolist()) for b in loader), expected)


if __name__ == "__main__":
    main()
