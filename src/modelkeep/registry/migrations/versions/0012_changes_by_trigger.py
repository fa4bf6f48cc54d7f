"""Change count by trigger: on PostgreSQL, every statement that writes a registry table
moves ``meta.changes``, whoever runs it — modelkeep, an admin in psql, another tool —
so a team server's kept answers never outlive a change made behind its back. Before,
only modelkeep's own write transactions counted themselves. SQLite needs nothing: its
mark (data_version) sees every commit already.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from alembic import op

from modelkeep.registry.changes import COUNTED_TABLES, counting_statements

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in counting_statements(COUNTED_TABLES, meta=True):
            op.execute(statement)
    op.execute("UPDATE meta SET value = '12' WHERE key = 'schema_version'")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION modelkeep_count_change() CASCADE")  # and its triggers
    op.execute("UPDATE meta SET value = '11' WHERE key = 'schema_version'")
