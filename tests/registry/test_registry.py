"""The registry: version numbering, branches, compare-and-swap ref moves, append-only history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import DatabaseError

import modelkeep
from modelkeep.errors import (
    ConflictError,
    ModelNotFoundError,
    RefExistsError,
    RefMovedError,
    RefNotFoundError,
    RegistryDamagedError,
    RepositoryFormatError,
    VersionNotFoundError,
)
from modelkeep.registry import DatasetRef, Registry
from modelkeep.registry.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from modelkeep.registry import Version


def commit(reg: Registry, model: str, branch: str | None = None, **extra: Any) -> Version:
    fields: dict[str, Any] = {
        "tree_id": "ab" * 32,
        "size": 10,
        "file_count": 1,
        "message": "msg",
        "author": "tester",
        "params": {},
        "metrics": {},
        "lineage": {},
        "datasets": [],
    }
    fields.update(extra)
    return reg.add_version(model=model, branch=branch, **fields)


def move(reg: Registry, model: str, name: str, kind: str, to: int, **extra: Any) -> Any:
    return reg.move_ref(
        model=model, name=name, kind=kind, to=to, actor="tester", action="test", **extra
    )


# -- versions ---------------------------------------------------------------------


def test_version_numbers_count_per_model(registry: Registry) -> None:
    numbers = {"churn": [], "fraud": []}
    for model in ["churn", "churn", "fraud", "churn", "fraud"]:
        numbers[model].append(commit(registry, model).number)
    assert numbers == {"churn": [1, 2, 3], "fraud": [1, 2]}
    assert [v.number for v in registry.versions("churn")] == [3, 2, 1]
    assert [(m.name, m.versions, m.latest) for m in registry.models()] == [
        ("churn", 3, 3),
        ("fraud", 2, 2),
    ]
    assert registry.model_names() == ["churn", "fraud"]


def test_version_records_what_was_committed(registry: Registry) -> None:
    ds = DatasetRef("/data/train.csv", "cd" * 32, 1234)
    v1 = commit(registry, "churn")
    v2 = commit(
        registry,
        "churn",
        message="second",
        params={"lr": 0.1},
        metrics={"f1": 0.8},
        datasets=[ds],
        lineage={"code": {"commit": "abc", "dirty": True, "repository": "/r"}},
    )
    assert v1.parents == ()
    assert v1.parent is None
    assert v2.parents == (1,)
    assert v2.branch == "main"
    assert v2.rev == "churn:2"
    stored = registry.version("churn", 2)
    assert stored == v2
    assert stored.params == {"lr": 0.1}
    assert stored.metrics == {"f1": 0.8}
    assert stored.datasets == (ds,)
    assert stored.code is not None
    assert stored.code.dirty
    assert stored.created_at.tzinfo is not None


def test_first_commit_creates_model_and_default_branch(registry: Registry) -> None:
    commit(registry, "churn")
    assert registry.default_branch("churn") == "main"
    (ref,) = registry.refs("churn")
    assert (ref.kind, ref.name, ref.version) == ("branch", "main", 1)


def test_first_commit_cannot_go_on_another_branch(registry: Registry) -> None:
    with pytest.raises(RefNotFoundError, match="new model"):
        commit(registry, "churn", branch="exp")
    assert registry.model_names() == []


def test_branch_commits_advance_only_that_branch(registry: Registry) -> None:
    for _ in range(3):
        commit(registry, "churn")
    move(registry, "churn", "exp", "branch", 2, exclusive=True)
    v4 = commit(registry, "churn", branch="exp")
    v5 = commit(registry, "churn", branch="exp")
    v6 = commit(registry, "churn")
    assert (v4.number, v5.number, v6.number) == (4, 5, 6)
    assert (v4.parents, v5.parents, v6.parents) == ((2,), (4,), (3,))
    assert v4.branch == "exp"
    assert registry.ref("churn", "exp").version == 5
    assert registry.ref("churn", "main").version == 6
    assert registry.parents_map("churn") == {1: (), 2: (1,), 3: (2,), 4: (2,), 5: (4,), 6: (3,)}


def test_commit_on_unknown_branch_lists_branches(registry: Registry) -> None:
    commit(registry, "churn")
    move(registry, "churn", "production", "alias", 1)
    with pytest.raises(RefNotFoundError, match="branch main") as info:
        commit(registry, "churn", branch="nope")
    assert "'nope'" in str(info.value)
    # An alias is not a branch: it is not listed as one, and its kind is named.
    assert "alias production" not in str(info.value)
    with pytest.raises(RefNotFoundError, match="it is an alias"):
        commit(registry, "churn", branch="production")
    assert [v.number for v in registry.versions("churn")] == [1]


def test_explicit_parents(registry: Registry) -> None:
    for _ in range(3):
        commit(registry, "churn")
    merged = commit(registry, "churn", parents=[3, 1], kind="merge")
    assert merged.parents == (3, 1)
    assert merged.kind == "merge"
    assert registry.version("churn", 4).parents == (3, 1)


# -- refs -------------------------------------------------------------------------


def test_move_ref_compare_and_swap(registry: Registry) -> None:
    for _ in range(3):
        commit(registry, "churn")
    before, ref = move(registry, "churn", "production", "alias", 1)
    assert before is None
    assert (ref.kind, ref.version) == ("alias", 1)
    events = len(registry.events("churn"))

    with pytest.raises(RefMovedError, match="points at 1, not 2"):
        move(registry, "churn", "production", "alias", 3, expected=2)
    assert registry.ref("churn", "production").version == 1
    assert len(registry.events("churn")) == events  # a refused move logs nothing

    before, ref = move(registry, "churn", "production", "alias", 3, expected=1)
    assert (before, ref.version) == (1, 3)
    assert registry.ref("churn", "production").version == 3
    # A caller that saw the alias at a version, after someone deleted it: refused too.
    with pytest.raises(RefMovedError, match="does not exist, not at 3"):
        move(registry, "churn", "staging", "alias", 2, expected=3)
    assert [r.name for r in registry.refs("churn", "alias")] == ["production"]


def test_move_ref_without_create_needs_an_existing_ref(registry: Registry) -> None:
    commit(registry, "churn")
    with pytest.raises(RefNotFoundError, match="no alias named 'production'"):
        move(registry, "churn", "production", "alias", 1, create=False)
    assert [r.name for r in registry.refs("churn")] == ["main"]


def test_exclusive_refuses_existing_ref(registry: Registry) -> None:
    commit(registry, "churn")
    commit(registry, "churn")
    move(registry, "churn", "exp", "branch", 1, exclusive=True)
    with pytest.raises(RefExistsError, match="already has a branch named 'exp'"):
        move(registry, "churn", "exp", "branch", 2, exclusive=True)
    assert registry.ref("churn", "exp").version == 1


def test_tags_never_move(registry: Registry) -> None:
    commit(registry, "churn")
    commit(registry, "churn")
    move(registry, "churn", "v1.0", "tag", 1)
    for to in (2, 1):
        with pytest.raises(RefExistsError, match="tags never move"):
            move(registry, "churn", "v1.0", "tag", to)
    assert registry.ref("churn", "v1.0").version == 1


def test_one_namespace_for_every_ref_kind(registry: Registry) -> None:
    commit(registry, "churn")
    move(registry, "churn", "production", "alias", 1)
    with pytest.raises(RefExistsError, match="is an alias, not a tag"):
        move(registry, "churn", "production", "tag", 1)
    with pytest.raises(RefExistsError, match="is a branch, not an alias"):
        move(registry, "churn", "main", "alias", 1)
    assert [(r.kind, r.name) for r in registry.refs("churn")] == [
        ("alias", "production"),
        ("branch", "main"),
    ]
    assert [r.name for r in registry.refs("churn", "alias")] == ["production"]


def test_refs_of_different_models_are_independent(registry: Registry) -> None:
    commit(registry, "churn")
    commit(registry, "churn")
    commit(registry, "fraud")
    move(registry, "churn", "production", "alias", 2)
    move(registry, "fraud", "production", "alias", 1)
    assert registry.ref("churn", "production").version == 2
    assert registry.ref("fraud", "production").version == 1
    with pytest.raises(VersionNotFoundError):
        move(registry, "fraud", "production", "alias", 2)


def test_delete_ref(registry: Registry) -> None:
    commit(registry, "churn")
    move(registry, "churn", "production", "alias", 1)
    ref = registry.delete_ref(model="churn", name="production", kind="alias", actor="t")
    assert ref.version == 1
    assert [r.name for r in registry.refs("churn")] == ["main"]
    assert registry.events("churn")[0].action == "alias.delete"
    with pytest.raises(RefExistsError, match="default branch"):
        registry.delete_ref(model="churn", name="main", kind="branch", actor="t")
    assert registry.ref("churn", "main").version == 1


# -- events -----------------------------------------------------------------------


def test_every_change_is_logged_newest_first(registry: Registry) -> None:
    commit(registry, "churn")
    commit(registry, "churn")
    move(registry, "churn", "production", "alias", 1, message="ship it")
    move(registry, "churn", "production", "alias", 2)
    events = registry.events("churn")
    assert [(e.action, e.ref_name, e.before, e.after) for e in events] == [
        ("test", "production", 1, 2),
        ("test", "production", None, 1),
        ("commit", "main", 1, 2),
        ("commit", "main", None, 1),
    ]
    assert events[1].message == "ship it"
    assert [e.id for e in events] == sorted((e.id for e in events), reverse=True)
    assert [e.after for e in registry.ref_moves("churn", "production")] == [2, 1]
    assert len(registry.events(limit=2)) == 2


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE events SET message = 'rewritten'",
        "UPDATE events SET after_version = 99 WHERE ref_name = 'production'",
        "DELETE FROM events",
        "DELETE FROM events WHERE id = 1",
    ],
)
def test_event_log_is_append_only(registry: Registry, sql: str) -> None:
    commit(registry, "churn")
    move(registry, "churn", "production", "alias", 1)
    before = registry.events()
    with pytest.raises(DatabaseError, match="append-only"), registry.engine.begin() as conn:
        conn.exec_driver_sql(sql)
    assert registry.events() == before
    # Appending still works.
    commit(registry, "churn")
    assert len(registry.events()) == len(before) + 1


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE versions SET message = 'rewritten'",
        "UPDATE versions SET tree_id = 'x' WHERE number = 1",
        "DELETE FROM versions",
    ],
)
def test_versions_are_immutable(registry: Registry, sql: str) -> None:
    commit(registry, "churn")
    commit(registry, "churn", parents=[])
    before = registry.versions("churn")
    with pytest.raises(DatabaseError, match="immutable"), registry.engine.begin() as conn:
        conn.exec_driver_sql(sql)
    assert registry.versions("churn") == before


# -- not found --------------------------------------------------------------------


def test_unknown_model_lists_models(registry: Registry) -> None:
    with pytest.raises(ModelNotFoundError, match="no models yet"):
        registry.versions("churn")
    commit(registry, "churn")
    commit(registry, "fraud")
    with pytest.raises(ModelNotFoundError, match="models here: churn, fraud") as info:
        registry.version("chrun", 1)
    assert "'chrun'" in str(info.value)
    assert isinstance(info.value, LookupError)
    for call in (
        lambda: registry.refs("chrun"),
        lambda: registry.events("chrun"),
        lambda: registry.default_branch("chrun"),
        lambda: move(registry, "chrun", "production", "alias", 1),
    ):
        with pytest.raises(ModelNotFoundError, match="models here: churn, fraud"):
            call()


def test_unknown_version_says_which_exist(registry: Registry) -> None:
    for _ in range(3):
        commit(registry, "churn")
    with pytest.raises(
        VersionNotFoundError, match=r"churn has no version 7 \(it has versions 1\.\.3\)"
    ):
        registry.version("churn", 7)
    with pytest.raises(VersionNotFoundError, match=r"versions 1\.\.3"):
        move(registry, "churn", "production", "alias", 4)
    commit(registry, "fraud")
    with pytest.raises(VersionNotFoundError, match=r"fraud has no version 2 \(.*1\.\.1\)"):
        registry.version("fraud", 2)


def test_unknown_parent_adds_no_version(registry: Registry) -> None:
    for _ in range(3):
        commit(registry, "churn")
    events = registry.events()
    with pytest.raises(VersionNotFoundError, match="has no version 9"):
        commit(registry, "churn", parents=[9])
    assert [v.number for v in registry.versions("churn")] == [3, 2, 1]
    assert registry.ref("churn", "main").version == 3
    assert registry.events() == events
    assert commit(registry, "churn").number == 4


def test_unknown_parent_error_lists_existing_versions(registry: Registry) -> None:
    for _ in range(3):
        commit(registry, "churn")
    with pytest.raises(VersionNotFoundError, match=r"versions 1\.\.3\)"):
        commit(registry, "churn", parents=[9])


def test_unknown_ref_lists_refs(registry: Registry) -> None:
    commit(registry, "churn")
    move(registry, "churn", "production", "alias", 1)
    move(registry, "churn", "v1", "tag", 1)
    with pytest.raises(
        RefNotFoundError,
        match=r"churn has no branch, alias or tag named 'prod' "
        r"\(has: alias production, branch main, tag v1\)",
    ) as info:
        registry.ref("churn", "prod")
    assert isinstance(info.value, LookupError)
    with pytest.raises(RefNotFoundError, match=r"no branch named 'production'; it is an alias"):
        registry.ref("churn", "production", ("branch",))


# -- replicas ---------------------------------------------------------------------


def report(reg: Registry, server: str, replica: str, **extra: Any) -> None:
    fields: dict[str, Any] = {
        "model": "churn",
        "alias": "production",
        "host": "web1",
        "pid": 4242,
        "version": 1,
        "versions": [1],
        "state": "serving",
        "error": None,
    }
    fields.update(extra)
    model, alias = fields.pop("model"), fields.pop("alias")
    reg.report_replica(model, alias, server, replica, **fields)


def _backdate(reg: Registry, by: timedelta) -> None:
    """Every replica row as if it had started and last reported ``by`` ago."""
    with reg.db.write() as tx:
        then = datetime.now(UTC) - by
        tx.run("UPDATE replicas SET started_at = :then, seen_at = :then", {"then": then})


def test_a_replica_report_overwrites_its_row_and_keeps_started_at(registry: Registry) -> None:
    commit(registry, "churn")
    commit(registry, "churn")
    report(registry, "local:127.0.0.1:8080", "0", state="starting", version=None, versions=[])
    [first] = registry.replicas()
    assert (first.model, first.alias, first.server, first.replica) == (
        "churn", "production", "local:127.0.0.1:8080", "0",
    )  # fmt: skip
    assert (first.version, first.versions, first.state, first.rev) == (None, (), "starting", None)
    assert first.started_at == first.seen_at
    assert first.seen_at.tzinfo is not None
    _backdate(registry, timedelta(hours=1))
    [backdated] = registry.replicas()
    report(registry, "local:127.0.0.1:8080", "0", version=2, versions=[2, 1], pid=4243)
    [again] = registry.replicas()
    assert again.started_at == backdated.started_at
    assert again.seen_at > backdated.seen_at + timedelta(minutes=59)
    assert (again.version, again.versions, again.state, again.pid) == (2, (2, 1), "serving", 4243)
    assert again.rev == "churn:2"
    report(registry, "local:127.0.0.1:8080", "0", state="failed", error="cannot load churn:3")
    [failed] = registry.replicas()
    assert (failed.state, failed.error) == ("failed", "cannot load churn:3")
    assert failed.to_dict() == {
        "model": "churn",
        "alias": "production",
        "server": "local:127.0.0.1:8080",
        "replica": "0",
        "host": "web1",
        "pid": 4242,
        "version": 1,
        "versions": [1],
        "state": "failed",
        "error": "cannot load churn:3",
        "started_at": backdated.started_at.isoformat(),
        "seen_at": failed.seen_at.isoformat(),
        "rev": "churn:1",
    }
    # A gauge, not an event.
    assert [e.action for e in registry.events()] == ["commit", "commit"]


def test_replicas_are_listed_by_model_alias_server_and_replica(registry: Registry) -> None:
    commit(registry, "churn")
    commit(registry, "fraud")
    for server, replica in [("ray:churn", "b"), ("local:127.0.0.1:8080", "1"),
                            ("ray:churn", "a"), ("local:127.0.0.1:8080", "0")]:  # fmt: skip
        report(registry, server, replica)
    report(registry, "ray:fraud", "a", model="fraud")
    report(registry, "local:127.0.0.1:9090", "0", alias="staging")
    listed = [(r.model, r.alias, r.server, r.replica) for r in registry.replicas()]
    assert listed == [
        ("churn", "production", "local:127.0.0.1:8080", "0"),
        ("churn", "production", "local:127.0.0.1:8080", "1"),
        ("churn", "production", "ray:churn", "a"),
        ("churn", "production", "ray:churn", "b"),
        ("churn", "staging", "local:127.0.0.1:9090", "0"),
        ("fraud", "production", "ray:fraud", "a"),
    ]
    assert [r.server for r in registry.replicas("fraud")] == ["ray:fraud"]
    assert [r.server for r in registry.replicas("churn", "staging")] == ["local:127.0.0.1:9090"]
    assert {r.model for r in registry.replicas(alias="production")} == {"churn", "fraud"}
    assert registry.replicas("churn", "canary") == []


def test_a_report_forgets_replicas_silent_for_a_week(registry: Registry) -> None:
    commit(registry, "churn")
    with registry.db.write() as tx:
        [model_id] = [r[0] for r in tx.rows("SELECT id FROM models")]
        for replica, days in [("gone", 8), ("quiet", 6)]:
            then = datetime.now(UTC) - timedelta(days=days)
            tx.run(
                "INSERT INTO replicas (server, replica, model_id, alias, host, pid, version, "
                "versions, state, error, started_at, seen_at) VALUES ('ray:churn', :replica, "
                ":model_id, 'production', 'gpu1', 7, 1, :versions, 'serving', NULL, :then, "
                ":then)",
                {"replica": replica, "model_id": model_id, "versions": [1], "then": then},
            )
    assert [r.replica for r in registry.replicas()] == ["gone", "quiet"]
    report(registry, "ray:churn", "new")
    assert [r.replica for r in registry.replicas()] == ["new", "quiet"]


def test_replicas_of_an_unknown_model(registry: Registry) -> None:
    commit(registry, "churn")
    with pytest.raises(ModelNotFoundError, match=r"no model named 'frod' \(models here: churn\)"):
        report(registry, "ray:frod", "a", model="frod")
    with pytest.raises(ModelNotFoundError, match="no model named 'frod'"):
        registry.replicas("frod")
    assert registry.replicas() == []


# -- schema -----------------------------------------------------------------------


def test_check_schema_accepts_its_own_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    reg = Registry(url)
    reg.create()
    reg.dispose()
    again = Registry(url)
    try:
        again.check_schema()
        assert again.model_names() == []
    finally:
        again.dispose()


def _set_schema(url: str, value: str) -> None:
    reg = Registry(url)
    try:
        with reg.db.write() as tx:
            tx.run("UPDATE meta SET value = :v WHERE key = 'schema_version'", {"v": value})
    finally:
        reg.dispose()


def test_check_schema_refuses_a_newer_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    reg = Registry(url)
    reg.create()
    reg.dispose()
    newer_version = SCHEMA_VERSION + 1
    _set_schema(url, str(newer_version))
    newer = Registry(url)
    try:
        with pytest.raises(
            RepositoryFormatError, match=f"schema {newer_version}, newer than"
        ) as info:
            newer.check_schema()
        assert "upgrade" in str(info.value)
    finally:
        newer.dispose()


def test_an_older_schema_is_migrated_on_open(
    tmp_path: Path, upgrade_to: Callable[[Any, str], None]
) -> None:
    """A registry written by the first release (migration 0001 only) is upgraded by
    Alembic when opened, and keeps its versions and append-only triggers."""
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    old = Registry(url)
    with old.engine.begin() as conn:
        upgrade_to(conn, "0001")
        conn.exec_driver_sql(
            "INSERT INTO models (name, default_branch, created_at) "
            "VALUES ('churn', 'main', '2026-01-01 00:00:00')"
        )
    old.dispose()
    reg = Registry(url)
    reg.check_schema()  # migrates
    try:
        assert [m.kind for m in reg.models()] == ["model"]
        with reg.engine.connect() as conn:
            value = conn.exec_driver_sql(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).scalar()
            triggers = conn.exec_driver_sql(
                "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"
            ).scalar()
        assert value == str(SCHEMA_VERSION)
        assert triggers == 4
    finally:
        reg.dispose()


def _rows_of_schema_7(tx: Any) -> None:
    """Model churn with versions 1 and 2 on main, and churn@production at 2."""
    now = datetime.now(UTC)
    tx.run(
        "INSERT INTO models (id, name, default_branch, created_at, kind) "
        "VALUES (1, 'churn', 'main', :now, 'model')",
        {"now": now},
    )
    for number in (1, 2):
        tx.run(
            "INSERT INTO versions (id, model_id, number, branch, tree_id, size, file_count, "
            "message, author, created_at, kind, status, params, metrics, lineage) VALUES "
            "(:n, 1, :n, 'main', :tree, 10, 1, 'msg', 'tester', :now, 'commit', 'ok', :doc, "
            ":doc, :doc)",
            {"n": number, "tree": "ab" * 32, "now": now, "doc": {}},
        )
    tx.run("INSERT INTO version_parents (version_id, position, parent_id) VALUES (2, 0, 1)")
    for kind, name in (("branch", "main"), ("alias", "production")):
        tx.run(
            "INSERT INTO refs (model_id, kind, name, version_id, updated_at) "
            "VALUES (1, :kind, :name, 2, :now)",
            {"kind": kind, "name": name, "now": now},
        )


def test_schema_7_is_migrated_to_8_with_its_data(
    empty_url: str, upgrade_to: Callable[[Any, str], None]
) -> None:
    """A registry of the release before replicas (schema 7) gets the replicas table on
    open, and keeps its versions, refs and deployments."""
    old = Registry(empty_url)
    try:
        with old.db.write() as tx:
            upgrade_to(tx.sa, "0007")
        # Rows as that release wrote them (this release's code writes the newer schema).
        with old.db.write() as tx:
            _rows_of_schema_7(tx)
        with old.db.read() as tx:
            assert tx.scalar("SELECT value FROM meta WHERE key = 'schema_version'") == "7"
            assert not inspect(tx.sa).has_table("replicas")
    finally:
        old.dispose()
    reg = Registry(empty_url)
    try:
        reg.check_schema()  # migrates
        with reg.db.read() as tx:
            found = tx.scalar("SELECT value FROM meta WHERE key = 'schema_version'")
            assert found == str(SCHEMA_VERSION)
            columns = {c["name"] for c in inspect(tx.sa).get_columns("replicas")}
            key = inspect(tx.sa).get_pk_constraint("replicas")["constrained_columns"]
        assert columns == {
            "server", "replica", "model_id", "alias", "host", "pid", "version", "versions",
            "state", "error", "started_at", "seen_at",
        }  # fmt: skip
        assert key == ["server", "replica"]
        assert [v.number for v in reg.versions("churn")] == [2, 1]
        assert reg.ref("churn", "production").version == 2
        report(reg, "ray:churn", "a", version=2, versions=[2])
        assert [r.rev for r in reg.replicas("churn")] == ["churn:2"]
    finally:
        reg.dispose()


def test_opening_a_repo_with_a_newer_schema_fails(tmp_path: Path) -> None:
    repo = modelkeep.Repo.init(tmp_path)
    url = repo.registry.url
    repo.close()
    _set_schema(url, "99")
    with pytest.raises(RepositoryFormatError, match="schema 99"):
        modelkeep.Repo(tmp_path)


def test_check_schema_on_a_database_without_tables(tmp_path: Path) -> None:
    reg = Registry(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        # Damaged, not "missing": re-creating a repository would lose every version.
        match = r"is damaged \(no such table: meta\).*Repo\.repair\(\) salvages"
        with pytest.raises(RegistryDamagedError, match=match):
            reg.check_schema()
    finally:
        reg.dispose()


def test_check_schema_on_a_damaged_schema_version(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    reg = Registry(url)
    reg.create()
    reg.dispose()
    _set_schema(url, "garbage")
    damaged = Registry(url)
    try:
        with pytest.raises(RegistryDamagedError, match="schema_version 'garbage' is not a number"):
            damaged.check_schema()
    finally:
        damaged.dispose()


def test_memory_repo_has_a_working_registry() -> None:
    repo = modelkeep.Repo.memory()
    try:
        assert repo.models() == []
        repo.registry.check_schema()
        commit(repo.registry, "churn")
        assert [m.name for m in repo.models()] == ["churn"]
        with pytest.raises(DatabaseError, match="append-only"), repo.registry.engine.begin() as c:
            c.exec_driver_sql("DELETE FROM events")
    finally:
        repo.close()


def test_window_parts_merge_once_even_when_two_workers_try(registry: Registry) -> None:
    """Two workers that both believed they led (a lease that lapsed while one was busy)
    merge the same parts: the second merge is refused whole, so no window counts twice."""
    commit(registry, "churn")
    parts = [
        registry.add_report(
            "churn", 1, kind="window-part", source=f"worker {w}", drifted=False, body={"w": w}
        )
        for w in ("a", "b")
    ]
    first = registry.add_report(
        "churn", 1, kind="window", source="slot 7", drifted=False, body={}, replaces=parts
    )
    with pytest.raises(ConflictError, match="merged already"):
        registry.add_report(
            "churn", 1, kind="window", source="slot 7", drifted=False, body={}, replaces=parts
        )
    assert [r["id"] for r in registry.reports("churn", 1)] == [first]
