"""`modelkeep token create | list | revoke`: the token printed once, never listed, bad
input refused in one line with the documented exit code and nothing changed."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

import modelkeep
from modelkeep import errors as e
from modelkeep.cli.base import _exit_code
from modelkeep.httpstatus import status_of

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    modelkeep.Repo.init(tmp_path / "repo").close()
    return tmp_path / "repo"


def _state(root: Path) -> Any:
    with modelkeep.Repo(root) as repo:
        return (
            [t.to_dict() for t in repo.tokens.list(include_revoked=True)],
            [ev.to_dict() for ev in repo.events()],
        )


def test_create_prints_the_token_alone_and_says_it_is_shown_once(root: Path, cli: Any) -> None:
    res = cli(root, "token", "create", "--user", "alice", "--scope", "write", "--model", "churn*",
              "--expires", "90d", "-m", "for the CI")  # fmt: skip
    assert res.code == 0, res.err
    plaintext = res.out.strip()
    assert "\n" not in plaintext  # stdout: the token alone (`… > token.txt`)
    assert plaintext.startswith("mkt_")
    assert "only time it is shown" in res.err
    assert "alice: write on churn*, expires " in res.err
    with modelkeep.Repo(root) as repo:
        token = repo.tokens.verify(plaintext)
        assert (token.user, token.scope, token.models) == ("alice", "write", "churn*")
        [event] = repo.events()
    assert (event.action, event.message) == ("token.create", "for the CI")
    assert plaintext.split("_", 2)[2] not in json.dumps(event.to_dict())


def test_create_json_gives_the_record_and_the_token(root: Path, cli: Any) -> None:
    res = cli(root, "token", "create", "--user", "ci-bot", "--scope", "read", "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["token"].startswith(f"mkt_{doc['id']}_")
    assert (doc["user"], doc["scope"], doc["models"], doc["expires_at"]) == (
        "ci-bot",
        "read",
        "*",
        None,
    )
    assert doc["state"] == "active"
    assert "secret_hash" not in doc
    with modelkeep.Repo(root) as repo:
        assert repo.tokens.verify(doc["token"]).id == doc["id"]


def test_list_never_shows_a_secret(root: Path, cli: Any) -> None:
    made = [
        json.loads(cli(root, "token", "create", "--user", u, "--scope", s, "--json").out)
        for u, s in [("alice", "admin"), ("bob", "read")]
    ]
    assert cli(root, "token", "revoke", made[1]["id"]).code == 0
    res = cli(root, "token", "list")
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert lines[0].split() == [
        "id", "user", "scope", "models", "state", "created", "by", "expires", "last", "used",
    ]  # fmt: skip
    assert len(lines) == 2
    assert lines[1].split()[:5] == [made[0]["id"], "alice", "admin", "*", "active"]
    every = cli(root, "token", "list", "--all", "--json")
    listed = json.loads(every.out)
    assert [(t["user"], t["state"]) for t in listed] == [("alice", "active"), ("bob", "revoked")]
    for shown in (res.out, every.out, cli(root, "token", "list", "--all").out):
        for m in made:
            assert m["token"].split("_", 2)[2] not in shown
        assert "secret_hash" not in shown


def test_an_empty_list_prints_nothing(root: Path, cli: Any) -> None:
    res = cli(root, "token", "list")
    assert (res.code, res.out) == (0, "")
    assert json.loads(cli(root, "token", "list", "--json").out) == []


def test_revoke_says_what_it_revoked_and_refuses_twice(root: Path, cli: Any) -> None:
    made = json.loads(cli(root, "token", "create", "--user", "bob", "--scope", "write",
                          "--model", "fraud-?", "--json").out)  # fmt: skip
    res = cli(root, "token", "revoke", made["id"], "-m", "left the team")
    assert res.code == 0, res.err
    assert res.out.strip() == (
        f"revoked token {made['id']} of bob (write on fraud-?, never expires)"
    )
    before = _state(root)
    again = cli(root, "token", "revoke", made["id"])
    assert again.code == 4
    assert f"token {made['id']} was revoked already" in again.one_line_error()
    unknown = cli(root, "token", "revoke", "0" * 20)
    assert unknown.code == 3
    assert "`modelkeep token list --all` lists them" in unknown.one_line_error()
    assert _state(root) == before
    events = json.loads(cli(root, "events", "--json").out)
    assert [(ev["action"], ev["message"]) for ev in events] == [
        ("token.revoke", "left the team"),
        ("token.create", ""),
    ]
    assert all(ev["token_id"] is None and ev["address"] is None for ev in events)
    table = cli(root, "events").out
    assert f"token.revoke  token {made['id']}" in table


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--scope", "read"], "Missing option '--user'"),
        (["--user", "alice"], "Missing option '--scope'"),
        (["--user", "", "--scope", "read"], "needs a user"),
        (["--user", "al\tice", "--scope", "read"], "printable"),
        (["--user", "alice", "--scope", "root"], "'root' is not a scope; use read, write, admin"),
        (["--user", "alice", "--scope", "read", "--model", "churn["], "not closed"),
        (["--user", "alice", "--scope", "read", "--model", "../*"], "cannot be in a model"),
        (["--user", "alice", "--scope", "read", "--expires", "0d"], "out of range"),
        (["--user", "alice", "--scope", "read", "--expires", "999d"], "out of range"),
        (["--user", "alice", "--scope", "read", "--expires", "forever"], "cannot read"),
        (["--user", "alice", "--scope", "read", "--password", "x"], "No such option"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    root: Path, cli: Any, args: list[str], fragment: str
) -> None:
    before = _state(root)
    res = cli(root, "token", "create", *args)
    assert res.code == 2
    assert fragment in res.one_line_error()
    assert _state(root) == before == ([], [])


def test_a_token_is_never_an_argument_of_any_command(cli: Any, root: Path) -> None:
    """No default credential, and nothing that would put a secret in shell history."""
    for command in ("create", "list", "revoke"):
        res = cli(root, "token", command, "--help")
        assert res.code == 0
        assert "--token" not in res.out
        assert "--secret" not in res.out
        assert "--password" not in res.out


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (e.AuthenticationError("unknown token, or a wrong secret"), 8, 401),
        (e.PermissionDeniedError("token abc (read on *) may not write"), 9, 403),
    ],
)
def test_access_errors_have_their_exit_codes_and_statuses(
    error: e.ModelkeepError, code: int, status: int
) -> None:
    assert _exit_code(error) == code
    assert status_of(error) == status
