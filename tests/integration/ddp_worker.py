"""One rank of a 2-process gloo job: reads its part of an epoch with 2 loader workers.

python ddp_worker.py RANK WORLD PORT WORKSPACE OUT
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch.distributed as dist

from conveyor import Workspace


def main() -> None:
    rank, world, port, root, out = sys.argv[1:6]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=int(rank), world_size=int(world))
    with Workspace.open(root) as ws:
        loader = ws.datasets.get("pics").loader(
            batch_size=32, num_workers=2, with_index=True, columns=["label"]
        )
        ids = [i for batch in loader for i in batch["index"].tolist()]
    dist.barrier()
    dist.destroy_process_group()
    Path(out).write_text(json.dumps(ids))


if __name__ == "__main__":
    main()
