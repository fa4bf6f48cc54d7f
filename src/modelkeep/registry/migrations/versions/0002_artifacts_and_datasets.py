"""Versions remember their model format (artifact); models can be datasets.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN: batch mode would rebuild `versions` and drop its triggers.
    op.add_column("versions", sa.Column("artifact", sa.JSON, nullable=True))
    op.add_column(
        "models", sa.Column("kind", sa.String(16), nullable=False, server_default="model")
    )
    op.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")


def downgrade() -> None:
    op.drop_column("models", "kind")
    op.drop_column("versions", "artifact")
