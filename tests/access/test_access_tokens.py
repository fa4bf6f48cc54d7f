"""Access tokens (``modelkeep.access.Tokens``, ``Repo.tokens``) on a real repository:
made once, verified in constant time, refused when wrong, expired or revoked (never
naming the token), scopes and model patterns, and events made on a user's behalf."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

import modelkeep
from modelkeep import lineage
from modelkeep.access import PREFIX, Tokens
from modelkeep.errors import (
    AuthenticationError,
    ModelNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    UsageError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from modelkeep.registry.records import Token


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[modelkeep.Repo]:
    with modelkeep.Repo.init(tmp_path / "repo") as r:
        yield r


def _set(repo: modelkeep.Repo, token_id: str, **values: Any) -> None:
    """Change a token's row behind the service's back (the clock, for the tests)."""
    sets = ", ".join(f"{k} = :{k}" for k in values)
    with repo.registry.db.write() as tx:
        tx.run(f"UPDATE tokens SET {sets} WHERE id = :id", {**values, "id": token_id})


# -- create and verify --------------------------------------------------------------


def test_a_token_is_given_once_and_verifies(repo: modelkeep.Repo) -> None:
    token, plaintext = repo.tokens.create("alice", "write", "churn*", expires="90d")
    assert plaintext.startswith(f"{PREFIX}{token.id}_")
    secret = plaintext.removeprefix(f"{PREFIX}{token.id}_")
    assert len(secret) == 43  # secrets.token_urlsafe(32): 256 bits
    assert len(token.id) == 20
    assert token.expires_at is not None
    assert timedelta(days=89) < token.expires_at - datetime.now(UTC) <= timedelta(days=90)
    checked = repo.tokens.verify(plaintext)
    assert (checked.id, checked.user, checked.scope, checked.models) == (
        token.id,
        "alice",
        "write",
        "churn*",
    )
    assert checked.last_used_at is not None
    # Stored: the SHA-256 of the secret, and nowhere the secret itself.
    with repo.registry.db.read() as tx:
        stored = tx.one("SELECT secret_hash FROM tokens WHERE id = :id", {"id": token.id})[0]
        everything = repr([tuple(r) for r in tx.rows("SELECT * FROM tokens")])
        everything += repr([tuple(r) for r in tx.rows("SELECT * FROM events")])
    assert stored == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in everything
    assert secret not in repr(token)
    assert secret not in str(token.to_dict())
    assert "secret_hash" not in token.to_dict()
    # Two tokens never share an id or a secret.
    other, other_plaintext = repo.tokens.create("alice", "write", "churn*")
    assert other.id != token.id
    assert other_plaintext.split("_", 2)[2] != secret


def test_surrounding_blanks_of_a_token_read_from_a_file_do_not_matter(
    repo: modelkeep.Repo,
) -> None:
    token, plaintext = repo.tokens.create("alice", "read")
    assert repo.tokens.verify(f"  {plaintext}\n").id == token.id


def _refused(repo: modelkeep.Repo, plaintext: Any, *also_absent: str) -> str:
    with pytest.raises(AuthenticationError) as info:
        repo.tokens.verify(plaintext)
    message = str(info.value)
    if isinstance(plaintext, str) and len(plaintext) > 8:  # "mkt_" is in the message
        assert plaintext not in message
    for text in also_absent:
        assert text not in message
    assert "\n" not in message
    return message


def test_a_wrong_secret_with_a_right_id_is_refused_without_the_token(
    repo: modelkeep.Repo,
) -> None:
    token, plaintext = repo.tokens.create("alice", "admin")
    secret = plaintext.split("_", 2)[2]
    wrong_secret = f"{PREFIX}{token.id}_{'A' * 43}"
    message = _refused(repo, wrong_secret, secret, "A" * 43)
    # The same answer as for an id that does not exist: nothing to learn from it.
    unknown_id = f"{PREFIX}{'0' * 20}_{secret}"
    assert _refused(repo, unknown_id, secret) == message
    # A secret of the right length, one character off.
    flipped = plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")
    assert _refused(repo, flipped, secret) == message
    assert repo.tokens.get(token.id).last_used_at is None  # a failure is not a use


@pytest.mark.parametrize(
    "plaintext",
    [
        "",
        "mkt_",
        "Bearer mkt_0123456789abcdef0123_" + "a" * 43,
        "mkt_0123456789ABCDEF0123_" + "a" * 43,  # upper-case id
        "mkt_0123456789abcdef0123_" + "a" * 10,  # secret too short
        "mkt_0123456789abcdef0123_" + "a" * 42 + "!",
        "ghp_" + "a" * 36,
        "mkt_" + "a" * 100_000,
        None,
        b"mkt_0123456789abcdef0123_" + b"a" * 43,
    ],
    ids=lambda p: repr(p)[:30],
)
def test_a_malformed_token_is_refused(repo: modelkeep.Repo, plaintext: Any) -> None:
    message = _refused(repo, plaintext)
    assert len(message) < 100


def test_a_revoked_token_is_refused_and_listed_only_on_request(repo: modelkeep.Repo) -> None:
    keep, _ = repo.tokens.create("alice", "read")
    gone, plaintext = repo.tokens.create("bob", "write")
    revoked = repo.tokens.revoke(gone.id, "left the team")
    assert revoked.state() == "revoked"
    assert "revoked" in _refused(repo, plaintext, plaintext.split("_", 2)[2])
    assert [t.id for t in repo.tokens.list()] == [keep.id]
    assert [t.id for t in repo.tokens.list(include_revoked=True)] == [keep.id, gone.id]
    assert not Tokens.allows(revoked, "read", "churn")


def test_an_expired_token_is_refused(repo: modelkeep.Repo) -> None:
    token, plaintext = repo.tokens.create("alice", "write", expires=timedelta(hours=1))
    assert repo.tokens.verify(plaintext).id == token.id
    _set(repo, token.id, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    message = _refused(repo, plaintext, plaintext.split("_", 2)[2])
    assert f"token {token.id} expired at" in message
    expired = repo.tokens.get(token.id)
    assert expired.state() == "expired"
    assert expired.to_dict()["state"] == "expired"
    assert [t.id for t in repo.tokens.list()] == [token.id]  # listed until revoked
    assert not Tokens.allows(expired, "read", "churn")


def test_last_used_at_is_written_at_most_once_a_minute(repo: modelkeep.Repo) -> None:
    token, plaintext = repo.tokens.create("alice", "read")
    first = repo.tokens.verify(plaintext).last_used_at
    assert first is not None
    assert repo.tokens.get(token.id).last_used_at == first
    for _ in range(5):
        repo.tokens.verify(plaintext)
    assert repo.tokens.get(token.id).last_used_at == first
    then = datetime.now(UTC) - timedelta(minutes=2)
    _set(repo, token.id, last_used_at=then)
    again = repo.tokens.verify(plaintext).last_used_at
    assert again is not None
    assert again > then
    assert repo.tokens.get(token.id).last_used_at == again
    assert [e.action for e in repo.events()] == ["token.create"]  # use is not an event


# -- what a token allows ------------------------------------------------------------


def _token(repo: modelkeep.Repo, scope: str, models: str) -> Token:
    return repo.tokens.create("alice", scope, models)[0]


@pytest.mark.parametrize(
    ("scope", "models", "need", "model", "allowed"),
    [
        ("read", "*", "read", "churn", True),
        ("read", "*", "write", "churn", False),
        ("read", "*", "admin", None, False),
        ("write", "*", "read", "churn", True),
        ("write", "*", "write", "churn", True),
        ("write", "*", "admin", None, False),
        ("admin", "*", "read", "churn", True),
        ("admin", "*", "write", "fraud", True),
        ("admin", "*", "admin", None, True),
        ("write", "churn*", "write", "churn", True),
        ("write", "churn*", "write", "churn-eu", True),
        ("write", "churn*", "read", "fraud", False),
        ("write", "churn*", "read", "CHURN", False),  # case-sensitive, on every system
        ("read", "churn*", "read", None, False),  # the whole repository needs *
        ("admin", "churn*", "admin", None, False),  # so a scoped admin cannot make tokens
        ("admin", "churn*", "admin", "churn", True),
        ("read", "fraud-?", "read", "fraud-1", True),
        ("read", "fraud-?", "read", "fraud-10", False),
        ("read", "model-[ab]", "read", "model-b", True),
        ("read", "model-[!ab]", "read", "model-b", False),
        ("read", "model-[!ab]", "read", "model-c", True),
    ],
)
def test_scopes_nest_and_patterns_limit_models(
    repo: modelkeep.Repo, scope: str, models: str, need: str, model: str | None, allowed: bool
) -> None:
    token = _token(repo, scope, models)
    assert Tokens.allows(token, need, model) is allowed
    assert repo.tokens.allows(token, need, model) is allowed


def test_require_says_not_found_outside_the_pattern_and_denied_beyond_the_scope(
    repo: modelkeep.Repo,
) -> None:
    reader = _token(repo, "read", "churn*")
    Tokens.require(reader, "read", "churn")
    with pytest.raises(PermissionDeniedError, match=f"token {reader.id} \\(read on churn\\*\\)"):
        Tokens.require(reader, "write", "churn")
    # Another model is "not found" whether it exists or not: its name does not leak.
    with pytest.raises(ModelNotFoundError) as missing:
        Tokens.require(reader, "read", "fraud")
    with pytest.raises(ModelNotFoundError) as also_missing:
        Tokens.require(reader, "write", "fraud")
    assert str(missing.value) == str(also_missing.value)
    assert "that this token can read" in str(missing.value)
    with pytest.raises(PermissionDeniedError, match="whole repository"):
        Tokens.require(reader, "admin", None)
    revoked = repo.tokens.revoke(reader.id)
    with pytest.raises(AuthenticationError, match="revoked"):
        Tokens.require(revoked, "read", "churn")
    with pytest.raises(UsageError, match="'owner' is not a scope"):
        Tokens.allows(revoked, "owner", "churn")


# -- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"user": "", "scope": "read"}, "needs a user"),
        ({"user": "   ", "scope": "read"}, "needs a user"),
        ({"user": " alice", "scope": "read"}, "no blanks around"),
        ({"user": "ali\nce", "scope": "read"}, "printable"),
        ({"user": "a" * 257, "scope": "read"}, "at most 256"),
        ({"user": 7, "scope": "read"}, "needs a user"),
        ({"user": "alice", "scope": "root"}, "'root' is not a scope; use read, write, admin"),
        ({"user": "alice", "scope": "READ"}, "not a scope"),
        ({"user": "alice", "scope": "read", "models": ""}, "pattern is empty"),
        ({"user": "alice", "scope": "read", "models": "c" * 257}, "at most 256"),
        ({"user": "alice", "scope": "read", "models": "churn["}, "not closed"),
        ({"user": "alice", "scope": "read", "models": "churn[]"}, r"\[set\]"),
        ({"user": "alice", "scope": "read", "models": "churn]"}, "cannot be in a model name"),
        ({"user": "alice", "scope": "read", "models": "churn/*"}, "cannot be in a model name"),
        ({"user": "alice", "scope": "read", "models": "churn *"}, "cannot be in a model name"),
        ({"user": "alice", "scope": "read", "expires": "0s"}, "out of range"),
        ({"user": "alice", "scope": "read", "expires": timedelta(days=-1)}, "out of range"),
        ({"user": "alice", "scope": "read", "expires": "400d"}, "out of range"),
        ({"user": "alice", "scope": "read", "expires": "soon"}, "cannot read duration"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_stored(
    repo: modelkeep.Repo, args: dict[str, Any], match: str
) -> None:
    with pytest.raises(UsageError, match=match):
        repo.tokens.create(**args)
    assert repo.tokens.list(include_revoked=True) == []
    assert repo.events() == []


def test_revoking_an_unknown_or_revoked_token_changes_nothing(repo: modelkeep.Repo) -> None:
    token, _ = repo.tokens.create("alice", "read")
    repo.tokens.revoke(token.id)
    before = repo.events()
    with pytest.raises(NotFoundError, match="no token"):
        repo.tokens.revoke("0" * 20)
    with pytest.raises(modelkeep.ConflictError, match="revoked already"):
        repo.tokens.revoke(token.id)
    assert repo.events() == before


# -- acting on a user's behalf ------------------------------------------------------


def test_changes_made_acting_as_a_user_record_the_user_token_and_address(
    repo: modelkeep.Repo, tmp_path: Path
) -> None:
    admin, _ = repo.tokens.create("root-admin", "admin")
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights")
    with lineage.acting_as("alice", admin.id, "192.0.2.4"):
        made, _ = repo.tokens.create("bob", "read")
        v = repo.commit("churn", weights, "first")
        repo.promote(v.rev, "production")
    assert made.created_by == "alice"
    # The author was found on the commit's side thread: in the caller's context.
    assert v.author == "alice"
    acted = [e for e in repo.events() if e.token_id is not None]
    assert [(e.action, e.actor, e.token_id, e.address) for e in acted] == [
        ("promote", "alice", admin.id, "192.0.2.4"),
        ("commit", "alice", admin.id, "192.0.2.4"),
        ("token.create", "alice", admin.id, "192.0.2.4"),
    ]
    own = repo.commit("churn", weights, "again, as myself")
    assert own.author != "alice"
    assert repo.events()[0].token_id is None


def test_each_thread_acts_for_its_own_user(repo: modelkeep.Repo, tmp_path: Path) -> None:
    """A server runs requests side by side: each one's events name its own user."""
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def work(user: str) -> None:
        try:
            weights = tmp_path / f"{user}.bin"
            weights.write_bytes(user.encode() * 100)
            with lineage.acting_as(user, f"{user:0<20}"[:20], f"10.0.0.{len(user)}"):
                start.wait(10)
                for _ in range(3):
                    repo.commit(user, weights, f"by {user}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    users = ["ann", "bert", "carla", "dominic"]
    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for e in repo.events():
        assert e.model == e.actor
        assert e.token_id == f"{e.actor:0<20}"[:20]
        assert e.address == f"10.0.0.{len(e.actor)}"
    for user in users:
        assert {v.author for v in repo.log(user)} == {user}
