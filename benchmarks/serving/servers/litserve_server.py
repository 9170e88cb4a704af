"""LitServe with its batching on: LitAPI setup/decode/batch/predict/unbatch/encode.

python litserve_server.py MODEL WEIGHTS PORT
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import litserve as ls
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import nets
import stats

name, weights, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
MAX_BATCH = int(os.environ.get("MAX_BATCH", "64"))
WAIT_S = float(os.environ.get("WAIT_MS", "2")) / 1000


class Api(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.model = nets.load(name, weights)

    def decode_request(self, request: dict) -> torch.Tensor:
        return torch.tensor(request["rows"], dtype=torch.float32)

    def batch(self, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
        return torch.cat(inputs), [len(x) for x in inputs]

    def predict(self, x: tuple[torch.Tensor, list[int]]) -> list[list[dict[str, object]]]:
        rows, sizes = x
        if isinstance(rows, list):  # a lone request arrives unbatched
            rows, sizes = x, [len(x)]  # type: ignore[assignment]
        with torch.inference_mode():
            answers = nets.answers(self.model(rows))
        stats.record(len(rows))
        out, start = [], 0
        for size in sizes:
            out.append(answers[start : start + size])
            start += size
        return out

    def unbatch(self, output: list) -> list:
        return output

    def encode_response(self, output: list) -> dict[str, object]:
        return {"predictions": output}


if __name__ == "__main__":
    server = ls.LitServer(
        Api(max_batch_size=MAX_BATCH, batch_timeout=WAIT_S, api_path=f"/predict/{name}"),
        accelerator="cpu",
        workers_per_device=1,
    )
    server.run(host="127.0.0.1", port=port, generate_client_file=False, log_level="warning")
