"""The registry's tokens table and the audit fields of events (schema 9), on SQLite and on
a real PostgreSQL server: only a hash is stored, changes of access are events that carry
no secret, and events record the acting user, token and address."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import DatabaseError

from modelkeep import lineage
from modelkeep.errors import ConflictError, NotFoundError, UsageError
from modelkeep.registry import Registry
from modelkeep.registry.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    from collections.abc import Callable

SECRET = "s3cr3t-that-must-never-be-stored-anywhere-000"
HASH = hashlib.sha256(SECRET.encode()).hexdigest()


def add(reg: Registry, token_id: str = "a" * 20, **extra: Any) -> Any:
    fields: dict[str, Any] = {
        "token_id": token_id,
        "user": "alice",
        "scope": "write",
        "models": "churn*",
        "secret_hash": HASH,
        "expires_at": None,
        "actor": "admin",
    }
    fields.update(extra)
    return reg.add_token(**fields)


def commit(reg: Registry, model: str = "churn", author: str = "tester") -> Any:
    return reg.add_version(
        model=model,
        branch=None,
        tree_id="ab" * 32,
        size=10,
        file_count=1,
        message="msg",
        author=author,
        params={},
        metrics={},
        lineage={},
        datasets=[],
    )


def _all_text(reg: Registry, table: str) -> str:
    with reg.db.read() as tx:
        return repr([tuple(r) for r in tx.rows(f"SELECT * FROM {table}")])


def test_a_token_is_stored_with_the_hash_of_its_secret_never_the_secret(
    registry: Registry,
) -> None:
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    token = add(registry, expires_at=expires, message="for the CI")
    assert (token.id, token.user, token.scope, token.models) == (
        "a" * 20,
        "alice",
        "write",
        "churn*",
    )
    assert token.created_by == "admin"
    assert token.expires_at == expires
    assert token.revoked_at is None
    assert token.last_used_at is None
    with registry.db.read() as tx:
        row = tx.one('SELECT "user", secret_hash FROM tokens WHERE id = :id', {"id": token.id})
    assert tuple(row) == ("alice", HASH)
    for table in ("tokens", "events"):
        assert SECRET not in _all_text(registry, table)
    # The event names the token, never its secret or the secret's hash.
    [event] = registry.events()
    assert (event.action, event.actor, event.model, event.message) == (
        "token.create",
        "admin",
        None,
        "for the CI",
    )
    assert event.details == {
        "token": "a" * 20,
        "user": "alice",
        "scope": "write",
        "models": "churn*",
        "expires_at": expires.isoformat(),
    }
    assert HASH not in _all_text(registry, "events")
    assert HASH not in repr(token)
    assert "secret_hash" not in token.to_dict()
    assert token.to_dict()["state"] == "active"


def test_tokens_are_listed_oldest_first_and_revoked_ones_on_request(registry: Registry) -> None:
    add(registry, "1" * 20, user="alice")
    add(registry, "2" * 20, user="bob")
    add(registry, "3" * 20, user="carol")
    revoked = registry.revoke_token("2" * 20, "admin", "left the team")
    assert revoked.revoked_by == "admin"
    assert revoked.revoked_at is not None
    assert revoked.state() == "revoked"
    assert [t.user for t in registry.tokens()] == ["alice", "carol"]
    assert [t.user for t in registry.tokens(include_revoked=True)] == ["alice", "bob", "carol"]
    assert registry.token("2" * 20) == revoked
    event = registry.events(action="token.revoke")[0]
    assert (event.actor, event.message, event.details["token"]) == (
        "admin",
        "left the team",
        "2" * 20,
    )


def test_revoking_twice_or_an_unknown_token_changes_nothing(registry: Registry) -> None:
    add(registry)
    registry.revoke_token("a" * 20, "admin")
    before = (registry.tokens(include_revoked=True), registry.events())
    with pytest.raises(ConflictError, match="was revoked already"):
        registry.revoke_token("a" * 20, "admin")
    with pytest.raises(NotFoundError, match="no token"):
        registry.revoke_token("b" * 20, "admin")
    with pytest.raises(NotFoundError, match="no token"):
        registry.token("b" * 20)
    assert (registry.tokens(include_revoked=True), registry.events()) == before


def test_a_taken_id_is_refused_and_nothing_is_stored(registry: Registry) -> None:
    add(registry)
    with pytest.raises(ConflictError, match="exists already"):
        add(registry, user="mallory", scope="admin")
    assert [t.user for t in registry.tokens()] == ["alice"]
    assert len(registry.events()) == 1


def test_touch_writes_last_used_at_at_most_once_per_interval(registry: Registry) -> None:
    add(registry)
    assert registry.touch_token("a" * 20)
    first = registry.token("a" * 20).last_used_at
    assert first is not None
    assert not registry.touch_token("a" * 20)  # within a minute: no write
    assert registry.token("a" * 20).last_used_at == first
    assert registry.touch_token("a" * 20, every=timedelta(0))
    later = registry.token("a" * 20).last_used_at
    assert later is not None
    assert later >= first
    assert not registry.touch_token("b" * 20)  # unknown: nothing to touch
    assert [e.action for e in registry.events()] == ["token.create"]  # not events


def test_events_record_the_acting_user_token_and_address(registry: Registry) -> None:
    commit(registry, author="someone")
    with lineage.acting_as("alice", "a" * 20, "10.0.0.7"):
        assert lineage.author() == "alice"
        # An author given for the version is the version's; the event's actor is who acts.
        commit(registry, author="bob")
        registry.move_ref(
            model="churn", name="production", kind="alias", to=2, actor="x", action="promote"
        )
    commit(registry, author="carol")
    events = registry.events()
    assert [(e.action, e.actor, e.token_id, e.address) for e in events] == [
        ("commit", "carol", None, None),
        ("promote", "alice", "a" * 20, "10.0.0.7"),
        ("commit", "alice", "a" * 20, "10.0.0.7"),
        ("commit", "someone", None, None),
    ]
    assert registry.version("churn", 2).author == "bob"
    assert events[1].to_dict()["token_id"] == "a" * 20
    assert events[1].to_dict()["address"] == "10.0.0.7"


def test_acting_as_is_checked_and_undone(registry: Registry) -> None:
    for bad in [
        {"user": ""},
        {"user": "a\nb"},
        {"user": "x" * 257},
        {"user": "a", "token_id": "t" * 33},
        {"user": "a", "address": "1" * 65},
        {"user": "a", "address": ""},
    ]:
        with pytest.raises(UsageError), lineage.acting_as(**bad):
            pytest.fail("entered")
    with pytest.raises(RuntimeError), lineage.acting_as("alice"):
        raise RuntimeError
    assert lineage.author() != "alice"
    commit(registry)
    assert registry.events()[0].token_id is None


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE events SET token_id = 'forged'",
        "UPDATE events SET address = '127.0.0.1'",
        "DELETE FROM events",
    ],
)
def test_the_audit_fields_are_append_only_too(registry: Registry, sql: str) -> None:
    with lineage.acting_as("alice", "a" * 20, "10.0.0.7"):
        commit(registry)
    before = registry.events()
    with pytest.raises(DatabaseError, match="append-only"), registry.engine.begin() as conn:
        conn.exec_driver_sql(sql)
    assert registry.events() == before


def test_schema_8_is_migrated_to_9_keeping_events_and_their_triggers(
    empty_url: str, upgrade_to: Callable[[Any, str], None]
) -> None:
    """A registry of the release before tokens gets the tokens table and the events'
    audit columns on open; its events are kept, NULL in the new columns, and the event
    log stays append-only on both engines."""
    old = Registry(empty_url)
    try:
        with old.db.write() as tx:
            upgrade_to(tx.sa, "0008")
        with old.db.write() as tx:
            for i, action in enumerate(["commit", "promote"], start=1):
                tx.run(
                    "INSERT INTO events (at, actor, action, model, ref_kind, ref_name, "
                    "before_version, after_version, message, details) VALUES "
                    "(:at, 'tester', :action, 'churn', 'alias', 'production', NULL, :n, "
                    "'old', :details)",
                    {"at": datetime.now(UTC), "action": action, "n": i, "details": {"n": i}},
                )
        with old.db.read() as tx:
            assert tx.scalar("SELECT value FROM meta WHERE key = 'schema_version'") == "8"
            assert not inspect(tx.sa).has_table("tokens")
    finally:
        old.dispose()
    reg = Registry(empty_url)
    try:
        reg.check_schema()  # migrates
        with reg.db.read() as tx:
            assert tx.scalar("SELECT value FROM meta WHERE key = 'schema_version'") == str(
                SCHEMA_VERSION
            )
            columns = {c["name"] for c in inspect(tx.sa).get_columns("tokens")}
            event_columns = {c["name"] for c in inspect(tx.sa).get_columns("events")}
        assert columns == {
            "id", "user", "scope", "models", "secret_hash", "created_at", "created_by",
            "expires_at", "revoked_at", "revoked_by", "last_used_at",
        }  # fmt: skip
        assert {"token_id", "address"} <= event_columns
        kept = reg.events()
        assert [(e.action, e.after, e.details, e.token_id, e.address) for e in kept] == [
            ("promote", 2, {"n": 2}, None, None),
            ("commit", 1, {"n": 1}, None, None),
        ]
        for sql in ("UPDATE events SET message = 'rewritten'", "DELETE FROM events"):
            with pytest.raises(DatabaseError, match="append-only"), reg.engine.begin() as conn:
                conn.exec_driver_sql(sql)
        if reg.file is not None:
            with reg.db.read() as tx:
                assert tx.scalar("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'") == 4
        assert reg.events() == kept
        # And it works: tokens, and events that carry who acted.
        add(reg)
        with lineage.acting_as("alice", "a" * 20, "::1"):
            reg.revoke_token("a" * 20, lineage.author())
        latest = reg.events()[0]
        assert (latest.action, latest.actor, latest.token_id, latest.address) == (
            "token.revoke",
            "alice",
            "a" * 20,
            "::1",
        )
        assert reg.token("a" * 20).revoked_by == "alice"
    finally:
        reg.dispose()
