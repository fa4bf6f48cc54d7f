"""Version identities: each version's identity across repositories, stored (filled in
lazily, parents first, for the versions made before this table).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A new table, nothing rewritten: `versions` keeps its rows and its triggers, and
    # the identities of existing versions are computed the first time they are needed
    # (hashing every version here would make the upgrade as slow as the model is long).
    op.create_table(
        "version_identities",
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("identity", sa.String(64), nullable=False),
    )
    op.create_index(
        "ix_version_identities_model_identity", "version_identities", ["model_id", "identity"]
    )
    op.execute("UPDATE meta SET value = '10' WHERE key = 'schema_version'")


def downgrade() -> None:
    op.drop_table("version_identities")
    op.execute("UPDATE meta SET value = '9' WHERE key = 'schema_version'")
