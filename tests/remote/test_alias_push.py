"""`push --alias`: the server's alias moves by compare-and-swap on where this client
last saw it there, every move recorded with the token's user; a client that has not
seen another's move is refused (409, exit 4) and a pull brings the move over."""

from __future__ import annotations

from pathlib import Path

import pytest
from remote_team import Cli, Client, Team, tensors, write_model

import modelkeep
from modelkeep.errors import RefMovedError


def _alias_there(team: Team) -> int:
    with team.repo() as server:
        return server.resolve("churn@production").number


def test_push_moves_the_alias_by_compare_and_swap_and_pull_follows(
    team: Team, client: Client, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = client("a")
    for i in range(3):
        a.commit("churn", write_model(tmp_path / f"m{i}", tensors(2, seed=30 + i)), f"v{i + 1}")
    monkeypatch.setenv("MODELKEEP_TOKEN", team.tokens["alice"])
    assert cli(a.root, "push", "churn").code == 0

    moved = cli(a.root, "push", "churn:2", "--alias", "production")
    assert moved.code == 0, moved.err
    assert "alias production → 2" in moved.out.splitlines()
    assert _alias_there(team) == 2
    with team.repo() as server:
        last = server.history("churn@production")[0]
        assert last.actor == "alice"
        assert last.after == 2
        alice = next(t for t in server.tokens.list() if t.user == "alice")
        assert last.token_id == alice.id

    # Another client (bob) moves it on the server, after pulling.
    b, _ = modelkeep.Repo.clone(team.url, tmp_path / "b", "churn", token=team.tokens["bob"])
    try:
        assert b.resolve("churn@production").number == 2  # the pull followed the alias
        got = b.remotes.push("churn:3", alias="production", token=team.tokens["bob"])
        assert got.aliases == {"production": 3}
    finally:
        b.close()
    assert _alias_there(team) == 3
    with team.repo() as server:
        events_before = len(server.events("churn"))
        last = server.history("churn@production")[0]
        assert (last.actor, last.before, last.after) == ("bob", 2, 3)

    # The first client last saw it at 2: refused, in one line; the server keeps 3.
    refused = cli(a.root, "push", "churn:1", "--alias", "production")
    assert refused.code == 4
    assert "production" in refused.one_line_error()
    with pytest.raises(RefMovedError):
        a.remotes.push("churn:1", alias="production")
    assert _alias_there(team) == 3
    with team.repo() as server:
        assert len(server.events("churn")) == events_before
    assert {r.name: r.version for r in a.refs("churn", "alias")}.get("production") != 3

    # A pull brings the move over; then the first client may move it on purpose.
    pulled = cli(a.root, "pull", "churn")
    assert pulled.code == 0, pulled.err
    assert a.resolve("churn@production").number == 3
    rolled = cli(a.root, "push", "churn:1", "--alias", "production")
    assert rolled.code == 0, rolled.err
    assert _alias_there(team) == 1
    with team.repo() as server:
        last = server.history("churn@production")[0]
        assert (last.actor, last.before, last.after) == ("alice", 3, 1)
        assert last.message == "pushed churn:1"
