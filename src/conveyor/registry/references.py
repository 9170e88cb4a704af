"""Each model version's drift reference: its training rows as monitoring watches them.

Built once from up to `ROWS` training rows through `watched.py` (the same columns the
monitor computes from served traffic), sketched (`data/reference.py`) and stored as a
JSON object with a row in `drift_references`. Registration stores it; a version
registered before references existed gets one the first time it is asked for, read
from the train split of the dataset version its lineage names. Checking a window then
never rereads training data.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select

from conveyor.data.reference import Reference
from conveyor.registry.evaluate import input_columns
from conveyor.registry.records import DriftReferenceRecord
from conveyor.registry.watched import watched_from_model
from conveyor.storage.metadata import MetadataStore
from conveyor.storage.objects import ObjectStore
from conveyor.storage.tables import index_objects

if TYPE_CHECKING:
    from conveyor.data.catalog import Datasets
    from conveyor.registry.version import ModelVersion

ROWS = 5000  # training rows a reference is built from
_MEDIA_TYPE = "application/vnd.conveyor.drift-reference+json"


def build_reference(mv: ModelVersion, x: np.ndarray, source: str) -> Reference:
    """The reference of model inputs `x` (training rows after preprocessing)."""
    table = watched_from_model(mv.preprocessing, mv.signature, mv.onnx_bytes(), x)
    return Reference.from_table(table, source=source)


def save_reference(
    meta: MetadataStore, objects: ObjectStore, mv: ModelVersion, reference: Reference
) -> None:
    stored = objects.put_bytes(json.dumps(reference.to_dict()).encode())
    with meta.write() as s:
        index_objects(s, [(stored.digest, stored.size)], _MEDIA_TYPE)
        record = s.get(DriftReferenceRecord, (mv.name, mv.number))
        if record is None:
            s.add(
                DriftReferenceRecord(
                    model=mv.name,
                    number=mv.number,
                    digest=stored.digest,
                    rows=reference.rows,
                    source=reference.source[:500],
                )
            )
        else:
            record.digest, record.rows = stored.digest, reference.rows


def load_reference(meta: MetadataStore, objects: ObjectStore, mv: ModelVersion) -> Reference | None:
    with meta.read() as s:
        digest = s.scalar(
            select(DriftReferenceRecord.digest).where(
                DriftReferenceRecord.model == mv.name, DriftReferenceRecord.number == mv.number
            )
        )
    if digest is None:
        return None
    return Reference.from_dict(json.loads(objects.get_bytes(digest)))


def backfill_reference(
    meta: MetadataStore, objects: ObjectStore, datasets: Datasets, mv: ModelVersion
) -> tuple[Reference | None, str]:
    """Build and store the reference of a version registered without one, from its
    lineage's train split; (None, why) when that cannot be done."""
    pre = mv.preprocessing
    if pre.kind in ("text", "none"):
        return None, f"{mv.ref} has {pre.kind} inputs: its reference is made at registration"
    links = [d for d in mv.manifest.datasets if d.role == "train"]
    if not links:
        return None, f"{mv.ref} names no training dataset in its lineage"
    try:
        version = datasets.get(links[0].ref)
    except Exception as e:  # noqa: BLE001 - a deleted dataset: say so, do not fail the check
        return None, f"its training data {links[0].ref} cannot be read ({e})"
    split = "train" if "train" in version.manifest.splits() else None
    raw = training_rows(version, pre, split, ROWS)
    label = f"{version.ref} ({split or 'all rows'})"
    reference = build_reference(mv, pre.apply(raw), label)
    save_reference(meta, objects, mv, reference)
    return reference, ""


def training_rows(version: Any, pre: Any, split: str | None, limit: int) -> Any:
    """The first `limit` rows of a split in the form `pre.apply` takes."""
    columns = input_columns(pre)
    gathered: dict[str, list[Any]] = {c: [] for c in columns}
    for table in version.iter_tables(columns=columns, split=split):
        for c in columns:
            gathered[c].extend(table.column(c).to_pylist()[: limit - len(gathered[c])])
        if len(gathered[columns[0]]) >= limit:
            break
    return gathered if pre.kind == "tabular" else gathered[columns[0]]
