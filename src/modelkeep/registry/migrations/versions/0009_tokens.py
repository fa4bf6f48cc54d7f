"""Tokens: access tokens of a team server (only a hash of each secret is kept); events
record the token and the address a change came through.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user", sa.String(256), nullable=False),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("models", sa.String(256), nullable=False, server_default="*"),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_by", sa.String(256)),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
    )
    # Plain ADD COLUMN (nullable, no default: existing rows are not rewritten): batch mode
    # would rebuild `events` on SQLite and drop its append-only triggers; on PostgreSQL
    # the triggers fire on UPDATE and DELETE only, which adding a column is not.
    op.add_column("events", sa.Column("token_id", sa.String(32), nullable=True))
    op.add_column("events", sa.Column("address", sa.String(64), nullable=True))
    op.execute("UPDATE meta SET value = '9' WHERE key = 'schema_version'")


def downgrade() -> None:
    op.drop_column("events", "address")
    op.drop_column("events", "token_id")
    op.drop_table("tokens")
    op.execute("UPDATE meta SET value = '8' WHERE key = 'schema_version'")
