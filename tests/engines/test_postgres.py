"""The registry on a real PostgreSQL server: migrations, pooled connections, numbering
under concurrent writers, the store lock held in the database, and bad URLs.

The server is Debian's PostgreSQL on 127.0.0.1 (``tests/services.py``); each test
gets its own database. The store is a local folder here: what only S3 adds is tested in
``test_s3_engine.py``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

import modelkeep
import modelkeep.registry
from modelkeep.errors import (
    RepositoryExistsError,
    RepositoryFormatError,
    UnreachableError,
    UsageError,
)
from modelkeep.registry import Registry
from modelkeep.registry.registry import SCHEMA_VERSION

pytestmark = pytest.mark.local_engine  # each test picks its engines itself

# Every revision the package ships, read from its folder so that a new one is tested too.
MIGRATIONS = sorted(
    path.name[:4]
    for path in (Path(modelkeep.registry.__file__).parent / "migrations" / "versions").glob(
        "[0-9][0-9][0-9][0-9]_*.py"
    )
)


@pytest.fixture
def db(postgres: Any) -> Any:
    url = postgres.new_database()
    yield url
    postgres.drop_database(url)


def _weights(tmp_path: Path, tag: str) -> Path:
    path = tmp_path / f"w-{tag}.bin"
    path.write_bytes(tag.encode() * 5000)
    return path


def test_migrations_create_a_fresh_database(db: str) -> None:
    reg = Registry(db)
    try:
        reg.create()
        reg.check_schema()
        with reg.db.read() as tx:
            assert tx.scalar("SELECT value FROM meta WHERE key = 'schema_version'") == str(
                SCHEMA_VERSION
            )
    finally:
        reg.dispose()


@pytest.mark.parametrize("start", MIGRATIONS[:-1])
def test_migrations_upgrade_from_every_earlier_schema(db: str, start: str) -> None:
    from alembic import command
    from alembic.config import Config

    reg = Registry(db)
    try:
        config = Config()
        config.set_main_option("script_location", str(reg_migrations()))
        with reg.db.write() as tx:
            config.attributes["connection"] = tx.sa
            command.upgrade(config, start)
        with reg.db.read() as tx:
            assert tx.scalar("SELECT value FROM meta WHERE key = 'schema_version'") == str(
                int(start)
            )
        reg.check_schema()  # an open brings it up to date
        with reg.db.read() as tx:
            found = tx.scalar("SELECT value FROM meta WHERE key = 'schema_version'")
        assert found == str(SCHEMA_VERSION)
    finally:
        reg.dispose()


def reg_migrations() -> Path:
    return Path(modelkeep.registry.__file__).parent / "migrations"


def test_a_thousand_commands_leave_the_connection_count_where_it_was(
    postgres: Any, db: str, tmp_path: Path, cli: Any
) -> None:
    root = tmp_path / "repo"
    repo = modelkeep.Repo.init(root, db=db)
    repo.commit("churn", _weights(tmp_path, "a"), "first")
    repo.promote("churn:1", "production")
    repo.close()
    name = db.rsplit("/", 1)[1]
    before = postgres.connections(name)
    commands = [["show", "churn@production"], ["log", "churn"], ["alias", "list", "churn"]]
    for i in range(1000):
        result = cli(root, *commands[i % len(commands)])
        assert result.code == 0, result.err
    assert postgres.connections(name) == before


def test_concurrent_writers_in_threads_get_gap_free_numbers(db: str, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    modelkeep.Repo.init(root, db=db).close()
    errors: list[BaseException] = []

    def work(w: int) -> None:
        repo = modelkeep.Repo(root)
        try:
            for i in range(10):
                repo.commit("churn", _weights(tmp_path, f"{w}-{i}"), f"{w}/{i}")
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            repo.close()

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    repo = modelkeep.Repo(root)
    try:
        assert [v.number for v in repo.log("churn", limit=None)] == list(range(40, 0, -1))
    finally:
        repo.close()


def test_gc_waits_for_a_commit_holding_the_store_lock(db: str, tmp_path: Path) -> None:
    """The store lock lives in PostgreSQL: a writer's shared hold keeps gc out, whoever
    holds it and wherever (here: another engine, as another machine would be)."""
    root = tmp_path / "repo"
    modelkeep.Repo.init(root, db=db).close()
    writer = modelkeep.Repo(root)
    collector = modelkeep.Repo(root)
    done = threading.Event()
    try:
        with writer._e.ctx.shared():
            t = threading.Thread(target=lambda: (collector.gc(), done.set()))
            t.start()
            time.sleep(0.5)
            assert not done.is_set()  # gc is waiting for the lock
        t.join(30)
        assert done.is_set()
    finally:
        writer.close()
        collector.close()


# -- bad input ------------------------------------------------------------------------


def test_init_refuses_a_wrong_scheme_and_creates_nothing(tmp_path: Path, cli: Any) -> None:
    root = tmp_path / "repo"
    result = cli(root, "init", str(root), "--db", "mysql://u:hunter2@127.0.0.1/x")
    assert result.code == 2
    line = result.one_line_error()
    assert "mysql://u@127.0.0.1/x" in line
    assert "postgresql://" in line
    assert "hunter2" not in result.err
    assert not (root / ".modelkeep").exists()
    with pytest.raises(UsageError, match="unknown store URL scheme"):
        modelkeep.Repo.init(root, store="ftp://bucket/x")
    assert not (root / ".modelkeep").exists()


def test_init_on_an_unreachable_database_says_so(tmp_path: Path, cli: Any) -> None:
    import services

    port = services.free_port()  # nothing listens there
    url = f"postgresql://mk:pw@127.0.0.1:{port}/nowhere"
    root = tmp_path / "repo"
    result = cli(root, "init", str(root), "--db", url)
    assert result.code == 7
    line = result.one_line_error()
    assert f"postgresql://mk:***@127.0.0.1:{port}/nowhere" in line
    assert "pw@" not in result.err
    assert "server is up" in line
    assert not (root / ".modelkeep").exists()


def test_wrong_credentials_and_a_missing_database(postgres: Any, tmp_path: Path) -> None:
    name = postgres.new_database().rsplit("/", 1)[1]
    url = postgres.url(name, user=postgres.password_user)
    wrong = url.replace(f"{postgres.password_user}@", f"{postgres.password_user}:nope@")
    with pytest.raises(UnreachableError, match="refused the credentials; set the password"):
        modelkeep.Repo.init(tmp_path / "a", db=wrong)
    user = postgres.password_user
    right = url.replace(f"{user}@", f"{user}:{postgres.password}@")
    repo = modelkeep.Repo.init(tmp_path / "b", db=right)
    repo.close()
    config = (tmp_path / "b" / ".modelkeep" / "config.json").read_text()
    assert postgres.password not in config  # used, never recorded
    missing = postgres.url("no_such_db")
    with pytest.raises(UnreachableError, match="does not exist on its server; create it"):
        modelkeep.Repo.init(tmp_path / "c", db=missing)
    assert not (tmp_path / "a" / ".modelkeep").exists()
    assert not (tmp_path / "c" / ".modelkeep").exists()


def test_a_database_of_a_newer_schema_is_refused(db: str, tmp_path: Path) -> None:
    modelkeep.Repo.init(tmp_path / "repo", db=db).close()
    reg = Registry(db)
    with reg.db.write() as tx:
        tx.run("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    reg.dispose()
    with pytest.raises(RepositoryFormatError, match=r"postgresql://.*schema 99.*pip install -U"):
        modelkeep.Repo(tmp_path / "repo")


def test_a_database_holding_a_repository_is_not_taken_twice(db: str, tmp_path: Path) -> None:
    repo = modelkeep.Repo.init(tmp_path / "one", db=db)
    repo.commit("churn", _weights(tmp_path, "a"), "first")
    repo.close()
    with pytest.raises(RepositoryExistsError, match="already holds a modelkeep repository"):
        modelkeep.Repo.init(tmp_path / "two", db=db)
    assert not (tmp_path / "two" / ".modelkeep").exists()


def test_open_by_urls_without_a_folder(db: str, tmp_path: Path) -> None:
    store = tmp_path / "objects"
    repo = modelkeep.Repo.init(None, db=db, store=str(store))
    v = repo.commit("churn", _weights(tmp_path, "a"), "first")
    repo.close()
    again = modelkeep.Repo.open(db=db, store=str(store))
    try:
        assert again.show("churn").number == v.number
        assert again.store_location == str(store)
    finally:
        again.close()


def test_dropped_connections_are_replaced_not_failed(
    postgres: Any, db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server drops every connection (a restart, an idle timeout): the next write
    and the next read get new connections instead of failing."""
    from modelkeep.registry import db as registry_db

    monkeypatch.setattr(registry_db, "_IDLE_PING", 0.0)  # readers ping every time here
    repo = modelkeep.Repo.init(tmp_path / "repo", db=db)
    try:
        repo.commit("churn", _weights(tmp_path, "a"), "first")
        name = db.rsplit("/", 1)[1]
        for _ in range(2):
            postgres.psql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
            repo.commit("churn", _weights(tmp_path, f"b{_}"), "after a drop")
            postgres.psql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
            assert repo.show("churn").message == "after a drop"
        assert [v.number for v in repo.log("churn")] == [3, 2, 1]
    finally:
        repo.close()
