"""The prediction log: every (sampled) prediction, written off the request path.

A request only appends one tuple to a list (after a sampling draw); a writer thread
turns the list into Parquet every `flush_s` seconds or `flush_rows` rows, stores the
file in the object store and indexes it in `prediction_files`. Layout and columns:
PREDICTIONS.md. If the store is slow the list grows to `max_pending` rows, then new
predictions are dropped and counted (`dropped`): the log never slows requests down.
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from conveyor.serving.records import PredictionFileRecord
from conveyor.storage.metadata import MetadataStore
from conveyor.storage.objects import ObjectStore
from conveyor.storage.tables import index_objects

log = logging.getLogger(__name__)
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"
MAX_FEATURES = 4096  # model-input rows wider than this are logged without `features`


@dataclass(frozen=True)
class LogPolicy:
    """How much of the traffic is logged and how often files are written."""

    sample: float = 1.0  # share of requests logged (0 turns the log off)
    flush_s: float = 5.0
    flush_rows: int = 20_000
    max_pending: int = 200_000


@dataclass(frozen=True)
class Prediction:
    """One request's worth of log rows, as the request path hands it over (no copies)."""

    at: float  # unix time the request arrived
    request_id: str
    model: str
    version: int
    role: str  # "primary", "canary" or "shadow"
    latency_s: float
    inputs: list[Any]  # the raw rows as received (JSON values or image bytes)
    features: np.ndarray  # the model input after preprocessing
    outputs: list[dict[str, Any]]


class PredictionLog:
    """Collects sampled predictions and writes them out from a background thread."""

    def __init__(
        self,
        meta: MetadataStore,
        objects: ObjectStore,
        policy: LogPolicy | None = None,
        worker: str | None = None,
    ) -> None:
        self.policy = policy or LogPolicy()
        self.worker = worker or f"{uuid.uuid4().hex[:8]}"
        self._meta = meta
        self._objects = objects
        self._pending: deque[Prediction] = deque()  # appended on the loop, popped here
        self._pending_rows = 0
        self.dropped = 0
        self.written_rows = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="conveyor-predlog", daemon=True)
        self._thread.start()

    def wants(self) -> bool:
        """The sampling draw, taken before the request builds anything for the log."""
        sample = self.policy.sample
        return sample >= 1.0 or (sample > 0.0 and random.random() < sample)

    def record(self, prediction: Prediction) -> None:
        rows = len(prediction.outputs)
        if self._pending_rows + rows > self.policy.max_pending:
            self.dropped += rows
            return
        self._pending.append(prediction)
        self._pending_rows += rows
        if self._pending_rows >= self.policy.flush_rows:
            self._wake.set()

    def flush(self) -> None:
        """Write what is pending now (tests, shutdown)."""
        with self._lock:
            self._write_pending()

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=60)
        self.flush()

    # -- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.policy.flush_s)
            self._wake.clear()
            with self._lock:
                try:
                    self._write_pending()
                except Exception:
                    log.exception("prediction log: writing a file failed; will retry")

    def _write_pending(self) -> None:
        batch = [self._pending.popleft() for _ in range(len(self._pending))]
        if not batch:
            return
        self._pending_rows = max(0, self._pending_rows - sum(len(p.outputs) for p in batch))
        by_version: dict[tuple[str, int], list[Prediction]] = {}
        for p in batch:
            by_version.setdefault((p.model, p.version), []).append(p)
        for (model, version), predictions in by_version.items():
            try:
                self._write_file(model, version, predictions)
            except Exception:
                if self._pending_rows < self.policy.max_pending:  # keep them for the retry
                    self._pending.extendleft(reversed(predictions))
                    self._pending_rows += sum(len(p.outputs) for p in predictions)
                raise

    def _write_file(self, model: str, version: int, predictions: list[Prediction]) -> None:
        table = to_table(predictions)
        data = _parquet_bytes(table)
        stored = self._objects.put_bytes(data)
        first = min(p.at for p in predictions)
        last = max(p.at for p in predictions)
        with self._meta.write() as s:
            index_objects(s, [(stored.digest, stored.size)], PARQUET_MEDIA_TYPE)
            s.add(
                PredictionFileRecord(
                    id=uuid.uuid4().hex,
                    model=model,
                    version=version,
                    digest=stored.digest,
                    rows=table.num_rows,
                    size=stored.size,
                    first_at=datetime.fromtimestamp(first, UTC),
                    last_at=datetime.fromtimestamp(last, UTC),
                    worker=self.worker,
                )
            )
        self.written_rows += table.num_rows


def to_table(predictions: list[Prediction]) -> Any:
    """Requests -> one Arrow table, one row per predicted row (schema: PREDICTIONS.md)."""
    import pyarrow as pa

    from conveyor.serving.predictions import SCHEMA

    cols: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
    for p in predictions:
        at = datetime.fromtimestamp(p.at, UTC)
        flat = p.features.reshape(len(p.features), -1)
        wide = flat.shape[1] > MAX_FEATURES
        for i, out in enumerate(p.outputs):
            cols["at"].append(at)
            cols["request_id"].append(p.request_id)
            cols["row"].append(i)
            cols["model"].append(p.model)
            cols["version"].append(p.version)
            cols["role"].append(p.role)
            cols["latency_ms"].append(p.latency_s * 1000.0)
            cols["input"].append(_input_json(p.inputs[i]) if i < len(p.inputs) else None)
            cols["features"].append(None if wide else flat[i].astype(np.float32))
            cols["label"].append(out.get("label"))
            cols["score"].append(out.get("score"))
            cols["output"].append(orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY).decode())
    arrays = []
    for field in SCHEMA:
        if field.name == "features":
            arrays.append(_features_array(cols["features"]))
        else:
            arrays.append(pa.array(cols[field.name], type=field.type))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _features_array(rows: list[np.ndarray | None]) -> Any:
    """Rows of one width become one flat buffer plus offsets (no per-value Python)."""
    import pyarrow as pa

    from conveyor.serving.predictions import SCHEMA

    present = [r for r in rows if r is not None]
    if len(present) < len(rows) or len({len(r) for r in present}) > 1 or not present:
        listed = [None if r is None else r.tolist() for r in rows]
        return pa.array(listed, SCHEMA.field("features").type)
    values = np.concatenate(present)
    offsets = np.arange(0, len(values) + 1, max(len(present[0]), 1), dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.float32()))


def _input_json(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return orjson.dumps(
            {"sha256": hashlib.sha256(value).hexdigest(), "bytes": len(value)}
        ).decode()
    return orjson.dumps(value).decode()


def _parquet_bytes(table: Any) -> bytes:
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def now() -> float:
    return time.time()
