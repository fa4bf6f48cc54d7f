"""``Repo.open("http://…")`` against a real `modelkeep server` process on 127.0.0.1:
the same typed records as a local repository, commits numbered by the server under
concurrency (4 client processes × 25 commits → versions 1..100), loads that fetch
only what is not cached, and the CLI's ``--repo http://…``. Under
MODELKEEP_TEST_ENGINE=pg-s3 the server's repository is on PostgreSQL + S3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import modelkeep
from modelkeep.errors import PermissionDeniedError, RefMovedError, UsageError
from modelkeep.store import ObjectId
from server_process import ServerProcess, start_server


@pytest.fixture(scope="module")
def team(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    root = tmp_path_factory.mktemp("team") / "repo"
    repo = modelkeep.Repo.init(root)
    tokens = {
        "write": repo.tokens.create("alice", "write")[1],
        "read": repo.tokens.create("bob", "read")[1],
    }
    repo.close()
    with start_server(root) as server:
        yield server, tokens


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MODELKEEP_TOKEN", raising=False)
    monkeypatch.setenv("MODELKEEP_CREDENTIALS", str(tmp_path / "no-credentials.json"))
    return tmp_path / "cache"


def _model(c: float) -> LogisticRegression:
    x = np.random.default_rng(0).normal(size=(80, 3))
    return LogisticRegression(C=c).fit(x, (x[:, 0] > 0).astype(int))


def test_the_facade_over_http_gives_the_same_records(team, cache) -> None:  # type: ignore[no-untyped-def]
    server, tokens = team
    remote = modelkeep.Repo.open(server.url, token=tokens["write"])
    v1 = remote.commit("iris", _model(1.0), "first", metrics={"f1": 0.8}, params={"C": 1.0})
    v2 = remote.commit("iris", _model(0.1), "second")
    assert (v1.rev, v2.rev, v2.parents) == ("iris:1", "iris:2", (1,))
    assert v1.author == "alice"  # the token's user, not this machine's git user
    assert isinstance(v1, modelkeep.Version)
    assert v1.metrics == {"f1": 0.8}

    local = modelkeep.Repo(server.root)
    try:
        there = local.resolve("iris:1")
        assert remote.resolve("iris:1") == there
        assert [v.rev for v in remote.log("iris")] == ["iris:2", "iris:1"]
        assert remote.files("iris:1") == local.files("iris:1")
        x = np.random.default_rng(1).normal(size=(20, 3))
        loaded = remote.load("iris:2")
        assert (loaded.predict_proba(x) == local.load("iris:2").predict_proba(x)).all()
        # Loaded once: every object is cached, so a second load fetches nothing.
        cached = remote._e.exchange  # the cache repository's engine
        needed = remote._client.get("/versions/iris:2/record")["objects"]
        assert cached.missing(ObjectId(i) for i in needed) == []

        ref = remote.set_alias("iris@production", "iris:1")
        assert ref == local.refs("iris", "alias")[0]
        with pytest.raises(RefMovedError):
            remote.set_alias("iris@production", "iris:2", expected=2)
        assert local.resolve("iris@production").number == 1
        before, ref = remote.promote("iris:2", "production", "better")
        assert (before, ref.version) == (1, 2)
        before, ref = remote.rollback("iris@production")
        assert (before, ref.version) == (2, 1)
        moves = [e for e in remote.events("iris") if e.action in ("promote", "rollback")]
        assert [e.actor for e in moves] == ["alice", "alice"]
        assert all(e.token_id is not None for e in moves)
        with pytest.raises(UsageError, match="not offered over HTTP"):
            remote.upgrade()
    finally:
        local.close()
        remote.close()

    reader = modelkeep.Repo.open(server.url, token=tokens["read"])
    try:
        with pytest.raises(PermissionDeniedError):
            reader.commit("iris", _model(2.0), "not allowed")
        with pytest.raises(PermissionDeniedError):
            reader.set_alias("iris@production", "iris:2")
        assert reader.resolve("iris@production").number == 1
        assert [v.number for v in reader.log("iris")] == [2, 1]  # nothing was added
    finally:
        reader.close()


_CLIENT = """
import json, sys
import numpy as np
import modelkeep
from sklearn.linear_model import LogisticRegression

