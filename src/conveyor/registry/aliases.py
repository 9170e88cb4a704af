"""Alias moves: one transaction writes the alias and its history row together.

A move is a conditional update on the alias row's revision, so of two promotes that
read the same revision only one lands; the other is told the alias moved meanwhile.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from conveyor.core.errors import ConveyorError
from conveyor.registry.records import ModelAliasEventRecord, ModelAliasRecord
from conveyor.storage.metadata import MetadataStore


class AliasMovedError(ConveyorError):
    """Someone else moved the alias between reading it and moving it."""


@dataclass(frozen=True)
class AliasMove:
    """One entry of an alias's history."""

    model: str
    alias: str
    from_number: int | None
    to_number: int
    reason: str
    gate: str | None
    moved_by: str
    moved_at: datetime


def who() -> str:
    """The user recorded with moves, approvals and gate results."""
    try:
        return (os.environ.get("CONVEYOR_USER") or getpass.getuser())[:100]
    except (KeyError, OSError):
        return "unknown"


def current(session: Session, model: str, alias: str) -> ModelAliasRecord | None:
    return session.get(ModelAliasRecord, (model, alias), populate_existing=True)


def move(
    meta: MetadataStore,
    model: str,
    alias: str,
    number: int,
    *,
    expected: tuple[int, int] | None,
    reason: str,
    gate: str | None,
) -> AliasMove:
    """Point `alias` at `number` if it still is where the caller saw it (`expected` is
    (number, revision), or None when it did not exist)."""
    user = who()
    try:
        with meta.write() as s:
            if expected is None:
                s.add(
                    ModelAliasRecord(
                        model=model, alias=alias, number=number, revision=1, moved_by=user
                    )
                )
                s.flush()
            else:
                moved = s.execute(
                    update(ModelAliasRecord)
                    .where(
                        ModelAliasRecord.model == model,
                        ModelAliasRecord.alias == alias,
                        ModelAliasRecord.revision == expected[1],
                    )
                    .values(number=number, revision=expected[1] + 1, moved_by=user)
                )
                if moved.rowcount != 1:  # type: ignore[attr-defined]
                    raise _moved(model, alias)
            event = ModelAliasEventRecord(
                model=model, alias=alias, from_number=expected[0] if expected else None,
                to_number=number, reason=reason, gate=gate, moved_by=user,
            )  # fmt: skip
            s.add(event)
            s.flush()
            return _move(event)
    except IntegrityError as e:  # a concurrent first promote created the alias
        raise _moved(model, alias) from e


def history(session: Session, model: str, alias: str | None = None) -> list[AliasMove]:
    query = select(ModelAliasEventRecord).where(ModelAliasEventRecord.model == model)
    if alias is not None:
        query = query.where(ModelAliasEventRecord.alias == alias)
    events = session.scalars(query.order_by(ModelAliasEventRecord.id)).all()
    return [_move(e) for e in events]


def _move(e: ModelAliasEventRecord) -> AliasMove:
    return AliasMove(
        e.model, e.alias, e.from_number, e.to_number, e.reason, e.gate, e.moved_by, e.moved_at
    )


def _moved(model: str, alias: str) -> AliasMovedError:
    return AliasMovedError(
        f"{model}@{alias} was moved by someone else while this promote ran",
        f"look at `conveyor models show {model}` and promote again if still wanted",
    )
