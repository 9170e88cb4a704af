"""Labels sent back for served predictions: `POST /feedback/{name}` (spec: FEEDBACK.md).

A client learns the true answer later (a user corrects it, a ticket closes) and sends it
back keyed by the request id it predicted with and the row within that request. The
server checks the whole body first (one bad label rejects the request and nothing is
stored), looks the ids up in the model's prediction log of the last 24 hours, and
stores every label in one transaction of the `feedback` table. A label whose request
this server cannot find yet is still stored (another worker's log file may land later)
and named in the answer; a row beyond the rows of a request it did find is refused.

    feedback = Feedback(meta, objects, plog)
    labels = parse_labels(body)                 # InvalidInputError names the bad item
    answer = feedback.accept("iris", labels)    # blocking: run it in a thread
"""

from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from conveyor.core.errors import ConveyorError, InvalidInputError, PayloadTooLargeError
from conveyor.serving.predlog import PredictionLog
from conveyor.serving.records import FeedbackRecord
from conveyor.storage.metadata import MetadataStore
from conveyor.storage.objects import ObjectStore

log = logging.getLogger(__name__)

MAX_LABELS = 10_000  # per request: one transaction, one look-up, an answer of bounded size
LOOKBACK = timedelta(hours=24)  # how far back the log is searched for a request id
MAX_REQUEST_ID = 128  # the width of `feedback.request_id` (and of a logged x-request-id)
MAX_LABEL = 200  # the width of `feedback.label`
MAX_ROW = 2**31 - 1  # the log's `row` is int32
_FIELDS = frozenset({"request_id", "row", "label"})
_EXAMPLE = '[{"request_id": "...", "row": 0, "label": "cat"}]'


@dataclass(frozen=True)
class Label:
    """One true label for one predicted row."""

    request_id: str
    row: int
    label: str


# -- the shapes /docs shows -----------------------------------------------------------------


class FeedbackLabel(BaseModel):
    """One label as /docs shows it (`parse_labels` is what checks a body)."""

    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(
        min_length=1, max_length=MAX_REQUEST_ID, description="the x-request-id of the prediction"
    )
    row: int = Field(0, ge=0, le=MAX_ROW, description="the row within that request")
    label: str = Field(min_length=1, max_length=MAX_LABEL, description="the true label")


class FeedbackUnmatched(BaseModel):
    """A label the log did not confirm: stored (request not found yet) or refused."""

    request_id: str
    row: int
    stored: bool = Field(description="true: kept for when the log lands; false: refused")
    reason: str


class FeedbackAnswer(BaseModel):
    """The answer of `POST /feedback/{name}`."""

    accepted: int = Field(description="labels stored")
    unmatched: list[FeedbackUnmatched]


_LABEL_SCHEMA = FeedbackLabel.model_json_schema()
OPENAPI_BODY: dict[str, Any] = {  # the request body in /docs
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {"type": "array", "items": _LABEL_SCHEMA, "maxItems": MAX_LABELS},
                    _LABEL_SCHEMA,
                ],
            },
            "example": [{"request_id": "3f2a-1", "row": 0, "label": "setosa"}],
        }
    },
}


# -- the body -------------------------------------------------------------------------------


def parse_labels(body: bytes) -> list[Label]:
    """The labels of a request body: a JSON list of label objects, or one object.

    Every item is checked before any is used; the first bad one raises an
    `InvalidInputError` whose `field` names it (`[3].row`).
    """
    if not body.strip():
        raise InvalidInputError("the request body is empty", f"send JSON: {_EXAMPLE}", "body")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidInputError(
            f"the body is not valid JSON ({e})", f"send {_EXAMPLE}", "body"
        ) from None
    items = [doc] if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise InvalidInputError(
            f"the body must be a list of labels or one label, not {_json_type(doc)}",
            f"send {_EXAMPLE}",
            "body",
        )
    if len(items) > MAX_LABELS:
        raise PayloadTooLargeError(
            f"the body holds {len(items)} labels, over the limit of {MAX_LABELS} per request",
            f"send them in requests of at most {MAX_LABELS}",
        )
    single = isinstance(doc, dict)
    return [_label(item, "" if single else f"[{i}]") for i, item in enumerate(items)]


