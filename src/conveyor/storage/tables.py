"""The metadata tables of the ground floor. Later layers add their own tables and migrations.

Rows are an index over the object store, not the truth for bytes: a row that names an
object is only written after the object is whole in the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, String
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Shared declarative base; its metadata is what the migrations must match."""


class WorkspaceInfo(Base):
    """Facts about the workspace itself (its id, when and by which version it was made)."""

    __tablename__ = "workspace_info"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(1024))


class ObjectRecord(Base):
    """One content-addressed object known to the workspace."""

    __tablename__ = "objects"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(255), default="application/octet-stream")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def index_objects(session: Session, stored: Iterable[tuple[str, int]], media_type: str) -> None:
    """Add index rows for objects already whole in the store; existing rows are kept.

    `INSERT ... ON CONFLICT DO NOTHING` so concurrent writers of the same bytes never fail.
    """
    rows = [
        {"digest": d, "size": s, "media_type": media_type, "created_at": utcnow()}
        for d, s in dict(stored).items()
    ]
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(ObjectRecord).values(rows).on_conflict_do_nothing())
