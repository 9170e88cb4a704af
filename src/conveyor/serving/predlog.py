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
from typing import Any, Final

import numpy as np
import orjson

from conveyor.serving.records import PredictionFileRecord
from conveyor.storage.metadata import MetadataStore
from conveyor.storage.objects import ObjectStore
from conveyor.storage.tables import index_objects

log = logging.getLogger(__name__)
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"
MAX_FEATURES = 4096  # model-input rows wider than this are logged without `features`
_DICTIONARY = ["model", "role", "label"]  # the columns whose values repeat


@dataclass(frozen=True)
class LogPolicy:
    """How much of the traffic is logged and how often files are written."""

    sample: float = 1.0  # share of requests logged (0 turns the log off)
    flush_s: float = 5.0
    flush_rows: int = 8192  # small files under load: the writer's GIL holds stay short
    max_pending: int = 200_000


# One request's worth of log rows, as the request path hands it over (no copies): a plain
# tuple, cheaper to build than an object and unpacked by `to_table` with one zip.
Prediction = tuple[
    float,  # at: unix time the request arrived
    str,  # request id
    str,  # model
    int,  # version
    str,  # role: "primary", "canary", "pinned" or "shadow"
    float,  # latency in seconds
    "list[Any] | None",  # raw rows (JSON values, image bytes); None: same as features
    np.ndarray,  # features: the model input after preprocessing
    "list[Any]",  # outputs: the answers, one per row ([{}] for a failed request)
    int,  # status: the HTTP status answered (200, or the error's)
    "str | None",  # error: the kind of error (its class name); None when answered
    int,  # batch rows: rows in the model batch the request ran in (0: never ran)
]
_WARM_UP: Prediction = (
    0.0, "", "", 0, "", 0.0, None, np.zeros((1, 1), np.float32), [{}], 200, None, 1
)  # fmt: skip
_NO_FEATURES: Final = np.zeros((1, 0), np.float32)
_MODEL: Final = 2
_VERSION: Final = 3
_OUTPUTS: Final = 8


class PredictionLog:
    """Collects sampled predictions and writes them out from a background thread."""

    def __init__(
        self,
        meta: MetadataStore,
        objects: ObjectStore,
        policy: LogPolicy | None = None,
        worker: str | None = None,
    ) -> None:
        # one throw-away table now: what the writer's first one imports (pyarrow.compute,
        # and pandas, which pyarrow looks for on its first array: ~0.3 s) is then loaded
        # before the server freezes start-up objects (gc.freeze; else every full
        # collection walks them) and not by the writer while it shares the GIL
        _parquet_bytes(to_table([_WARM_UP]))
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

    def record(
        self,
        at: float,
        request_id: str,
        model: str,
        version: int,
        role: str,
        latency_s: float,
        inputs: list[Any] | None,
        features: np.ndarray,
        outputs: list[Any],
        batch_rows: int,
    ) -> None:
        rows = len(outputs)
        if self._pending_rows + rows > self.policy.max_pending:
            self.dropped += rows
            return
        self._pending.append(
            (at, request_id, model, version, role, latency_s, inputs, features, outputs,
             200, None, batch_rows)
        )  # fmt: skip
        self._pending_rows += rows
        if self._pending_rows >= self.policy.flush_rows:
            self._wake.set()

    def failed(
        self,
        at: float,
        request_id: str,
        model: str,
        version: int,
        role: str,
        latency_s: float,
        status: int,
        error: str,
    ) -> None:
        """A request the version could not answer: one row with its status (error rates)."""
        if self._pending_rows + 1 > self.policy.max_pending:
            self.dropped += 1
            return
        self._pending.append(
            (at, request_id, model, version, role, latency_s, None, _NO_FEATURES, [{}],
             status, error, 0)
        )  # fmt: skip
        self._pending_rows += 1

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
        self._pending_rows = max(0, self._pending_rows - sum(len(p[_OUTPUTS]) for p in batch))
        by_version: dict[tuple[str, int], list[Prediction]] = {}
        for p in batch:
            by_version.setdefault((p[_MODEL], p[_VERSION]), []).append(p)
        for (model, version), predictions in by_version.items():
            try:
                self._write_file(model, version, predictions)
            except Exception:
                if self._pending_rows < self.policy.max_pending:  # keep them for the retry
                    self._pending.extendleft(reversed(predictions))
                    self._pending_rows += sum(len(p[_OUTPUTS]) for p in predictions)
                raise

    def _write_file(self, model: str, version: int, predictions: list[Prediction]) -> None:
        table = to_table(predictions)
        data = _parquet_bytes(table)
        stored = self._objects.put_bytes(data)
        first = min(p[0] for p in predictions)
        last = max(p[0] for p in predictions)
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
    """Requests -> one Arrow table, one row per predicted row (schema: PREDICTIONS.md).

    Built column by column from whole requests (numpy repeats and one concatenation of
    the features), not row by row: the writer shares the GIL with the request path.
    """
    import pyarrow as pa

    from conveyor.serving.predictions import SCHEMA

    (at, request_ids, models, versions, roles, latencies, inputs, features, outputs,
     statuses, errors, batches) = zip(*predictions, strict=True)  # fmt: skip
    counts = np.fromiter(map(len, outputs), np.int64, len(predictions))
    total = int(counts.sum())
    at_us = np.repeat(np.array(at, np.float64) * 1e6, counts)
    rows = [o for answers in outputs for o in answers]
    owners = _owners(counts)
    columns = {
        "at": pa.array(at_us.astype(np.int64), pa.timestamp("us", tz="UTC")),
        "request_id": pa.array(request_ids, pa.string()).take(owners),
        "row": pa.array(_row_numbers(counts)),
        "model": pa.array(models, pa.string()).take(owners),
        "version": pa.array(np.repeat(np.array(versions), counts).astype(np.int32)),
        "role": pa.array(roles, pa.string()).take(owners),
        "latency_ms": pa.array(np.repeat(np.array(latencies) * 1000.0, counts).astype(np.float32)),
        "input": pa.array(_inputs(inputs, counts, total), pa.string()),
        "features": _features_array(list(features), counts),
        "label": pa.array([o.get("label") for o in rows], pa.string()),
        "score": pa.array([o.get("score") for o in rows], pa.float32()),
        "value": _values(rows),
        "status": pa.array(np.repeat(np.array(statuses), counts).astype(np.int16)),
        "error": pa.array(errors, pa.string()).take(owners),
        "batch_rows": pa.array(np.repeat(np.array(batches), counts).astype(np.int32)),
    }
    return pa.Table.from_arrays([columns[f.name] for f in SCHEMA], schema=SCHEMA)


