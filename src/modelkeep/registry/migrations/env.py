"""Alembic environment: modelkeep always passes its own open connection."""

from alembic import context

from modelkeep.registry.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things in place; batch mode rebuilds tables instead.
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
