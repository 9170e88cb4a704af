"""Datasets: names, versions (pointing at manifests) and lineage edges.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "dataset_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("dataset", sa.String(100), sa.ForeignKey("datasets.name"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("manifest", sa.String(64), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("dataset", "version"),
    )
    op.create_index("ix_dataset_versions_dataset", "dataset_versions", ["dataset"])
    op.create_table(
        "dataset_parents",
        sa.Column("child_id", sa.Integer(), sa.ForeignKey("dataset_versions.id"), primary_key=True),
        sa.Column(
            "parent_id", sa.Integer(), sa.ForeignKey("dataset_versions.id"), primary_key=True
        ),
    )
    op.create_index("ix_dataset_parents_parent_id", "dataset_parents", ["parent_id"])


def downgrade() -> None:
    op.drop_table("dataset_parents")
    op.drop_table("dataset_versions")
    op.drop_table("datasets")
