"""Metadata rows for the registry: the index over version manifests in the object store.

A version's manifest (MODEL.md) holds what the version is; rows hold what changes or is
searched: its status (archived or not), the aliases pointing at it and their history,
the dataset versions it was built on (for `conveyor data used-by`), gates, their
results and approvals. An alias row carries a revision so a move is a conditional
update: two concurrent promotes never both win.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from conveyor.storage.tables import Base, utcnow


class ModelRecord(Base):
    __tablename__ = "models"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelVersionRecord(Base):
    """One registered version; `metrics` is a JSON copy of the manifest's, for listings."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model", "number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(ForeignKey("models.name"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    manifest: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(16))  # "ready" or "archived"
    metrics: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelAliasRecord(Base):
    """Where an alias points now; `revision` grows by one with every move."""

    __tablename__ = "model_aliases"
    model: Mapped[str] = mapped_column(ForeignKey("models.name"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(100), primary_key=True)
    number: Mapped[int] = mapped_column(Integer)
    revision: Mapped[int] = mapped_column(Integer)
    moved_by: Mapped[str] = mapped_column(String(100))
    moved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelAliasEventRecord(Base):
    """One alias move: who moved it, when, why, from which version to which."""

    __tablename__ = "model_alias_events"
    __table_args__ = (Index("ix_model_alias_events_model_alias", "model", "alias"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(ForeignKey("models.name"))
    alias: Mapped[str] = mapped_column(String(100))
    from_number: Mapped[int | None] = mapped_column(Integer)
    to_number: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    gate: Mapped[str | None] = mapped_column(String(100))
    moved_by: Mapped[str] = mapped_column(String(100))
    moved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelDatasetRecord(Base):
    """A lineage edge: the version was trained or evaluated on this dataset version."""

    __tablename__ = "model_datasets"
    __table_args__ = (Index("ix_model_datasets_dataset", "dataset", "dataset_version"),)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), primary_key=True)
    dataset: Mapped[str] = mapped_column(String(100), primary_key=True)
    dataset_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    role: Mapped[str] = mapped_column(String(16))  # "train" (or "eval")


class GateRecord(Base):
    """A named gate: its checks as JSON (the YAML file's content, validated)."""

    __tablename__ = "model_gates"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    spec: Mapped[str] = mapped_column(Text)
    updated_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class GateResultRecord(Base):
    """One evaluation of a gate on a version, with each check's measured figures."""

    __tablename__ = "model_gate_results"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    gate: Mapped[str] = mapped_column(String(100))
    passed: Mapped[bool] = mapped_column(Boolean)
    checks: Mapped[str] = mapped_column(Text)
    evaluated_by: Mapped[str] = mapped_column(String(100))
    evaluated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApprovalRecord(Base):
    """A person's sign-off on a version (the `approval` check of a gate)."""

    __tablename__ = "model_approvals"
    __table_args__ = (UniqueConstraint("version_id", "approved_by"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    approved_by: Mapped[str] = mapped_column(String(100))
    note: Mapped[str] = mapped_column(Text)
    approved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DriftReferenceRecord(Base):
    """A model version's drift reference (a JSON object in the store, spec DRIFT.md):
    written at registration, or backfilled the first time a version is monitored."""

    __tablename__ = "drift_references"
    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