def _row_numbers(counts: np.ndarray) -> np.ndarray:
    """0..n-1 within each request, without a Python loop over requests."""
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    numbers: np.ndarray = (np.arange(int(counts.sum())) - starts).astype(np.int32)
    return numbers


def _owners(counts: np.ndarray) -> Any:
    """For each log row, the index of the request it came from."""
    return np.repeat(np.arange(len(counts)), counts)


def _inputs(
    inputs: tuple[list[Any] | None, ...], counts: np.ndarray, total: int
) -> list[str | None]:
    """Raw inputs as JSON for tables and images; None where `features` already is the
    input (tensor rows), so the log does not hold the same numbers twice."""
    if all(raw is None for raw in inputs):
        return [None] * total
    out: list[str | None] = []
    for raw, n in zip(inputs, counts.tolist(), strict=True):
        if raw is None:
            out.extend([None] * n)
        else:
            out.extend(_input_json(value) for value in raw[:n])
    return out


def _values(outputs: list[Any]) -> Any:
    """The `value` column; all nulls, without a call per row, for a classifier's rows."""
    import pyarrow as pa

    kind = pa.list_(pa.float32())
    if not any("value" in o for o in outputs if isinstance(o, dict)):
        return pa.nulls(len(outputs), kind)
    return pa.array([_value(o) for o in outputs], kind)


def _value(output: Any) -> list[float] | None:
    if not isinstance(output, dict) or "value" not in output:
        return None
    value = output["value"]
    return [float(v) for v in value] if isinstance(value, list) else [float(value)]


def _features_array(features: list[np.ndarray], counts: np.ndarray) -> Any:
    """Request inputs -> one list<float32> column: one flat buffer plus offsets."""
    import pyarrow as pa

    shapes = {f.shape[1:] for f in features}
    width = int(np.prod(next(iter(shapes)))) if len(shapes) == 1 else -1
    if width <= 0 or width > MAX_FEATURES:  # mixed shapes, failed requests, huge rows
        flat = [f.reshape(len(f), -1) for f in features]
        listed = [None if not 0 < r.size <= MAX_FEATURES else r.tolist() for f in flat for r in f]
        return pa.array(listed, pa.list_(pa.float32()))
    values = np.concatenate(features).reshape(-1).astype(np.float32, copy=False)
    offsets = np.arange(int(counts.sum()) + 1, dtype=np.int32) * width
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
    # lz4 and statistics on the time column only: about a third of zstd's cost with
    # statistics everywhere, on the core that also answers requests. Dictionaries only
    # for the columns that repeat: trying one on every column (pyarrow's default) cost
    # seven times the whole rest of the write, for a bigger file
    pq.write_table(
        table, sink, compression="lz4", write_statistics=["at"], use_dictionary=_DICTIONARY
    )
    return sink.getvalue()


def now() -> float:
    return time.time()
