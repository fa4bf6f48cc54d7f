"""Stored version identities (``version_identities``, migration 0010): stored when a
version is added, equal to the identities hashed afresh from the versions; a registry
from before them upgrades and fills them in lazily, parents first; a fill cut short,
or two processes filling at once, leave every stored identity right; a registry this
process may only read computes them without storing. Both engines."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect

from children import finish, spawn
from modelkeep.registry import Registry
from modelkeep.registry import registry as registry_module
from modelkeep.registry.identity import identity_of
from modelkeep.registry.schema import SCHEMA_VERSION


def commit(reg: Registry, model: str = "churn", branch: str | None = None, **extra: Any) -> int:
    fields: dict[str, Any] = {
        "tree_id": "ab" * 32,
        "size": 10,
        "file_count": 1,
        "message": "msg",
        "author": "tester",
        "params": {"lr": 0.1, "layers": [64, 8]},
        "metrics": {"f1": 0.8},
        "lineage": {"environment": {"python": "3.11"}},
        "datasets": [],
    }
    fields.update(extra)
    return reg.add_version(model=model, branch=branch, **fields).number


def history(reg: Registry, model: str = "churn") -> None:
    """Versions 1..6 of ``model``: a branch, and a merge of it (two parents)."""
    commit(reg, model, message="one")
    commit(reg, model, message="two")
    reg.move_ref(
        model=model, name="exp", kind="branch", to=1, actor="tester", action="branch.create"
    )
    commit(reg, model, branch="exp", message="three, on exp")
    commit(reg, model, message="four")
    commit(reg, model, message="merge", parents=[4, 3])
    commit(reg, model, message="six", metrics={"f1": 0.9, "by_class": {"a": 1, "b": [0.5, None]}})


def recomputed(reg: Registry, model: str = "churn") -> dict[int, str]:
    """Every identity hashed afresh from the versions, as before they were stored."""
    found: dict[int, str] = {}
    for v in sorted(reg.versions(model), key=lambda v: v.number):
        found[v.number] = identity_of(v, [found[p] for p in v.parents])
    return found


def stored(reg: Registry, model: str = "churn") -> dict[int, str]:
    """Number → identity as stored, of the versions of ``model`` that have one."""
    with reg.db.read() as tx:
        rows = tx.rows(
            "SELECT versions.number, version_identities.identity FROM version_identities "
            "JOIN versions ON versions.id = version_identities.version_id "
            "JOIN models ON models.id = versions.model_id WHERE models.name = :model",
            {"model": model},
        )
    return dict(rows)


def wipe(reg: Registry) -> None:
    """Forget the stored identities, as a registry from before them has none."""
    with reg.db.write() as tx:
        tx.run("DELETE FROM version_identities")


def test_identities_are_stored_as_versions_are_added_and_equal_those_recomputed(
    registry: Registry,
) -> None:
    history(registry)
    commit(registry, "fraud")
    expected = recomputed(registry)
    assert len(expected) == 6
    assert len(set(expected.values())) == 6
    # Stored in the transaction that added each version: nothing to fill in.
    assert stored(registry) == expected
    assert stored(registry, "fraud") == recomputed(registry, "fraud")
    with registry.db.read() as tx:
        assert tx.scalar("SELECT count(*) FROM version_identities") == 7
    assert registry.identities("churn") == expected
    assert registry.identities("churn", [5, 2, 99]) == {2: expected[2], 5: expected[5]}
    assert registry.identities("nothing") == {}
    # The merge's identity covers its parents in their order.
    merge = registry.version("churn", 5)
    assert expected[5] == identity_of(merge, [expected[4], expected[3]])
    assert expected[5] != identity_of(merge, [expected[3], expected[4]])


def test_numbers_by_identity_is_one_lookup_and_fills_in_first(registry: Registry) -> None:
    history(registry)
    expected = recomputed(registry)
    asked = [expected[5], expected[1], "f" * 64]
    assert registry.numbers_by_identity("churn", asked) == {expected[5]: 5, expected[1]: 1}
    assert registry.numbers_by_identity("nothing", asked) == {}
    wipe(registry)
    assert registry.numbers_by_identity("churn", asked) == {expected[5]: 5, expected[1]: 1}
    assert stored(registry) == expected


def test_identities_missing_are_filled_in_parents_first_and_stored(registry: Registry) -> None:
    history(registry)
    expected = recomputed(registry)
    wipe(registry)
    # Added on a parent with no identity stored: left to be filled in with it.
    commit(registry, message="seven")
    assert stored(registry) == {}
    # Asking for one version fills in the whole model (its ancestry needs it).
    seven = recomputed(registry)[7]
    assert registry.identities("churn", [7]) == {7: seven}
    assert stored(registry) == {**expected, 7: seven}
    # From now on a new version has its identity at once.
    commit(registry, message="eight")
    assert stored(registry) == recomputed(registry)


def test_a_registry_that_may_only_be_read_computes_without_storing(registry: Registry) -> None:
    history(registry)
    expected = recomputed(registry)
    wipe(registry)
    # As a read-only file makes it (permissions do not bind root, who runs CI).
    registry.read_only = True
    try:
        assert registry.identities("churn") == expected
        assert registry.numbers_by_identity("churn", [expected[6]]) == {expected[6]: 6}
        assert stored(registry) == {}
    finally:
        registry.read_only = False


def test_a_wrong_stored_identity_is_found_and_repaired(registry: Registry) -> None:
    history(registry)
    expected = recomputed(registry)
    assert registry.identity_problems() == []
    with registry.db.write() as tx:  # as a hand edit, or a bug of some release, would
        tx.run(
            "UPDATE version_identities SET identity = :bad WHERE version_id = "
            "(SELECT id FROM versions WHERE number = 3)",
            {"bad": "0" * 64},
        )
    (found,) = registry.identity_problems()
    assert found.startswith("registry: churn:3: its stored identity 000000000000")
    assert "fsck --repair" in found
    assert stored(registry)[3] == "0" * 64  # finding changes nothing
    assert registry.identity_problems(repair=True) == [found]
    assert stored(registry) == expected
    assert registry.identity_problems() == []


def test_fsck_reports_a_wrong_stored_identity_and_repair_stores_the_right_one(
    tmp_path: Path,
) -> None:
    import modelkeep

    with modelkeep.Repo.init(tmp_path / "repo") as repo:
        for n in range(2):
            (tmp_path / "w.bin").write_bytes(bytes([n]) * 1000)
            repo.commit("churn", tmp_path / "w.bin", f"v{n + 1}")
        right = stored(repo.registry)
        with repo.registry.db.write() as tx:
            tx.run("UPDATE version_identities SET identity = :bad", {"bad": "1" * 64})
        report = repo.fsck()
        assert not report.ok
        assert [p.split(":")[1].strip() for p in report.problems] == ["churn", "churn"]
        assert report.to_dict()["ok"] is False
        assert repo.fsck(repair=True).problems == report.problems  # found, then repaired
        assert stored(repo.registry) == right
        assert repo.fsck().ok


def test_a_fill_cut_short_leaves_what_it_stored_right_and_the_next_one_finishes(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(12):
        commit(registry, message=f"v{i}")
    expected = recomputed(registry)
    wipe(registry)
    monkeypatch.setattr(registry_module, "_IDENTITY_BATCH", 5)
    real = Registry._store_identities
    calls = []

    def crash_on_the_second(tx: Any, model_id: int, pairs: Any) -> None:
        calls.append(len(pairs))
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a kill between two batches
        real(tx, model_id, pairs)

    monkeypatch.setattr(Registry, "_store_identities", staticmethod(crash_on_the_second))
    with pytest.raises(KeyboardInterrupt):
        registry.identities("churn")
    assert stored(registry) == {n: expected[n] for n in range(1, 6)}
    monkeypatch.setattr(Registry, "_store_identities", staticmethod(real))
    assert registry.identities("churn") == expected
    assert stored(registry) == expected


def test_an_older_registry_is_upgraded_and_its_identities_filled_in_lazily(
    empty_url: str, upgrade_to: Callable[[Any, str], None]
) -> None:
    """A registry of the release before stored identities (schema 9) gets the table on
    open, empty; the identities it then fills in are those the versions had when they
    were added (hashed afresh) — the ones the other side of a push knows them by."""
    # The versions as this release adds them (identities stored at once), kept aside.
    reg = Registry(empty_url)
    try:
        reg.create()
        history(reg)
        commit(reg, "fraud")
        expected = {"churn": reg.identities("churn"), "fraud": reg.identities("fraud")}
        assert expected["churn"] == recomputed(reg)
        # ...then the database as schema 9 has it: no table of identities.
        with reg.db.write() as tx:
            _downgrade_to(tx.sa, "0009")
        with reg.db.read() as tx:
            assert tx.scalar("SELECT value FROM meta WHERE key = 'schema_version'") == "9"
            assert not inspect(tx.sa).has_table("version_identities")
    finally:
        reg.dispose()
    reg = Registry(empty_url)
    try:
        reg.check_schema()  # migrates, as an open does
        with reg.db.read() as tx:
            assert tx.scalar("SELECT value FROM meta WHERE key = 'schema_version'") == str(
                SCHEMA_VERSION
            )
            assert tx.scalar("SELECT count(*) FROM version_identities") == 0
            indexes = inspect(tx.sa).get_indexes("version_identities")
        assert [(i["name"], i["column_names"]) for i in indexes] == [
            ("ix_version_identities_model_identity", ["model_id", "identity"])
        ]
        assert reg.identities("churn") == expected["churn"]
        assert stored(reg) == expected["churn"]  # fraud's not asked for: not filled in
        assert reg.numbers_by_identity("fraud", [expected["fraud"][1]]) == {expected["fraud"][1]: 1}
        with reg.db.read() as tx:
            assert tx.scalar("SELECT count(*) FROM version_identities") == 7
        # The upgraded registry adds versions with their identities at once.
        commit(reg, message="after the upgrade")
        assert reg.identities("churn") == recomputed(reg)
    finally:
        reg.dispose()


def test_a_registry_of_schema_9_rows_upgrades_and_fills_in(
    empty_url: str, upgrade_to: Callable[[Any, str], None]
) -> None:
    """Rows written by the release before (Alembic up to 0009, then plain inserts)."""
    old = Registry(empty_url)
    try:
        with old.db.write() as tx:
            upgrade_to(tx.sa, "0009")
        now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
        with old.db.write() as tx:
            tx.run(
                "INSERT INTO models (id, name, default_branch, created_at, kind) "
                "VALUES (1, 'churn', 'main', :now, 'model')",
                {"now": now},
            )
            for n in (1, 2, 3):
                tx.run(
                    "INSERT INTO versions (id, model_id, number, branch, tree_id, size, "
                    "file_count, message, author, created_at, kind, status, params, metrics, "
                    "lineage) VALUES (:n, 1, :n, 'main', :tree, 10, 1, :msg, 'tester', :now, "
                    "'commit', 'ok', :doc, :doc, :doc)",
                    {"n": n, "tree": "ab" * 32, "msg": f"v{n}", "now": now, "doc": {}},
                )
            for child, parent in ((2, 1), (3, 2)):
                tx.run(
                    "INSERT INTO version_parents (version_id, position, parent_id) "
                    "VALUES (:c, 0, :p)",
                    {"c": child, "p": parent},
                )
            tx.run(
                "INSERT INTO refs (model_id, kind, name, version_id, updated_at) "
                "VALUES (1, 'branch', 'main', 3, :now)",
                {"now": now},
            )
    finally:
        old.dispose()
    reg = Registry(empty_url)
    try:
        reg.check_schema()
        expected = recomputed(reg)
        assert stored(reg) == {}
        assert reg.identities("churn") == expected
        assert stored(reg) == expected
    finally:
        reg.dispose()


_FILL = """
import json, os, sys, time
from modelkeep.registry import Registry
url, go = sys.argv[1], sys.argv[2]
reg = Registry(url)
reg.check_schema()
while not os.path.exists(go):
    time.sleep(0.002)
print(json.dumps(reg.identities("churn")))
reg.dispose()
"""


def test_two_processes_filling_in_at_once_agree(empty_url: str, tmp_path: Path) -> None:
    reg = Registry(empty_url)
    try:
        reg.create()
        for i in range(1100):  # three batches of the fill
            commit(reg, message=f"v{i}", metrics={"step": i})
        expected = recomputed(reg)
        wipe(reg)
    finally:
        reg.dispose()
    go = tmp_path / "go"
    children = [
        spawn(_FILL, empty_url, go, cwd=tmp_path, author="t <t@example.org>") for _ in range(2)
    ]
    time.sleep(1.0)  # both started and waiting
    go.write_text("")
    answers = [json.loads(finish(child, timeout=300)) for child in children]
    assert answers[0] == answers[1] == {str(n): i for n, i in expected.items()}
    reg = Registry(empty_url)
    try:
        assert stored(reg) == expected
        with reg.db.read() as tx:
            assert tx.scalar("SELECT count(*) FROM version_identities") == 1100
    finally:
        reg.dispose()


def _downgrade_to(connection: Any, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option(
        "script_location", str(Path(registry_module.__file__).parent / "migrations")
    )
    config.attributes["connection"] = connection
    command.downgrade(config, revision)
