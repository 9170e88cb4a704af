"""Metadata rows for datasets: the index over manifests kept in the object store."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from conveyor.storage.tables import Base, utcnow


class DatasetRecord(Base):
    __tablename__ = "datasets"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DatasetVersionRecord(Base):
    """One immutable version; its manifest object holds everything else."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset: Mapped[str] = mapped_column(ForeignKey("datasets.name"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    manifest: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(BigInteger)
    bytes: Mapped[int] = mapped_column(BigInteger)
    operation: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DatasetParentRecord(Base):
    """A lineage edge: `child` was made from `parent`."""

    __tablename__ = "dataset_parents"
    child_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), primary_key=True)
    parent_id: Mapped[int] = mapped_column(
        ForeignKey("dataset_versions.id"), primary_key=True, index=True
    )
