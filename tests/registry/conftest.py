"""Registries the registry tests share: one per engine (SQLite in memory and a real
PostgreSQL server), empty databases, and Alembic run up to an older schema."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelkeep.registry import Registry
from modelkeep.registry import registry as registry_module

MEMORY_URL = "sqlite+pysqlite:///:memory:"


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request: pytest.FixtureRequest) -> Iterator[Registry]:
    """The same registry tests on SQLite (in memory) and on a real PostgreSQL server."""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres").new_database()
    else:
        url = MEMORY_URL
    reg = Registry(url)
    reg.create()
    yield reg
    reg.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on SQLite (a file) and on a real PostgreSQL server."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres").new_database())
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def upgrade_to() -> Callable[[Any, str], None]:
    """``upgrade_to(connection, "0007")``: Alembic's migrations up to that revision, on
    a SQLAlchemy connection (an older release's schema)."""
    from alembic import command
    from alembic.config import Config

    def upgrade(connection: Any, revision: str) -> None:
        config = Config()
        config.set_main_option(
            "script_location", str(Path(registry_module.__file__).parent / "migrations")
        )
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    return upgrade