def _label(item: Any, where: str) -> Label:
    at = where or "body"
    if not isinstance(item, dict):
        raise InvalidInputError(
            f"label {at} must be an object, not {_json_type(item)}", f"send {_EXAMPLE}", at
        )
    unknown = sorted(set(item) - _FIELDS)
    if unknown:
        raise InvalidInputError(
            f"label {at} has unknown field(s) {', '.join(map(repr, unknown))}",
            "a label has only request_id, row (default 0) and label",
            f"{where}.{unknown[0]}" if where else unknown[0],
        )
    request_id = _text(item, "request_id", MAX_REQUEST_ID, where)
    label = _text(item, "label", MAX_LABEL, where)
    row = item.get("row", 0)
    if not isinstance(row, int) or isinstance(row, bool) or not 0 <= row <= MAX_ROW:
        raise InvalidInputError(
            f"label {at}: 'row' must be a whole number from 0, not {_shown(row)}",
            "row is the index of the row within its request (0 for the first)",
            _field(where, "row"),
        )
    return Label(request_id, row, label)


def _text(item: dict[str, Any], name: str, limit: int, where: str) -> str:
    at = where or "body"
    value = item.get(name)
    if value is None:
        raise InvalidInputError(
            f"label {at} has no '{name}'", f"send {_EXAMPLE}", _field(where, name)
        )
    if not isinstance(value, str) or not value:
        raise InvalidInputError(
            f"label {at}: '{name}' must be a non-empty string, not {_shown(value)}",
            f"send {_EXAMPLE}",
            _field(where, name),
        )
    if len(value) > limit:
        raise InvalidInputError(
            f"label {at}: '{name}' is {len(value)} characters, over the limit of {limit}",
            "send the id the server answered with (x-request-id)"
            if name == "request_id"
            else "send the class name the model answers with",
            _field(where, name),
        )
    return value


