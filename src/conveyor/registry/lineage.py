"""Lineage both ways: a version back to its run, dataset versions, shards, code and
environment; a dataset version forward to the model versions built on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from conveyor.core.errors import ConveyorError
from conveyor.data.refs import parse_ref
from conveyor.registry.records import ModelAliasRecord, ModelDatasetRecord, ModelVersionRecord

if TYPE_CHECKING:
    from conveyor.data.catalog import Datasets
    from conveyor.registry.version import ModelVersion


@dataclass(frozen=True)
class ModelUse:
    """A model version built on a dataset version (`conveyor data used-by`)."""

    model: str
    dataset: str
    role: str
    status: str
    aliases: list[str]


def alias_map(s: Session) -> dict[tuple[str, int], list[str]]:
    """(model, number) -> the aliases pointing at it."""
    pointers: dict[tuple[str, int], list[str]] = {}
    for r in s.scalars(select(ModelAliasRecord).order_by(ModelAliasRecord.alias)):
        pointers.setdefault((r.model, r.number), []).append(r.alias)
    return pointers


def used_by(s: Session, dataset: str) -> list[ModelUse]:
    """Model versions built on `NAME@vN` (or on any version of `NAME`)."""
    ref = parse_ref(dataset)
    query = (
        select(ModelVersionRecord, ModelDatasetRecord)
        .join(ModelDatasetRecord, ModelDatasetRecord.version_id == ModelVersionRecord.id)
        .where(ModelDatasetRecord.dataset == ref.name)
    )
    if ref.version is not None:
        query = query.where(ModelDatasetRecord.dataset_version == ref.version)
    rows = s.execute(query.order_by(ModelVersionRecord.model, ModelVersionRecord.number)).all()
    pointers = alias_map(s)
    return [
        ModelUse(
            f"{v.model}@v{v.number}",
            f"{d.dataset}@v{d.dataset_version}",
            d.role,
            v.status,
            pointers.get((v.model, v.number), []),
        )
        for v, d in rows
    ]


def lineage(mv: ModelVersion, datasets: Datasets) -> dict[str, Any]:
    """Everything the version came from, as plain data for `models lineage`."""
    m = mv.manifest
    data = []
    for link in m.datasets:
        entry: dict[str, Any] = {
            "ref": link.ref, "role": link.role, "manifest": link.manifest,
            "shards": link.shards,
        }  # fmt: skip
        try:
            steps = datasets.get(link.ref).lineage()
            entry["history"] = [
                {"ref": st.ref, "operation": st.operation, "parents": st.parents, "rows": st.rows}
                for st in steps
            ]
        except ConveyorError as e:  # the dataset row is gone: the manifest still says enough
            entry["history_error"] = str(e)
        data.append(entry)
    return {
        "model": mv.ref,
        "run": m.run.model_dump() if m.run else None,
        "code_commit": m.run.git_commit if m.run else None,
        "datasets": data,
        "environment": m.environment,
        "export_check": m.export_check.model_dump() if m.export_check else None,
        "artifacts": {k: v.model_dump() for k, v in m.artifacts.items()},
    }
