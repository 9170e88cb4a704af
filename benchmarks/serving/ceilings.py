"""In-process ceilings: batched inference rows/s at each batch size and the single-row
call latency, for PyTorch and ONNX Runtime, one intra-op thread (run pinned to a core).

    python ceilings.py DATA_DIR   -> prints JSON
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nets

BATCHES = (1, 8, 32, 64, 128, 256)


def rate(fn, batch: np.ndarray, seconds: float = 0.7) -> float:  # type: ignore[no-untyped-def]
    for _ in range(20):
        fn(batch)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(batch)
        done += len(batch)
    return done / (time.perf_counter() - start)


def single_row_p50(fn, row: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(2000):
        start = time.perf_counter()
        fn(row)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main() -> None:
    data = Path(sys.argv[1])
    torch.set_num_threads(1)
    out: dict[str, object] = {}
    for name in ("mlp", "cnn"):
        module = nets.load(name, str(data / f"{name}.safetensors"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(
            str(data / f"{name}.onnx"), options, providers=["CPUExecutionProvider"]
        )
        feed = session.get_inputs()[0].name

        def run_torch(x: np.ndarray, module: torch.nn.Module = module) -> object:
            with torch.inference_mode():
                return module(torch.from_numpy(x))

        def run_ort(
            x: np.ndarray, session: ort.InferenceSession = session, feed: str = feed
        ) -> object:
            return session.run(None, {feed: x})

        rng = np.random.default_rng(0)
        result: dict[str, object] = {}
        for runtime, fn in (("torch", run_torch), ("onnxruntime", run_ort)):
            rates = {b: rate(fn, rng.random((b, nets.FEATURES), dtype=np.float32)) for b in BATCHES}
            best = max(rates, key=rates.__getitem__)
            result[runtime] = {
                "rows_per_s": {str(b): round(r) for b, r in rates.items()},
                "best_batch": best,
                "best_rows_per_s": round(rates[best]),
                "single_row_p50_us": round(
                    single_row_p50(fn, rng.random((1, nets.FEATURES), dtype=np.float32)), 1
                ),
            }
        out[name] = result
    print(json.dumps(out))


if __name__ == "__main__":
    main()