def _field(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    return "a number"


def _shown(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= 40 else text[:37] + "..."


# -- the log --------------------------------------------------------------------------------


class LoggedRequests:
    """How many rows each request id has in a model's prediction log (the last 24 h).

    Reads only the `request_id`, `row` and `status` columns of the log's files, and
    counts answered rows only (a failed request has nothing to label). Files are
    immutable, so the two columns of each file read are kept (up to `max_cached_rows`
    rows, least recently used dropped first) and a later look-up reads only new files.
    """

    def __init__(
        self,
        meta: MetadataStore,
        objects: ObjectStore,
        lookback: timedelta = LOOKBACK,
        max_cached_rows: int = 1_000_000,
    ) -> None:
        self._meta = meta
        self._objects = objects
        self.lookback = lookback
        self.max_cached_rows = max_cached_rows
        self._cache: OrderedDict[str, Any] = OrderedDict()  # file id -> (request_id, row)
        self._cached_rows = 0
        self._lock = threading.Lock()

    def rows_of(self, model: str, request_ids: Iterable[str]) -> dict[str, int]:
        """Found request id -> its number of rows (the highest logged row + 1)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        from conveyor.serving.predictions import prediction_files

        wanted = pa.array(sorted(set(request_ids)), pa.string())
        found: dict[str, int] = {}
        if len(wanted) == 0:
            return found
        since = datetime.now(UTC) - self.lookback
        for record in prediction_files(self._meta, model, since=since):
            table = self._columns(record.id, record.digest)
            if table is None:
                continue
            hits = table.filter(pc.is_in(table["request_id"], value_set=wanted))
            if hits.num_rows == 0:
                continue
            counts = hits.group_by("request_id").aggregate([("row", "max")])
            for rid, top in zip(
                counts["request_id"].to_pylist(), counts["row_max"].to_pylist(), strict=True
            ):
                found[rid] = max(found.get(rid, 0), int(top) + 1)
        return found

    def _columns(self, file_id: str, digest: str) -> Any:
        with self._lock:
            table = self._cache.get(file_id)
            if table is not None:
                self._cache.move_to_end(file_id)
                return table
        try:
            table = _answered_rows(self._objects.get_bytes(digest))
        except (ConveyorError, OSError, ValueError) as e:
            log.warning("feedback: cannot read prediction-log file %s (%s); skipped", file_id, e)
            return None
        with self._lock:
            if file_id not in self._cache:
                self._cache[file_id] = table
                self._cached_rows += table.num_rows
            while self._cached_rows > self.max_cached_rows and len(self._cache) > 1:
                _, dropped = self._cache.popitem(last=False)
                self._cached_rows -= dropped.num_rows
        return table


def _answered_rows(data: bytes) -> Any:
    """The request_id and row of a log file's answered rows (a failed request is logged
    as one row with its status; files written before `status` existed hold answers only)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    source = pq.ParquetFile(io.BytesIO(data))
    answered_only = "status" not in source.schema_arrow.names
    table = source.read(columns=["request_id", "row"] + ([] if answered_only else ["status"]))
    if not answered_only:
        table = table.filter(pc.fill_null(pc.equal(table["status"], 200), True))
    return table.select(["request_id", "row"])


# -- accepting labels -----------------------------------------------------------------------


class Feedback:
    """Checks labels against the prediction log and stores them (`feedback` table)."""

    def __init__(
        self,
        meta: MetadataStore,
        objects: ObjectStore | None,
        predictions: PredictionLog | None = None,
    ) -> None:
        self._meta = meta
        self._predictions = predictions
        self._logged = None if objects is None else LoggedRequests(meta, objects)
        if self._logged is None:
            self._not_found = "this server has no prediction log to look in; stored"
        else:
            hours = self._logged.lookback.total_seconds() / 3600
            self._not_found = (
                f"not in this model's prediction log of the last {hours:g} h "
                "(not written yet, sampled out, or unknown); stored"
            )

    def accept(self, model: str, labels: list[Label], key_id: str | None = None) -> dict[str, Any]:
        """Store `labels` for `model`; the answer FEEDBACK.md documents. Blocking."""
        counts = self._logged_rows(model, labels)
        stored: list[Label] = []
        unmatched: list[dict[str, Any]] = []
        for label in labels:
            rows = counts.get(label.request_id)
            if rows is None:
                stored.append(label)
                unmatched.append(_unmatched(label, True, self._not_found))
            elif label.row >= rows:
                unmatched.append(
                    _unmatched(
                        label,
                        False,
                        f"request {label.request_id!r} has {rows} row(s) (0..{rows - 1}); "
                        "not stored",
                    )
                )
            else:
                stored.append(label)
        self._store(model, stored, key_id)
        return {"accepted": len(stored), "unmatched": unmatched}

    def _logged_rows(self, model: str, labels: list[Label]) -> dict[str, int]:
        if self._logged is None or not labels:
            return {}
        if self._predictions is not None:
            try:
                self._predictions.flush()  # this worker's pending rows are then findable
            except Exception:  # noqa: BLE001 - the writer retries; the look-up goes on
                log.warning("feedback: flushing the prediction log failed; looking up anyway")
        return self._logged.rows_of(model, (label.request_id for label in labels))

    def _store(self, model: str, labels: list[Label], key_id: str | None) -> None:
        if not labels:
            return
        now = datetime.now(UTC)
        with self._meta.write() as s:
            s.add_all(
                FeedbackRecord(
                    model=model,
                    request_id=label.request_id,
                    row=label.row,
                    label=label.label,
                    key_id=key_id,
                    received_at=now,
                )
                for label in labels
            )


def _unmatched(label: Label, stored: bool, reason: str) -> dict[str, Any]:
    return {"request_id": label.request_id, "row": label.row, "stored": stored, "reason": reason}
