"""Metadata rows for serving: API keys and the index of prediction-log files.

A key row holds only a salted scrypt hash of the secret, never the secret. A prediction
file row indexes one Parquet object of the prediction log (spec: PREDICTIONS.md); the
row is written only after the object is whole in the store.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from conveyor.storage.tables import Base, utcnow


class ApiKeyRecord(Base):
    """One API key: its public id, scope, rate limit and the hash of its secret."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(16))
    salt: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(128))
    rate_limit: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PredictionFileRecord(Base):
    """One Parquet file of logged predictions for one model version."""

    __tablename__ = "prediction_files"
    __table_args__ = (Index("ix_prediction_files_model_first", "model", "first_at"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)
    first_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    worker: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FeedbackRecord(Base):
    """One true label sent back for one predicted row (`POST /feedback/{name}`).

    A label sent twice for the same row is kept twice; readers take the latest.
    """

    __tablename__ = "feedback"
    __table_args__ = (Index("ix_feedback_model_request", "model", "request_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(200))
    request_id: Mapped[str] = mapped_column(String(128))
    row: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(200))
    key_id: Mapped[str | None] = mapped_column(String(16))  # the API key that sent it
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
