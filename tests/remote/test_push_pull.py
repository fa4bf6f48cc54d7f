"""push, fetch, pull and clone against a real `modelkeep server` process: versions
arrive whole and the same (identity, who, when, why, files byte for byte), only the
chunks the other side lacks move, and each side numbers the versions it receives."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from remote_team import (
    MIB,
    Cli,
    Client,
    Team,
    files_of,
    snapshot,
    tensor,
    tensors,
    write_model,
    write_random,
)

import modelkeep
from modelkeep.errors import ConflictError


def test_a_pushed_version_is_the_same_there_and_a_second_push_sends_nothing(
    team: Team, client: Client, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = client("a")
    weights = tensors(4, seed=1)
    folder = write_model(tmp_path / "m", weights)
    a.commit("churn", folder, "first", params={"C": 1.0, "layers": [64, 8]}, metrics={"f1": 0.81})
    weights["layer02"] = tensor(99)
    write_model(folder, weights, {"config.json": b'{"lr": 0.1}'})
    a.commit("churn", folder, "second", params={"C": 0.5}, metrics={"f1": 0.84, "auc": 0.9})

    monkeypatch.setenv("MODELKEEP_TOKEN", team.tokens["alice"])
    pushed = cli(a.root, "push", "churn")
    assert pushed.code == 0, pushed.err
    assert pushed.out.splitlines() == [
        "churn:1 (local) = churn:1 (origin)  new",
        "churn:2 (local) = churn:2 (origin)  new",
    ]
    assert "push: 2 new versions" in pushed.err
    mapped = cli(a.root, "remote", "map", "churn")
    assert mapped.out.splitlines() == [
        "churn:1 (local) = churn:1 (origin)",
        "churn:2 (local) = churn:2 (origin)",
    ]

    with team.repo() as server:
        for n in (1, 2):
            mine, theirs = a.resolve(f"churn:{n}"), server.resolve(f"churn:{n}")
            # Every field: created_at, author, message, params, metrics, tree, parents…
            assert theirs == mine
            assert (theirs.author, theirs.message) == (mine.author, mine.message)
            assert theirs.created_at == mine.created_at
            assert files_of(server, f"churn:{n}", tmp_path / f"co-s{n}") == files_of(
                a, f"churn:{n}", tmp_path / f"co-a{n}"
            )
        assert server.exchange.identities("churn") == a.exchange.identities("churn")
        assert server.fsck().ok

    again = a.remotes.push("churn")
    assert (again.new_versions, again.objects_sent, again.bytes_sent) == (0, 0, 0)
    assert [(m.local, m.remote, m.new) for m in again.versions] == [(1, 1, False), (2, 2, False)]
    as_json = cli(a.root, "push", "churn", "--json")
    assert as_json.code == 0, as_json.err
    doc = json.loads(as_json.out)
    assert (doc["new_versions"], doc["objects_sent"], doc["bytes_sent"]) == (0, 0, 0)

    # A clone has them too, loads them, and checks out the same bytes.
    b, cloned = modelkeep.Repo.clone(team.url, tmp_path / "b", token=team.tokens["reader"])
    try:
        assert cloned.new_versions == 2
        assert b.resolve("churn:2") == a.resolve("churn:2")
        loaded = b.load("churn:2")
        assert sorted(loaded) == sorted(weights)
        for name, values in weights.items():
            assert np.array_equal(np.asarray(loaded[name]), values, equal_nan=True)
        assert files_of(b, "churn:2", tmp_path / "co-b2") == files_of(
            a, "churn:2", tmp_path / "co-a2b"
        )
        assert b.fsck().ok
    finally:
        b.close()


@pytest.mark.parametrize("kind", ["safetensors", "random bytes"])
def test_a_push_sends_only_the_changed_chunks(
    team: Team, client: Client, tmp_path: Path, kind: str
) -> None:
    a = client("a")
    folder = tmp_path / "m"
    if kind == "safetensors":
        weights = tensors(10, seed=2)  # 10 MiB: each tensor its own chunk
        write_model(folder, weights)
        v1 = a.commit("churn", folder, "ten layers")
        weights["layer04"] = tensor(7)  # 10 % of the file
        write_model(folder, weights)
    else:
        write_random(folder, 10 * MIB, seed=3)
        v1 = a.commit("churn", folder, "random")
        data = bytearray((folder / "weights.bin").read_bytes())
        data[4 * MIB : 5 * MIB] = np.random.default_rng(4).bytes(MIB)  # 10 %, mid-file
        (folder / "weights.bin").write_bytes(bytes(data))
    v2 = a.commit("churn", folder, "one part changed")
    first = a.remotes.push("churn:1", token=team.tokens["alice"])
    assert first.objects_sent == len(a.exchange.objects_of(v1))

    before, after = a.exchange.objects_of(v1), a.exchange.objects_of(v2)
    new = {oid: size for oid, size in after.items() if oid not in before}
    changed = sum(new.values())  # chunk bytes (tree and manifest count 0)
    assert MIB <= changed <= (1.1 if kind == "safetensors" else 4) * MIB, changed

    second = a.remotes.push("churn:2", token=team.tokens["alice"])
    assert second.new_versions == 1
    assert second.objects_sent == len(new)  # the new chunks, its manifest and tree
    assert second.objects_skipped == len(after) - len(new)
    # Random bytes do not compress: every byte of a changed chunk crosses, no more.
    assert changed <= second.bytes_sent <= 1.05 * changed + 16 * 1024, (second, changed)
    with team.repo() as server:
        assert files_of(server, "churn:2", tmp_path / "co-s") == files_of(
            a, "churn:2", tmp_path / "co-a"
        )


def _fraud(tmp_path: Path) -> Callable[[modelkeep.Repo], None]:
    def setup(repo: modelkeep.Repo) -> None:
        for i in range(3):
            repo.commit(
                "fraud", write_random(tmp_path / f"fraud{i}", 300_000, seed=50 + i), f"f{i}"
            )

    return setup


def test_the_receiver_numbers_what_it_receives_and_the_mapping_is_kept_both_ways(
    start: Callable[..., Team], tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    team = start(_fraud(tmp_path))
    a = modelkeep.Repo.init(tmp_path / "a")
    try:
        a.remotes.add("origin", team.url)
        # Locally: churn:1 and churn:3 on main, churn:2 on branch exp (not pushed).
        a.commit("churn", write_model(tmp_path / "m1", tensors(2, seed=11)), "base")
        a.branch("churn", "exp", "churn:1")
        a.commit("churn", write_model(tmp_path / "m2", tensors(2, seed=12)), "exp", branch="exp")
        a.commit("churn", write_model(tmp_path / "m3", tensors(2, seed=13)), "main 2")
        assert a.resolve("churn@main").number == 3

        monkeypatch.setenv("MODELKEEP_TOKEN", team.tokens["alice"])
        pushed = cli(a.root, "push", "churn")
        assert pushed.code == 0, pushed.err
        # Numbered there from 1, whatever the server's other models hold.
        assert pushed.out.splitlines() == [
            "churn:1 (local) = churn:1 (origin)  new",
            "churn:3 (local) = churn:2 (origin)  new",
        ]
        assert a.remotes.mapping("origin", "churn") == {1: 1, 3: 2}
        with team.repo() as server:
            assert [v.number for v in server.log("fraud")] == [3, 2, 1]
            assert server.resolve("churn:2").parents == (1,)
            assert server.resolve("churn:2").message == "main 2"
            assert server.resolve("churn@main").number == 2

        # A second client clones, commits on top, pushes.
        b, _ = modelkeep.Repo.clone(team.url, tmp_path / "b", "churn", token=team.tokens["bob"])
        try:
            assert [v.number for v in b.log("churn")] == [2, 1]
            b.commit("churn", write_model(tmp_path / "m4", tensors(2, seed=14)), "from b")
            got = b.remotes.push("churn", token=team.tokens["bob"])
            assert [(m.local, m.remote, m.new) for m in got.versions] == [
                (1, 1, False),
                (2, 2, False),
                (3, 3, True),
            ]
            assert b.remotes.mapping("origin", "churn") == {1: 1, 2: 2, 3: 3}
            b_identity = b.exchange.identities("churn")[3]
        finally:
            b.close()

        # The first client pulls it: its number here is 4 (3 is taken by its own).
        pulled = cli(a.root, "pull", "churn")
        assert pulled.code == 0, pulled.err
        assert "churn:4 (local) = churn:3 (origin)  new" in pulled.out.splitlines()
        assert a.remotes.mapping("origin", "churn") == {1: 1, 3: 2, 4: 3}
        mine = a.resolve("churn:4")
        assert (mine.message, mine.parents) == ("from b", (3,))
        assert a.exchange.identities("churn")[4] == b_identity
        assert a.resolve("churn@main").number == 4  # fast-forward
        assert a.resolve("churn@exp").number == 2  # its own branch, untouched
        listed = cli(a.root, "remote", "map", "churn")
        assert listed.out.splitlines() == [
            "churn:1 (local) = churn:1 (origin)",
            "churn:3 (local) = churn:2 (origin)",
            "churn:4 (local) = churn:3 (origin)",
        ]
        with team.repo() as server:
            assert server.exchange.identities("churn")[3] == b_identity
            assert files_of(server, "churn:3", tmp_path / "co-s") == files_of(
                a, "churn:4", tmp_path / "co-a"
            )
    finally:
        a.close()


def _diverged(tmp_path: Path) -> Callable[[modelkeep.Repo], None]:
    def setup(repo: modelkeep.Repo) -> None:
        for i in range(2):
            repo.commit("churn", write_random(tmp_path / f"theirs{i}", 600_000, seed=60 + i), "x")

    return setup


def test_a_push_onto_versions_it_lacks_is_refused_in_one_line_and_publishes_nothing(
    start: Callable[..., Team], tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    team = start(_diverged(tmp_path))
    with team.repo() as server:
        before = snapshot(server)
    a = modelkeep.Repo.init(tmp_path / "a")
    try:
        a.remotes.add("origin", team.url)
        a.commit("churn", write_random(tmp_path / "mine", 2 * MIB, seed=70), "mine")
        monkeypatch.setenv("MODELKEEP_TOKEN", team.tokens["alice"])
        refused = cli(a.root, "push", "churn")
        assert refused.code == 4
        message = refused.one_line_error()
        assert "churn@main" in message
        assert "pull" in message
        with pytest.raises(ConflictError):
            a.remotes.push("churn")
        assert a.remotes.mapping("origin", "churn") == {}
    finally:
        a.close()
    with team.repo() as server:
        after = snapshot(server)
        assert (after.versions, after.refs, after.events) == (
            before.versions,
            before.refs,
            before.events,
        )
        assert server.fsck().ok


def test_a_refused_push_sends_no_object(start: Callable[..., Team], tmp_path: Path) -> None:
    team = start(_diverged(tmp_path))
    with team.repo() as server:
        before = snapshot(server).objects
    a = modelkeep.Repo.init(tmp_path / "a")
    try:
        a.remotes.add("origin", team.url)
        a.commit("churn", write_random(tmp_path / "mine", 2 * MIB, seed=71), "mine")
        with pytest.raises(ConflictError):
            a.remotes.push("churn", token=team.tokens["alice"])
    finally:
        a.close()
    with team.repo() as server:
        assert snapshot(server).objects == before


def test_a_restarted_server_does_not_ask_again_for_objects_it_has(
    team: Team, client: Client, tmp_path: Path
) -> None:
    a = client("a")
    small = {"config.json": np.random.default_rng(5).bytes(100_000)}  # packed: < 256 KiB
    a.commit("churn", write_model(tmp_path / "m", tensors(2, seed=21), small), "one")
    a.remotes.push("churn", token=team.tokens["alice"])
    team.restart()
    a.commit("churn", write_model(tmp_path / "m", tensors(2, seed=22), small), "two")
    second = a.remotes.push("churn", token=team.tokens["alice"])
    v2 = a.resolve("churn:2")
    v1_objects = a.exchange.objects_of(a.resolve("churn:1"))
    new = [oid for oid in a.exchange.objects_of(v2) if oid not in v1_objects]
    assert second.objects_sent == len(new)
