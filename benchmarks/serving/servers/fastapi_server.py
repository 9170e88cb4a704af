"""Plain FastAPI: one request, one forward pass, no batching (what many teams write).

python fastapi_server.py MODEL WEIGHTS PORT
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import nets
import stats

name, weights, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = nets.load(name, weights)
app = FastAPI()


class Rows(BaseModel):
    rows: list[list[float]]


@app.post(f"/predict/{name}")
async def predict(body: Rows) -> dict[str, object]:
    with torch.inference_mode():
        logits = model(torch.tensor(body.rows, dtype=torch.float32))
    stats.record(len(body.rows))
    return {"predictions": nets.answers(logits)}


uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
