"""Update and monitor over HTTP against a real `modelkeep server` process on
127.0.0.1: the jobs run on the server's repository and answer what the same job
answers on a local repository given the same model and data (a twin), as the token's
user; a read token changes nothing; oversized data is refused (413, or before a byte
is sent); code of the client's machine is refused before anything is sent; the CLI's
``--repo http://…`` runs both with the --json of a local run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import SGDClassifier

import modelkeep
from modelkeep.errors import PermissionDeniedError, TooLargeError, UsageError
from modelkeep.update import UpdateResult
from server_process import ServerProcess, start_server

FEATURES = ["tenure", "charges", "calls", "usage", "age"]
TARGET = "label"
# A gate these same-distribution updates pass (the default may reject a candidate
# that is as good as its parent within noise): a passed update moves the alias.
GATE = "f1 >= parent - 0.1"


@dataclass(frozen=True)
class Files:
    train: Path  # 1500 rows: the parents' training data
    new: Path  # 1500 new rows of the same distribution: an update's data
    batch: Path  # 400 rows of the same distribution: a monitoring batch (no drift)


@dataclass(frozen=True)
class Team:
    server: ServerProcess
    tokens: dict[str, str]
    files: Files


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    folder = tmp_path_factory.mktemp("jobs")
    x, y = make_classification(
        n_samples=3400, n_features=len(FEATURES), n_informative=3, n_redundant=1,
        n_clusters_per_class=1, class_sep=1.5, random_state=0,
    )  # fmt: skip
    frame = pd.DataFrame(x, columns=FEATURES).assign(**{TARGET: y})
    files = Files(folder / "train.csv", folder / "new.csv", folder / "batch.csv")
    frame.iloc[:1500].to_csv(files.train, index=False)
    frame.iloc[1500:3000].to_csv(files.new, index=False)
    frame.iloc[3000:].to_csv(files.batch, index=False)
    root = folder / "repo"
    repo = modelkeep.Repo.init(root)
    tokens = {
        "write": repo.tokens.create("alice", "write")[1],
        "read": repo.tokens.create("bob", "read")[1],
    }
    repo.close()
    with start_server(root) as server:
        yield Team(server, tokens, files)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MODELKEEP_TOKEN", raising=False)
    monkeypatch.setenv("MODELKEEP_CREDENTIALS", str(tmp_path / "no-credentials.json"))
    return tmp_path / "cache"


@pytest.fixture
def twin(tmp_path: Path) -> Iterator[modelkeep.Repo]:
    """A local repository given the same parent, to run the same job on."""
    with modelkeep.Repo.init(tmp_path / "twin") as r:
        yield r


def _parents(team: Team, name: str, *repos: modelkeep.Repo) -> None:
    """NAME:1 in every repository: the same fitted model, training data and target
    (so the same reference profile), at NAME@production."""
    train = pd.read_csv(team.files.train)
    x, y = train[FEATURES], train[TARGET]
    model = SGDClassifier(loss="log_loss", random_state=0).fit(x, y)
    for repo in repos:
        v = repo.commit(
            name, model, "baseline", data=[str(team.files.train)], input_example=x.head(),
            target=TARGET,
        )  # fmt: skip
        assert v.rev == f"{name}:1"
        repo.promote(v.rev, "production")


def _state(root: Path, name: str) -> dict[str, Any]:
    """What a refused job must leave as it was on the server."""
    with modelkeep.Repo(root) as repo:
        return {
            "versions": [v.to_dict() for v in repo.log(name)],
            "refs": [r.to_dict() for r in repo.refs(name)],
            "events": [e.to_dict() for e in repo.events(name)],
            "reports": repo.model_reports(name),
            "models": sorted(m.name for m in repo.models()),
            "objects": {oid.hex for oid in repo.store.iter_ids()},
        }


def test_monitor_over_http_stores_the_report_a_local_check_makes(
    team: Team, cache: Path, twin: modelkeep.Repo
) -> None:
    remote = modelkeep.Repo.open(team.server.url, token=team.tokens["write"])
    try:
        _parents(team, "watched", remote, twin)
        batch = str(team.files.batch)
        there = remote.monitor("watched@production", batch, target=TARGET)
        here = twin.monitor("watched@production", batch, target=TARGET)
        for key in ("version", "drift", "metrics", "task", "profile"):
            assert there[key] == here[key], key
        assert set(there) == set(here)
        # A DataFrame travels as the Parquet file it makes: the same rows, the same verdict.
        framed = remote.monitor("watched:1", pd.read_csv(batch), target=TARGET)
        assert framed["drift"] == here["drift"]
        assert "source" not in framed

        with modelkeep.Repo(team.server.root) as server_repo:
            stored = server_repo.reports("watched:1")
            assert [r["id"] for r in stored] == [framed["id"], there["id"]]
            first = stored[1]
            assert first["source"] == batch == twin.reports("watched:1")[0]["source"]
            assert first["drift"] == there["drift"]
            checked = server_repo.events("watched", action="monitor.checked")
        assert [e.actor for e in checked] == ["alice", "alice"]
        assert checked[-1].details["report"] == there["id"]
        assert all(e.token_id is not None for e in checked)
        # The facade's reading of the reports sees them too.
        assert [r["id"] for r in remote.reports("watched:1")] == [framed["id"], there["id"]]
    finally:
        remote.close()


def test_update_over_http_makes_the_version_a_local_update_makes(
    team: Team, cache: Path, twin: modelkeep.Repo
) -> None:
    remote = modelkeep.Repo.open(team.server.url, token=team.tokens["write"])
    try:
        _parents(team, "grown", remote, twin)
        options = {
            "data": str(team.files.new), "target": TARGET, "promote": "production",
            "gate": GATE,
        }  # fmt: skip
        there = remote.update("grown@production", **options)
        here = twin.update("grown@production", **options)
    finally:
        remote.close()
    assert isinstance(there, UpdateResult)
    assert there.passed
    assert here.passed
    assert there.promoted == here.promoted
    for field in ("strategy", "gate", "reason", "parent_metrics", "candidate_metrics",
                  "contradiction", "holdout_dataset", "notes"):  # fmt: skip
        assert getattr(there, field) == getattr(here, field), field
    assert there.parent.rev == here.parent.rev == "grown:1"
    made, local = there.candidate, here.candidate
    assert (made.rev, made.parents, made.kind, made.status, made.branch) == (
        local.rev, local.parents, local.kind, local.status, local.branch,
    )  # fmt: skip
    assert made.author == "alice"  # the token's user, on the server
    assert made.metrics == local.metrics
    assert made.params == local.params
    # The same data by content; its place is where the client had it, from which
    # address and user (the server's temporary copy of it is gone).
    assert [d.content_id for d in made.datasets] == [d.content_id for d in local.datasets]
    assert [d.path for d in made.datasets] == [f"alice@127.0.0.1:{team.files.new.resolve()}"]
    assert [d.path for d in local.datasets] == [str(team.files.new.resolve())]
    update_doc, local_doc = made.annotations["update"], local.annotations["update"]
    assert set(update_doc) == set(local_doc)
    assert update_doc["metrics"] == local_doc["metrics"]
    assert update_doc["holdout"]["dataset"] == local_doc["holdout"]["dataset"]

    with modelkeep.Repo(team.server.root) as server_repo:
        assert server_repo.resolve(made.rev) == made
        assert server_repo.resolve("grown@production").number == made.number
        promoted = server_repo.events("grown", action="promote")[0]
        assert (promoted.actor, promoted.token_id is not None) == ("alice", True)
        holdout = server_repo.resolve(there.holdout_dataset or "")
        assert holdout.author == "alice"
    assert UpdateResult.from_dict(there.to_dict(), there.parent) == there


def test_a_read_token_is_refused_and_nothing_changes(team: Team, cache: Path) -> None:
    writer = modelkeep.Repo.open(team.server.url, token=team.tokens["write"])
    try:
        _parents(team, "guarded", writer)
        writer.commit("guarded-data", team.files.new, "new rows")  # a dataset-like model
    finally:
        writer.close()
    before = _state(team.server.root, "guarded")
    reader = modelkeep.Repo.open(team.server.url, token=team.tokens["read"])
    try:
        with pytest.raises(PermissionDeniedError):
            reader.monitor("guarded:1", str(team.files.batch), target=TARGET)
        with pytest.raises(PermissionDeniedError):
            reader.update("guarded:1", data=str(team.files.new), target=TARGET)
    finally:
        reader.close()
    # Straight to the job routes, with nothing to upload: the route itself says 403.
    headers = {"Authorization": f"Bearer {team.tokens['read']}"}
    for job, body in (
        ("monitor", {"data": {"dataset": "guarded-data:1"}}),
        ("update", {"data": {"dataset": "guarded-data:1"}, "target": TARGET}),
    ):
        answer = httpx.post(
            f"{team.server.url}/api/v1/versions/guarded:1/{job}", json=body, headers=headers
        )
        assert answer.status_code == 403, answer.text
    assert _state(team.server.root, "guarded") == before


def test_oversized_data_is_refused_with_413_and_nothing_changes(
    team: Team, cache: Path, tmp_path: Path
) -> None:
    remote = modelkeep.Repo.open(team.server.url, token=team.tokens["write"])
    try:
        _parents(team, "bounded", remote)
        before = _state(team.server.root, "bounded")
        big = tmp_path / "big.csv"
        with big.open("wb") as f:  # zeros: its chunks are all one object, cheap to send
            f.truncate((64 << 20) + 1)
        # The client refuses before a byte is sent...
        with pytest.raises(TooLargeError, match="smaller batch"):
            remote.monitor("bounded:1", str(big))
        with pytest.raises(TooLargeError):
            remote.update("bounded:1", data=str(big), target=TARGET)
        assert _state(team.server.root, "bounded") == before
        # ...and the server answers 413 to a client that sends it all the same.
        file_id = remote._job_file(big, "bounded").hex
    finally:
        remote.close()
    before = _state(team.server.root, "bounded")
    headers = {"Authorization": f"Bearer {team.tokens['write']}"}
    url = f"{team.server.url}/api/v1/versions/bounded:1"
    body = {"data": {"file": file_id, "name": "big.csv"}, "target": TARGET}
    for job in ("monitor", "update"):
        answer = httpx.post(f"{url}/{job}", json=body, headers=headers)
        assert answer.status_code == 413, answer.text
        assert answer.json()["kind"] == "TooLargeError"
    # A job's request itself stays small: a body past the server's limit is 413 too.
    answer = httpx.post(
        f"{url}/monitor", content=b"x" * ((1 << 20) + 1), headers=headers, timeout=30
    )
    assert answer.status_code == 413
    assert _state(team.server.root, "bounded") == before


def test_code_of_this_machine_is_refused_before_anything_is_sent(team: Team, cache: Path) -> None:
    remote = modelkeep.Repo.open(team.server.url, token=team.tokens["write"])
    try:
        _parents(team, "coded", remote)
        before = _state(team.server.root, "coded")
        data = str(team.files.new)

        def trainer(model: Any, xy: Any, params: Any) -> Any:
            return model

        with pytest.raises(UsageError, match="trainer= is code of this machine") as refused:
            remote.update("coded:1", data=data, target=TARGET, trainer=trainer)
        assert "local clone" in str(refused.value)
        assert "\n" not in str(refused.value)
        with pytest.raises(UsageError, match="trainer="):  # a name is code to import there
            remote.update("coded:1", data=data, target=TARGET, trainer="os:system")
        with pytest.raises(UsageError, match="step="):
            remote.update("coded:1", data=data, target=TARGET, step=trainer)
        with pytest.raises(UsageError, match="train= is a function"):
            remote.update("coded:1", data=data, target=TARGET, train=trainer)
        with pytest.raises(UsageError, match="custom strategy"):
            remote.update("coded:1", data=data, target=TARGET, strategy="custom")
        with pytest.raises(UsageError, match="CSV or Parquet"):
            remote.monitor("coded:1", __file__)
    finally:
        remote.close()
    assert _state(team.server.root, "coded") == before


def _cli(repo: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelkeep", "--repo", repo, *args, "--json"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


def test_the_cli_runs_update_and_monitor_on_a_server(
    team: Team, cache: Path, twin: modelkeep.Repo
) -> None:
    remote = modelkeep.Repo.open(team.server.url, token=team.tokens["write"])
    try:
        _parents(team, "cli", remote, twin)
    finally:
        remote.close()
    twin.close()
    env = {**os.environ, "MODELKEEP_TOKEN": team.tokens["write"]}
    monitor = ("monitor", "run", "cli@production", "--data", str(team.files.batch),
               "--target", TARGET)  # fmt: skip
    update = ("update", "cli@production", "--data", str(team.files.new), "--target", TARGET,
              "--gate", GATE)  # fmt: skip
    shapes = []
    for repo in (team.server.url, str(twin.root)):
        checked = _cli(repo, env, *monitor)
        assert checked.returncode == 0, checked.stderr
        updated = _cli(repo, env, *update)
        assert updated.returncode == 0, updated.stderr
        shapes.append((json.loads(checked.stdout), json.loads(updated.stdout)))
    (check_there, update_there), (check_here, update_here) = shapes
    assert set(check_there) == set(check_here)
    assert check_there["drift"] == check_here["drift"]
    assert set(update_there) == set(update_here)
    assert set(update_there["candidate"]) == set(update_here["candidate"])
    assert update_there["candidate"]["rev"] == update_here["candidate"]["rev"] == "cli:2"
    assert update_there["candidate"]["author"] == "alice"
    assert update_there["candidate_metrics"] == update_here["candidate_metrics"]
