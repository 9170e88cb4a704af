"""Registry: models, versions, aliases and their history, lineage, gates, approvals.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("created_at", _WHEN, nullable=False),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(100), sa.ForeignKey("models.name"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("manifest", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("metrics", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.UniqueConstraint("model", "number"),
    )
    op.create_index("ix_model_versions_model", "model_versions", ["model"])
    op.create_index("ix_model_versions_run_id", "model_versions", ["run_id"])
    op.create_table(
        "model_aliases",
        sa.Column("model", sa.String(100), sa.ForeignKey("models.name"), primary_key=True),
        sa.Column("alias", sa.String(100), primary_key=True),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("moved_by", sa.String(100), nullable=False),
        sa.Column("moved_at", _WHEN, nullable=False),
    )
    op.create_table(
        "model_alias_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(100), sa.ForeignKey("models.name"), nullable=False),
        sa.Column("alias", sa.String(100), nullable=False),
        sa.Column("from_number", sa.Integer(), nullable=True),
        sa.Column("to_number", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("gate", sa.String(100), nullable=True),
        sa.Column("moved_by", sa.String(100), nullable=False),
        sa.Column("moved_at", _WHEN, nullable=False),
    )
    op.create_index("ix_model_alias_events_model_alias", "model_alias_events", ["model", "alias"])
    op.create_table(
        "model_datasets",
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("model_versions.id"), primary_key=True),
        sa.Column("dataset", sa.String(100), primary_key=True),
        sa.Column("dataset_version", sa.Integer(), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
    )
    op.create_index("ix_model_datasets_dataset", "model_datasets", ["dataset", "dataset_version"])
    op.create_table(
        "model_gates",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
    )
    op.create_table(
        "model_gate_results",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("gate", sa.String(100), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("checks", sa.Text(), nullable=False),
        sa.Column("evaluated_by", sa.String(100), nullable=False),
        sa.Column("evaluated_at", _WHEN, nullable=False),
    )
    op.create_index("ix_model_gate_results_version_id", "model_gate_results", ["version_id"])
    op.create_table(
        "model_approvals",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("approved_by", sa.String(100), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("approved_at", _WHEN, nullable=False),
        sa.UniqueConstraint("version_id", "approved_by"),
    )
    op.create_index("ix_model_approvals_version_id", "model_approvals", ["version_id"])


def downgrade() -> None:
    for table in (
        "model_approvals",
        "model_gate_results",
        "model_gates",
        "model_datasets",
        "model_alias_events",
        "model_aliases",
        "model_versions",
        "models",
    ):
        op.drop_table(table)
