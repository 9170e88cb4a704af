"""BentoML 1.4 with its adaptive batching (a batchable API).

bentoml serve bentoml_server:Model --port PORT   (run.py sets MODEL and WEIGHTS)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import bentoml
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import nets
import stats

NAME = os.environ["BENCH_MODEL"]
MAX_BATCH = int(os.environ.get("MAX_BATCH", "64"))
WAIT_MS = float(os.environ.get("WAIT_MS", "2"))


@bentoml.service(
    workers=1, threads=1, traffic={"timeout": 30}, logging={"access": {"enabled": False}}
)
class Model:
    def __init__(self) -> None:
        self.model = nets.load(NAME, os.environ["BENCH_WEIGHTS"])

    @bentoml.api(
        route=f"/predict/{NAME}",
        batchable=True,
        batch_dim=0,
        max_batch_size=MAX_BATCH,
        max_latency_ms=10_000,
    )
    def predict(self, rows: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            probs = torch.softmax(self.model(torch.from_numpy(rows.astype(np.float32))), dim=1)
        score, label = probs.max(dim=1)
        stats.record(len(rows))
        return np.stack([label.numpy().astype(np.float32), score.numpy()], axis=1)
