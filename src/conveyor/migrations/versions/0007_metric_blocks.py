"""Metric points as packed blocks (one row per metric per batch) instead of a row each.

The points and the rollups kept for charts are folded into blocks and their tables
dropped: reading a block is cheap enough that charts no longer need rollups.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# The block format of conveyor.tracking.blocks, copied so this migration never changes.
_POINT = np.dtype([("step", "<i8"), ("seq", "<i8"), ("value", "<f8"), ("time", "<f8")])
_BLOCK = 65_536


def upgrade() -> None:
    op.create_table(
        "run_metric_blocks",
        sa.Column("metric_id", sa.Integer(), primary_key=True),
        sa.Column("first_seq", sa.BigInteger(), primary_key=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("points", sa.LargeBinary(), nullable=False),
        sqlite_with_rowid=False,
    )
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":  # pglz on a 2 MB block costs ~20x the insert
        op.execute("ALTER TABLE run_metric_blocks ALTER COLUMN points SET STORAGE EXTERNAL")
    metric_ids = conn.execute(sa.text("SELECT DISTINCT metric_id FROM run_metric_points"))
    for (metric_id,) in metric_ids.all():
        rows = conn.execute(
            sa.text(
                "SELECT step, seq, value, wall_time FROM run_metric_points "
                "WHERE metric_id = :m ORDER BY step, seq"
            ),
            {"m": metric_id},
        ).all()
        points = np.array(
            [(s, q, np.nan if v is None else v, t) for s, q, v, t in rows], dtype=_POINT
        )
        blocks: list[dict[str, Any]] = []
        for start in range(0, len(points), _BLOCK):
            part = points[start : start + _BLOCK]
            blocks.append(
                {
                    "m": metric_id,
                    "first": int(part["seq"].min()),
                    "last": int(part["seq"].max()),
                    "count": len(part),
                    "points": part.tobytes(),
                }
            )
        conn.execute(
            sa.text(
                "INSERT INTO run_metric_blocks (metric_id, first_seq, last_seq, count, points) "
                "VALUES (:m, :first, :last, :count, :points)"
            ),
            blocks,
        )
    op.drop_table("run_metric_rollups")
    op.drop_table("run_metric_points")


def downgrade() -> None:
    op.create_table(
        "run_metric_points",
        sa.Column("metric_id", sa.Integer(), primary_key=True),
        sa.Column("step", sa.BigInteger(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("wall_time", sa.Float(), nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "run_metric_rollups",
        sa.Column("metric_id", sa.Integer(), primary_key=True),
        sa.Column("width", sa.Integer(), primary_key=True),
        sa.Column("bucket", sa.BigInteger(), primary_key=True),
        sa.Column("min_value", sa.Float(), nullable=False),
        sa.Column("min_step", sa.BigInteger(), nullable=False),
        sa.Column("min_time", sa.Float(), nullable=False),
        sa.Column("max_value", sa.Float(), nullable=False),
        sa.Column("max_step", sa.BigInteger(), nullable=False),
        sa.Column("max_time", sa.Float(), nullable=False),
        sqlite_with_rowid=False,
    )
    conn = op.get_bind()
    for metric_id, data in conn.execute(
        sa.text("SELECT metric_id, points FROM run_metric_blocks")
    ).all():
        points = np.frombuffer(data, _POINT)
        conn.execute(
            sa.text(
                "INSERT INTO run_metric_points (metric_id, step, seq, value, wall_time) "
                "VALUES (:m, :step, :seq, :value, :time) ON CONFLICT DO NOTHING"
            ),
            [
                {
                    "m": metric_id,
                    "step": int(p["step"]),
                    "seq": int(p["seq"]),
                    "value": None if np.isnan(p["value"]) else float(p["value"]),
                    "time": float(p["time"]),
                }
                for p in points
            ],
        )
    # The rollups are not rebuilt: an older Conveyor would chart long metrics from none.
    op.drop_table("run_metric_blocks")
