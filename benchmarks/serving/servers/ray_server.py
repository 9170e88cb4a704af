"""Ray Serve with @serve.batch: one replica on a local Ray (127.0.0.1), one CPU.

python ray_server.py MODEL WEIGHTS PORT
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep Ray on loopback
HERE = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, HERE)

import ray  # noqa: E402
import torch  # noqa: E402
from ray import serve  # noqa: E402
from starlette.requests import Request  # noqa: E402

name, weights, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
MAX_BATCH = int(os.environ.get("MAX_BATCH", "64"))
WAIT_S = float(os.environ.get("WAIT_MS", "2")) / 1000


@serve.deployment(max_ongoing_requests=256, ray_actor_options={"num_cpus": 1})
class Model:
    def __init__(self) -> None:
        sys.path.insert(0, HERE)
        import nets

        self.nets = nets
        self.model = nets.load(name, weights)

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=WAIT_S)
    async def infer(self, requests: list[torch.Tensor]) -> list[list[dict[str, object]]]:
        import stats

        rows = torch.cat(requests)
        with torch.inference_mode():
            answers = self.nets.answers(self.model(rows))
        stats.record(len(rows))
        out, start = [], 0
        for x in requests:
            out.append(answers[start : start + len(x)])
            start += len(x)
        return out

    async def __call__(self, request: Request) -> dict[str, object]:
        body = await request.json()
        return {"predictions": await self.infer(torch.tensor(body["rows"], dtype=torch.float32))}


ray.init(
    _node_ip_address="127.0.0.1",
    include_dashboard=False,
    num_cpus=2,
    runtime_env={
        "env_vars": {"PYTHONPATH": HERE, "BENCH_STATS": os.environ.get("BENCH_STATS", "")}
    },
)
serve.start(http_options={"host": "127.0.0.1", "port": port})
serve.run(Model.bind(), name="bench", route_prefix=f"/predict/{name}")
while True:
    time.sleep(3600)
