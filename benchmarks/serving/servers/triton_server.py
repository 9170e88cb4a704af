"""NVIDIA PyTriton: Triton Inference Server (Python backend) with its dynamic batcher.

    python triton_server.py MODEL WEIGHTS PORT

Clients speak the Open Inference Protocol v2 (POST /v2/models/MODEL/infer). Triton's
bundled server starts here only with LD_LIBRARY_PATH pointing at the running Python's
own lib folder (run.py sets it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import nets
import stats

name, weights, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
MAX_BATCH = int(os.environ.get("MAX_BATCH", "64"))
WAIT_US = int(float(os.environ.get("WAIT_MS", "2")) * 1000)
model = nets.load(name, weights)


@batch
def infer(features: np.ndarray) -> dict[str, np.ndarray]:
    with torch.inference_mode():
        probs = torch.softmax(model(torch.from_numpy(features)), dim=1)
    score, label = probs.max(dim=1)
    stats.record(len(features))
    return {
        "label": label.numpy().astype(np.int64)[:, None],
        "score": score.numpy().astype(np.float32)[:, None],
    }


grpc_port, metrics_port = (int(p) for p in os.environ["TRITON_PORTS"].split(","))
config = TritonConfig(
    http_address="127.0.0.1",
    http_port=port,
    grpc_address="127.0.0.1",
    grpc_port=grpc_port,
    metrics_port=metrics_port,
    log_verbose=0,
)
with Triton(config=config) as triton:
    triton.bind(
        model_name=name,
        infer_func=infer,
        inputs=[Tensor(name="features", dtype=np.float32, shape=(nets.FEATURES,))],
        outputs=[
            Tensor(name="label", dtype=np.int64, shape=(1,)),
            Tensor(name="score", dtype=np.float32, shape=(1,)),
        ],
        config=ModelConfig(
            max_batch_size=max(MAX_BATCH, 128),
            batcher=DynamicBatcher(max_queue_delay_microseconds=WAIT_US),
        ),
        strict=False,
    )
    triton.serve()
