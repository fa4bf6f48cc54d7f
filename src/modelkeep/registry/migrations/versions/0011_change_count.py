"""Change count: on PostgreSQL every write transaction bumps ``meta.changes`` before it
commits, and a team server reads it per request to know that nothing changed (SQLite
has its own mark, data_version). The schema number moves with it so that a release
that does not bump the count refuses the registry rather than write past a server's
notice.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("INSERT INTO meta (key, value) VALUES ('changes', '0') ON CONFLICT (key) DO NOTHING")
    op.execute("UPDATE meta SET value = '11' WHERE key = 'schema_version'")


def downgrade() -> None:
    op.execute("DELETE FROM meta WHERE key = 'changes'")
    op.execute("UPDATE meta SET value = '10' WHERE key = 'schema_version'")
