"""Metadata rows for monitoring: alert events (spec: ALERTS.md).

An event is written when a rule starts firing and again when it resolves; the open
alerts are the firing events without a later resolution, so a restarted monitor knows
what it already said and neither loses nor repeats an alert. Other parts (retraining)
read these rows; monitoring never calls them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from conveyor.storage.tables import Base, utcnow


class MonitorEventRecord(Base):
    """One alert event: a rule on a served model version fired or resolved."""

    __tablename__ = "monitor_events"
    __table_args__ = (Index("ix_monitor_events_model_at", "model", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(200))
    version: Mapped[int | None] = mapped_column(Integer)
    rule: Mapped[str] = mapped_column(String(500))  # the rule's name (its text by default)
    kind: Mapped[str] = mapped_column(String(16))  # "firing" or "resolved"
    value: Mapped[float | None] = mapped_column(Float)  # the figure the rule read
    detail: Mapped[str] = mapped_column(Text, default="{}")  # JSON: window, threshold...
    delivery: Mapped[str] = mapped_column(Text, default="{}")  # JSON: webhook -> outcome
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
