"""Scheduled periodic checks: a revision, a period and a data path template.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitor_schedules",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("revision", sa.String(300), nullable=False),
        sa.Column("every_seconds", sa.BigInteger, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("target", sa.String(256)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("last_slot", sa.BigInteger),
        sa.Column("last_run_at", sa.DateTime(timezone=True)),
        sa.Column("last_status", sa.String(16)),
        sa.Column("last_report", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("active", sa.Boolean, nullable=False),
    )
    op.create_index("ix_monitor_schedules_model", "monitor_schedules", ["model_id", "active"])
    op.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")


def downgrade() -> None:
    op.drop_table("monitor_schedules")
    op.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
