"""Alembic migrations of the registry schema (run by ``modelkeep.registry.migrate``)."""
