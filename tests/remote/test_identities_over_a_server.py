"""Stored identities across a real team server (both engines): what the identities
route answers is what each side stores; a server whose versions have no identities
stored yet (a repository from before them) fills them in on a read token's GET and on
a publish, and push and pull still round-trip, sending nothing a second time."""

from __future__ import annotations

from pathlib import Path

from remote_team import Client, Team, write_random

import modelkeep
from modelkeep.registry.identity import identity_of


def _stored(repo: modelkeep.Repo, model: str) -> dict[int, str]:
    with repo.registry.db.read() as tx:
        rows = tx.rows(
            "SELECT versions.number, version_identities.identity FROM version_identities "
            "JOIN versions ON versions.id = version_identities.version_id "
            "JOIN models ON models.id = versions.model_id WHERE models.name = :model",
            {"model": model},
        )
    return dict(rows)


def _recomputed(repo: modelkeep.Repo, model: str) -> dict[int, str]:
    found: dict[int, str] = {}
    for v in sorted(repo.log(model), key=lambda v: v.number):
        found[v.number] = identity_of(v, [found[p] for p in v.parents])
    return found


def _forget_identities(repo: modelkeep.Repo) -> None:
    """As a repository from before stored identities: none stored."""
    with repo.registry.db.write() as tx:
        tx.run("DELETE FROM version_identities")


def test_identities_stored_on_both_sides_and_filled_in_by_a_read_tokens_get(
    team: Team, client: Client, tmp_path: Path
) -> None:
    a = client("a")
    for i in range(3):
        a.commit("churn", write_random(tmp_path / f"m{i}", 200_000, seed=i), f"v{i}")
    mine = a.exchange.identities("churn")
    assert mine == _stored(a, "churn") == _recomputed(a, "churn")
    assert a.remotes.push("churn", token=team.tokens["alice"]).new_versions == 3
    with team.repo() as server:
        # Stored as each received version was published: the same identities.
        assert _stored(server, "churn") == mine
        _forget_identities(server)

    # A read token's GET fills them in on the server (a write the reader did not make).
    answer = team.http("GET", "/models/churn/identities", team.tokens["reader"])
    assert answer.status_code == 200, answer.text
    assert answer.json()["identities"] == {str(n): i for n, i in mine.items()}
    with team.repo() as server:
        assert _stored(server, "churn") == mine

    # Forgotten again: a push of a version on top finds its parent by identity all
    # the same, and one of versions there already sends nothing.
    with team.repo() as server:
        _forget_identities(server)
    a.commit("churn", write_random(tmp_path / "m3", 200_000, seed=3), "v3")
    pushed = a.remotes.push("churn", token=team.tokens["alice"])
    assert [(m.local, m.remote, m.new) for m in pushed.versions] == [
        (1, 1, False),
        (2, 2, False),
        (3, 3, False),
        (4, 4, True),
    ]
    again = a.remotes.push("churn", token=team.tokens["alice"])
    assert (again.new_versions, again.objects_sent) == (0, 0)
    mine = a.exchange.identities("churn")
    with team.repo() as server:
        assert _stored(server, "churn") == mine == _recomputed(server, "churn")

    # A pull into another repository round-trips: the same versions, the same identities.
    b = client("b")
    pulled = b.remotes.pull("churn", token=team.tokens["reader"])
    assert pulled.new_versions == 4
    assert _stored(b, "churn") == mine
    assert b.log("churn") == a.log("churn")
    assert b.remotes.pull("churn", token=team.tokens["reader"]).new_versions == 0


def test_a_commit_over_http_answers_its_stored_identity(
    team: Team, client: Client, tmp_path: Path
) -> None:
    a = client("a")
    a.commit("churn", write_random(tmp_path / "m0", 100_000, seed=7), "first")
    a.remotes.push("churn", token=team.tokens["alice"])
    remote = modelkeep.Repo.open(team.url, token=team.tokens["bob"])
    try:
        made = remote.commit("churn", write_random(tmp_path / "m1", 100_000, seed=8), "over http")
    finally:
        remote.close()
    assert made.number == 2
    with team.repo() as server:
        assert _stored(server, "churn") == _recomputed(server, "churn")
        assert len(_stored(server, "churn")) == 2
    fetched = a.remotes.fetch("churn", token=team.tokens["reader"])
    assert [(m.local, m.remote, m.new) for m in fetched.versions] == [
        (1, 1, False),
        (2, 2, True),
    ]
