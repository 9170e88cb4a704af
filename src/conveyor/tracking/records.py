"""Metadata rows for experiment tracking: runs and what they log.

Metric points live in packed blocks, one row per metric per delivered batch (see
blocks.py), so a metric's history is a few blobs; `run_metrics` holds one row per
(run, key) with the latest, minimum and maximum value, so listing and searching runs
never touch the points. Every row a writer adds has an identity that makes a second
delivery of the same event a no-op (see SPOOL.md): blocks, notes and usage carry a
`seq`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from conveyor.storage.tables import Base, utcnow


class RunRecord(Base):
    """One run: who ran what, where, and how it ended."""

    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    experiment: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(16))
    user: Mapped[str] = mapped_column(String(100))
    host: Mapped[str] = mapped_column(String(255))
    git_commit: Mapped[str | None] = mapped_column(String(40))
    sessions: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RunParamRecord(Base):
    """A parameter; `number` holds its numeric value, if any, for range filters."""

    __tablename__ = "run_params"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    number: Mapped[float | None] = mapped_column(Float)


class RunTagRecord(Base):
    __tablename__ = "run_tags"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RunMetricRecord(Base):
    """One metric of one run, with a running summary kept by the writer."""

    __tablename__ = "run_metrics"
    __table_args__ = (UniqueConstraint("run_id", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    key: Mapped[str] = mapped_column(String(250))
    last_value: Mapped[float | None] = mapped_column(Float)
    last_step: Mapped[int | None] = mapped_column(BigInteger)
    last_seq: Mapped[int | None] = mapped_column(BigInteger)
    first_step: Mapped[int | None] = mapped_column(BigInteger)
    min_value: Mapped[float | None] = mapped_column(Float)
    max_value: Mapped[float | None] = mapped_column(Float)


class MetricBlockRecord(Base):
    """The points one batch logged for one metric, packed (format in blocks.py).

    No foreign key on `metric_id`, on purpose: the writer takes the id from the
    `run_metrics` row in the same transaction.
    """

    __tablename__ = "run_metric_blocks"
    __table_args__ = {"sqlite_with_rowid": False}  # noqa: RUF012 - SQLAlchemy reads it
    metric_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(Integer)
    points: Mapped[bytes] = mapped_column(LargeBinary)


class RunNoteRecord(Base):
    __tablename__ = "run_notes"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    logged_at: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)


class RunUsageRecord(Base):
    """Compute used by a run on one device type; a run's usage is the sum of its rows."""

    __tablename__ = "run_usage"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    logged_at: Mapped[float] = mapped_column(Float)
    device: Mapped[str] = mapped_column(String(32))
    seconds: Mapped[float] = mapped_column(Float)
    energy_kwh: Mapped[float] = mapped_column(Float)
    cost_usd: Mapped[float] = mapped_column(Float)


class RunArtifactRecord(Base):
    """A named file of a run; the bytes are the content-addressed object `digest`."""

    __tablename__ = "run_artifacts"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(500), primary_key=True)
    digest: Mapped[str] = mapped_column(ForeignKey("objects.digest"))
    size: Mapped[int] = mapped_column(BigInteger)
    logged_at: Mapped[float] = mapped_column(Float)
