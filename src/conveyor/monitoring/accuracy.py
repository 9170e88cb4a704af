"""Live accuracy: the served answers of a window joined with the labels sent back later.

A served row counts once it has a label, joined by request id and row; when a row was
labelled more than once, the latest label (by `received_at`, then by order) wins. The
share of correct answers comes with a 95% Wilson interval, so "0.93 on 40 labels" reads
as the wide guess it is and "0.93 on 40,000" as the narrow one. The result is the
`accuracy` object of the monitor report (REPORT.md); a figure without labels is `null`.

    predicted = read_predictions(meta, objects, "iris", since=start)   # serving's log
    labels = read_labels(meta, "iris", predicted["request_id"].unique().to_pylist())
    accuracy(predicted, labels, bucket_s=300)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select

from conveyor.core.errors import MonitorInputError
from conveyor.serving.records import FeedbackRecord
from conveyor.storage.metadata import MetadataStore

if TYPE_CHECKING:
    from conveyor.data.dataset import DatasetVersion

CONFIDENCE = 0.95
IDS_PER_QUERY = 500  # under SQLite's bound-parameter limit and PostgreSQL's comfort zone
LABELS_SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("row", pa.int32(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("received_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
_PREDICTED = ("request_id", "row", "label", "at")
_LABELS = ("request_id", "row", "label", "received_at")
_KEYS = ["request_id", "row"]
_AT = pa.timestamp("us", tz="UTC")


# -- the figure -----------------------------------------------------------------------------


def accuracy(
    predicted: pa.Table, labels: pa.Table, *, bucket_s: float | None = None
) -> dict[str, Any]:
    """The report's `accuracy` object for the served rows `predicted` and `labels`.

    `predicted` is a window of the prediction log (request_id, row, label, at). Rows
    that are not answers a client saw are left out: those without a label, and, where
    the columns are there, shadow rows (`role`) and failed requests (`status` not 200).
    A request logged twice (a client's retry) counts twice.

    `labels` holds request_id, row, label and received_at (`read_labels`,
    `labels_from_dataset`). With `bucket_s`, `timeline` has one entry per `bucket_s`
    seconds of `at` (aligned to the epoch) that holds served rows, labelled or not.
    """
    _require(predicted, _PREDICTED, "the predictions")
    _require(labels, _LABELS, "the labels")
    bucket_us = _bucket_us(bucket_s)
    served = _served(predicted)
    joined = served.join(latest_labels(labels), keys=_KEYS, join_type="inner")
    truth = _strings(joined["truth"])
    guess = _strings(joined["predicted"])
    correct = int(np.count_nonzero(truth == guess))
    labelled = len(truth)
    return {
        "labelled": labelled,
        "correct": correct,
        "accuracy": correct / labelled if labelled else None,
        "ci": wilson(correct, labelled),
        "confidence": CONFIDENCE,
        **_per_class(truth, guess),
        "timeline": [] if bucket_us is None else _timeline(served, joined, bucket_us),
    }


def wilson(successes: int, trials: int, confidence: float = CONFIDENCE) -> list[float] | None:
    """The Wilson score interval of `successes / trials`; None without trials."""
    if trials <= 0:
        return None
    from scipy import stats

    ci = stats.binomtest(successes, trials).proportion_ci(confidence, method="wilson")
    return [float(ci.low), float(ci.high)]


def latest_labels(labels: pa.Table) -> pa.Table:
    """One label per (request_id, row): the latest by received_at, ties by table order.

    Columns request_id (string), row (int64), truth (string); null labels are dropped.
    """
    _require(labels, _LABELS, "the labels")
    table = pa.table(
        {
            "request_id": pc.cast(labels["request_id"], pa.string()),
            "row": pc.cast(labels["row"], pa.int64()),
            "truth": pc.cast(labels["label"], pa.string()),
            # a label without a time is taken as older than any with one
            "received_at": pc.fill_null(
                pc.cast(labels["received_at"], _AT), pa.scalar(0, pa.int64()).cast(_AT)
            ),
            "order": pa.array(np.arange(labels.num_rows, dtype=np.int64)),
        }
    )
    table = table.filter(
        pc.and_(
            pc.and_(pc.is_valid(table["truth"]), pc.is_valid(table["request_id"])),
            pc.is_valid(table["row"]),
        )
    )
    if table.num_rows == 0:
        return table.select(["request_id", "row", "truth"])
    table = table.sort_by([("received_at", "ascending"), ("order", "ascending")])
    last = table.group_by(_KEYS, use_threads=False).aggregate([("truth", "last")])
    return last.rename_columns(["request_id", "row", "truth"])


def _served(predicted: pa.Table) -> pa.Table:
    keep = pc.is_valid(predicted["label"])
    if "status" in predicted.column_names:  # a failed request is logged without an answer
        keep = pc.and_(keep, pc.fill_null(pc.equal(predicted["status"], 200), True))
    if "role" in predicted.column_names:
        keep = pc.and_(keep, pc.not_equal(pc.fill_null(predicted["role"], ""), "shadow"))
    rows = predicted.filter(keep)
    return pa.table(
        {
            "request_id": pc.cast(rows["request_id"], pa.string()),
            "row": pc.cast(rows["row"], pa.int64()),
            "predicted": pc.cast(rows["label"], pa.string()),
            "at_us": pc.cast(pc.cast(rows["at"], _AT), pa.int64()),
        }
    )


def _per_class(truth: np.ndarray, guess: np.ndarray) -> dict[str, Any]:
    if len(truth) == 0:
        return {"per_class": {}, "confusion": {"labels": [], "matrix": []}}
    classes, codes = np.unique(np.concatenate([truth, guess]), return_inverse=True)
    true_codes, guess_codes = codes[: len(truth)], codes[len(truth) :]
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(matrix, (true_codes, guess_codes), 1)
    hits = np.diag(matrix)
    support = matrix.sum(axis=1)  # rows: the true label
    answered = matrix.sum(axis=0)  # columns: the predicted label
    per_class = {
        str(name): {
            "precision": float(hits[i] / answered[i]) if answered[i] else None,
            "recall": float(hits[i] / support[i]) if support[i] else None,
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    }
    names = [str(name) for name in classes]
    return {"per_class": per_class, "confusion": {"labels": names, "matrix": matrix.tolist()}}


def _timeline(served: pa.Table, joined: pa.Table, bucket_us: int) -> list[dict[str, Any]]:
    buckets = np.unique(served["at_us"].to_numpy() // bucket_us)
    labelled_at = joined["at_us"].to_numpy() // bucket_us
    right = _strings(joined["truth"]) == _strings(joined["predicted"])
    where = np.searchsorted(buckets, labelled_at)
    labelled = np.bincount(where, minlength=len(buckets))
    correct = np.bincount(where, weights=right, minlength=len(buckets))
    return [
        {
            "at": datetime.fromtimestamp(int(b) * bucket_us / 1e6, UTC).isoformat(),
            "labelled": int(n),
            "accuracy": float(k / n) if n else None,
        }
        for b, n, k in zip(buckets.tolist(), labelled.tolist(), correct.tolist(), strict=True)
    ]


def _bucket_us(bucket_s: float | None) -> int | None:
    if bucket_s is None:
        return None
    if isinstance(bucket_s, bool) or not isinstance(bucket_s, int | float) or not bucket_s > 0:
        raise MonitorInputError(
            f"a timeline bucket must be a positive number of seconds, not {bucket_s!r}",
            "e.g. bucket_s=300 for five minutes",
        )
    return max(1, round(bucket_s * 1_000_000))


def _strings(column: Any) -> np.ndarray:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)


def _require(table: Any, columns: Sequence[str], what: str) -> None:
    if not isinstance(table, pa.Table):
        raise MonitorInputError(
            f"{what} must be a pyarrow Table, not {type(table).__name__}",
            "read them with read_predictions / read_labels",
        )
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise MonitorInputError(
            f"{what} lack the column(s) {', '.join(missing)}",
            f"they need {', '.join(columns)}; they have {', '.join(table.column_names) or 'none'}",
        )


# -- where labels come from -----------------------------------------------------------------


def read_labels(
    meta: MetadataStore, model: str, request_ids: Iterable[str] | None = None
) -> pa.Table:
    """Every label sent back for `model` (or for those request ids), in the order stored.

    Columns as `LABELS_SCHEMA`; a row labelled twice appears twice (`accuracy` keeps the
    latest). Ids are looked up `IDS_PER_QUERY` at a time, so a window of 100,000
    requests is 200 small queries on SQLite or PostgreSQL, not one that a database
    refuses.
    """
    columns = (
        FeedbackRecord.id,
        FeedbackRecord.request_id,
        FeedbackRecord.row,
        FeedbackRecord.label,
        FeedbackRecord.received_at,
    )
    query = select(*columns).where(FeedbackRecord.model == model)
    found: list[Any] = []
    with meta.read() as s:
        if request_ids is None:
            found.extend(s.execute(query))
        else:
            ids = list(dict.fromkeys(str(i) for i in request_ids))
            for start in range(0, len(ids), IDS_PER_QUERY):
                chunk = ids[start : start + IDS_PER_QUERY]
                found.extend(s.execute(query.where(FeedbackRecord.request_id.in_(chunk))))
    found.sort(key=lambda r: r[0])
    return pa.table(
        {
            "request_id": pa.array([r[1] for r in found], pa.string()),
            "row": pa.array([r[2] for r in found], pa.int32()),
            "label": pa.array([r[3] for r in found], pa.string()),
            "received_at": pa.array([_utc(r[4]) for r in found], pa.timestamp("us", tz="UTC")),
        },
        schema=LABELS_SCHEMA,
    )


def labels_from_dataset(
    version: DatasetVersion,
    request_id: str = "request_id",
    label: str = "label",
    row: str = "row",
) -> pa.Table:
    """The labels a labelled dataset version holds, as `read_labels` gives them.

    `request_id` and `label` name its columns; a `row` column is optional (0 for every
    label without one). Each label's received_at is the version's creation time.
    """
    names = version.schema.names
    missing = [c for c in (request_id, label) if c not in names]
    if missing:
        raise MonitorInputError(
            f"{version.ref} has no column(s) {', '.join(repr(c) for c in missing)} for labels",
            f"its columns are {', '.join(names) or 'none'}; "
            "name the right ones with request_id=... and label=...",
        )
    wanted = list(dict.fromkeys([request_id, label] + ([row] if row in names else [])))
    table = version.to_arrow(columns=wanted)
    rows = table[row] if row in names else pa.array(np.zeros(table.num_rows, np.int32), pa.int32())
    try:
        out = pa.table(
            {
                "request_id": pc.cast(table[request_id], pa.string()),
                "row": pc.cast(rows, pa.int32()),
                "label": pc.cast(table[label], pa.string()),
            }
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise MonitorInputError(
            f"{version.ref}'s label columns cannot be read as labels ({e})",
            f"'{request_id}' and '{label}' need text or whole numbers, '{row}' whole numbers",
        ) from None
    out = out.filter(
        pc.and_(
            pc.and_(pc.is_valid(out["request_id"]), pc.is_valid(out["label"])),
            pc.is_valid(out["row"]),
        )
    )
    created = _utc(version.manifest.created_at)
    received = pa.array([created] * out.num_rows, pa.timestamp("us", tz="UTC"))
    return out.append_column("received_at", received).cast(LABELS_SCHEMA)


def _utc(moment: datetime) -> datetime:
    """SQLite hands times back without a zone; they were written in UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