url, who = sys.argv[1], int(sys.argv[2])
x = np.random.default_rng(who).normal(size=(40, 3))
y = (x[:, 0] > 0).astype(int)
repo = modelkeep.Repo.open(url)
made = [repo.commit("churn", LogisticRegression(C=0.01 * (1 + who * 25 + i)).fit(x, y),
                    f"client {who} commit {i}").number for i in range(25)]
repo.close()
print(json.dumps(made))
"""


def test_four_clients_commit_25_each_and_the_server_numbers_them_1_to_100(
    team, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    server, tokens = team
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CLIENT, server.url, str(who)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "MODELKEEP_TOKEN": tokens["write"],
                "XDG_CACHE_HOME": str(tmp_path / f"cache{who}"),
            },
        )
        for who in range(4)
    ]
    made = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        made.append(json.loads(out.strip().splitlines()[-1]))
    assert all(len(m) == 25 and m == sorted(m) for m in made)
    assert sorted(n for m in made for n in m) == list(range(1, 101))
    local = modelkeep.Repo(server.root)
    try:
        history = {v.number: v for v in local.log("churn")}
        assert sorted(history) == list(range(1, 101))
        # One line of history: each version on the head as it was when it arrived.
        assert all(history[n].parents == ((n - 1,) if n > 1 else ()) for n in history)
        assert {v.author for v in history.values()} == {"alice"}
        commits = local.events("churn", action="commit")
        assert len(commits) == 100
        assert {e.actor for e in commits} == {"alice"}
        assert local.fsck().ok
    finally:
        local.close()


def test_the_cli_takes_a_server_url_as_its_repository(team, cache) -> None:  # type: ignore[no-untyped-def]
    server, tokens = team
    env = {**os.environ, "MODELKEEP_TOKEN": tokens["read"]}
    run = [sys.executable, "-m", "modelkeep", "--repo", server.url]
    shown = subprocess.run([*run, "log", "iris", "--json"], capture_output=True, text=True, env=env)
    assert shown.returncode == 0, shown.stderr
    assert [v["rev"] for v in json.loads(shown.stdout)][-1] == "iris:1"
    refused = subprocess.run(
        [*run, "alias", "set", "iris@production", "iris:2"], capture_output=True, text=True, env=env
    )
    assert refused.returncode == 9
    assert len(refused.stderr.strip().splitlines()) == 1
    no_token = {k: v for k, v in env.items() if k != "MODELKEEP_TOKEN"}
    anonymous = subprocess.run([*run, "log", "iris"], capture_output=True, text=True, env=no_token)
    assert anonymous.returncode == 8
    assert "MODELKEEP_TOKEN" in anonymous.stderr


def test_branches_tags_labels_history_and_diff_over_http(team, cache) -> None:  # type: ignore[no-untyped-def]
    server, tokens = team
    remote = modelkeep.Repo.open(server.url, token=tokens["write"])
    local = modelkeep.Repo(server.root)
    try:
        remote.commit("kiwi", _model(1.0), "first")
        remote.commit("kiwi", _model(0.5), "second")
        assert remote.default_branch("kiwi") == "main"
        made = remote.branch("kiwi", "exp", "kiwi:1")
        assert (made.kind, made.version) == ("branch", 1)
        on_exp = remote.commit("kiwi", _model(0.2), "on exp", branch="exp")
        assert (on_exp.number, on_exp.parents, on_exp.branch) == (3, (1,), "exp")
        assert [v.number for v in remote.log("kiwi", "exp")] == [3, 1]
        assert remote.tag("kiwi:2", "validated").version == 2
        assert local.resolve("kiwi@validated").number == 2
        labelled = remote.label("kiwi:2", reviewed_by="carol", message="looked at it")
        assert labelled.labels == {"reviewed_by": "carol"} == local.resolve("kiwi:2").labels
        assert remote.unlabel("kiwi:2", "reviewed_by").labels == {}
        moves = remote.history("kiwi@validated")
        assert [e.action for e in moves] == [e.action for e in local.history("kiwi@validated")]
        assert remote.delete_tag("kiwi@validated").name == "validated"
        assert remote.delete_branch("kiwi", "exp").name == "exp"
        assert {r.name for r in local.refs("kiwi")} == {"main"}
        diff = remote._client.get("/diff/kiwi:1/kiwi:2")
        assert diff == json.loads(json.dumps(local.diff("kiwi:1", "kiwi:2").to_dict(), default=str))
        assert remote.reports("kiwi:1") == []
        assert remote.schedules("kiwi") == []
    finally:
        local.close()
        remote.close()
