"""Change marks: a per-request check that a registry is unchanged (``ChangeMark``:
SQLite's; ``mark_of``: also PostgreSQL's) — it moves on every commit, by a connection of
this process or by another process, and (SQLite) when the file is replaced; it stays put
while nothing is committed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

import modelkeep
from modelkeep.registry.changes import COUNT_TRIGGER, COUNTED_TABLES, ChangeMark, CountMark, mark_of

if TYPE_CHECKING:
    from pathlib import Path


def test_a_replaced_file_moves_the_mark_and_a_missing_one_has_none(tmp_path: Path) -> None:
    with modelkeep.Repo.init(tmp_path / "repo") as repo:
        file = repo.registry.file
        if file is None:
            pytest.skip("a change mark is SQLite's")
        mark = ChangeMark(file)
        before = mark()
        copy = tmp_path / "copy.db"
        shutil.copyfile(file, copy)
        os.replace(copy, file)  # as a salvage does
        after = mark()
        assert after not in (None, before)
        os.rename(file, tmp_path / "gone.db")
        assert mark() is None  # unknown: nothing is taken as unchanged
        mark.close()


def test_no_mark_without_a_file() -> None:
    assert ChangeMark.of(None) is None
    assert modelkeep.Repo.memory().registry.file is None


def test_the_mark_of_either_engine_moves_on_every_commit_by_anyone_and_only_then(
    tmp_path: Path,
) -> None:
    """``mark_of``: SQLite's data_version, or PostgreSQL's count of write transactions
    (run under MODELKEEP_TEST_ENGINE=pg for the latter)."""
    with modelkeep.Repo.init(tmp_path / "repo") as repo:
        mark = mark_of(repo.registry)
        assert mark is not None
        first = mark()
        assert first is not None
        repo.models()  # reads change nothing
        assert mark() == first
        repo.tokens.create("alice", "read")
        second = mark()
        assert second not in (None, first)
        script = (
            "import modelkeep, sys; r = modelkeep.Repo(sys.argv[1]); "
            "r.tokens.create('bob', 'read'); r.close()"
        )
        subprocess.run([sys.executable, "-c", script, str(repo.root)], check=True)
        third = mark()
        assert third not in (None, first, second)
        # A refused write moves nothing.
        with pytest.raises(modelkeep.errors.UsageError):
            repo.tokens.create("carol", "no-such-scope")
        assert mark() == third
        mark.close()


@pytest.mark.local_engine  # picks PostgreSQL itself
def test_a_change_made_by_hand_in_sql_moves_postgresqls_mark(postgres: Any) -> None:
    """Triggers count every statement that writes a registry table, whoever runs it: an
    admin in psql moves the mark as modelkeep does, a rolled-back change does not, and
    every table has its trigger (a migration that adds a table must add one)."""
    import psycopg

    from modelkeep.registry import Registry

    url = postgres.new_database()
    reg = Registry(url)
    try:
        reg.create()
        mark = mark_of(reg)
        assert isinstance(mark, CountMark)
        seen = {mark()}
        with psycopg.connect(url, autocommit=True) as conn:
            for statement in (
                "INSERT INTO models (name, default_branch, created_at, kind) "
                "VALUES ('by-hand', 'main', now(), 'model')",
                "UPDATE models SET default_branch = 'dev' WHERE name = 'by-hand'",
                "INSERT INTO meta (key, value) VALUES ('setting.by-hand', 'x')",
                "UPDATE meta SET value = 'y' WHERE key = 'setting.by-hand'",
                "DELETE FROM meta WHERE key = 'setting.by-hand'",
                "DELETE FROM models WHERE name = 'by-hand'",
            ):
                conn.execute(statement)
                now = mark()
                assert now not in seen, statement
                seen.add(now)
            conn.execute("BEGIN")
            conn.execute("UPDATE models SET name = name")
            assert mark() in seen  # not before it commits
            conn.execute("ROLLBACK")
            assert mark() in seen  # and what was rolled back moved nothing
            tables = {
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
                )
            }
            counted = {
                r[0]
                for r in conn.execute(
                    "SELECT event_object_table FROM information_schema.triggers "
                    "WHERE trigger_name LIKE %s",
                    (f"{COUNT_TRIGGER}%",),
                )
            }
        assert tables - counted == {"alembic_version"}
        assert set(COUNTED_TABLES) | {"meta"} == counted
        mark.close()
    finally:
        reg.dispose()
        postgres.drop_database(url)
