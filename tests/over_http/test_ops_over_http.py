"""Datasets, policies, schedules, diff, checkout, status, gc and fsck through
``Repo.open("http://…")`` against a real `modelkeep server` process on 127.0.0.1: the
same typed results as the server's own repository gives, the right scope for each
change (a read token 403, a model outside the token 404, admin for gc, fsck, schedules
and webhooks) and
nothing changed when refused. The CLI's ``--repo http://…`` takes the same routes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import modelkeep
from modelkeep.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    UsageError,
)
from modelkeep.store import ObjectId
from server_process import ServerProcess, start_server

FEATURES = ["a", "b", "c"]
POLICY = """
[[rule]]
name = "quality drop"
metric = "accuracy"
below = "reference - 0.05"
windows = 3
action = "alert"
cooldown = "10m"
"""


def _table(rows: int, seed: int) -> pd.DataFrame:
    x = np.random.default_rng(seed).normal(size=(rows, 3))
    frame = pd.DataFrame(x, columns=FEATURES)
    return frame.assign(label=(frame["a"] > 0).astype(int))


@pytest.fixture(scope="module")
def team(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, dict[str, str], Path]]:
    """A server over a repository with churn:1, churn:2 (with reference profiles,
    churn@production at 1) and a safetensors model, and tokens of every kind."""
    base = tmp_path_factory.mktemp("team")
    root = base / "repo"
    train = _table(200, 0)
    train.to_csv(base / "train.csv", index=False)
    repo = modelkeep.Repo.init(root)
    for n, c in enumerate((1.0, 0.05), start=1):
        repo.commit(
            "churn",
            LogisticRegression(C=c).fit(train[FEATURES], train["label"]),
            f"churn {n}",
            data=[base / "train.csv"],
            target="label",
            input_example=train[FEATURES].head(),
            params={"C": c},
            metrics={"accuracy": 0.9 + n / 100},
        )
    repo.set_alias("churn@production", "churn:1")
    tokens = {
        "admin": repo.tokens.create("root", "admin")[1],
        "write": repo.tokens.create("alice", "write")[1],
        "read": repo.tokens.create("bob", "read")[1],
        "other": repo.tokens.create("carol", "write", "other*")[1],
        "churn_admin": repo.tokens.create("dan", "admin", "churn*")[1],
    }
    repo.close()
    with start_server(root) as server:
        yield server, tokens, base


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MODELKEEP_TOKEN", raising=False)
    monkeypatch.setenv("MODELKEEP_CREDENTIALS", str(tmp_path / "no-credentials.json"))
    return tmp_path / "cache"


@pytest.fixture
def local(team) -> Iterator[modelkeep.Repo]:  # type: ignore[no-untyped-def]
    repo = modelkeep.Repo(team[0].root)
    yield repo
    repo.close()


def _open(team, who: str) -> modelkeep.Repo:  # type: ignore[no-untyped-def]
    server, tokens, _ = team
    return modelkeep.Repo.open(server.url, token=tokens[who])


def _cli(team, who: str, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    server, tokens, _ = team
    env = {**os.environ, "MODELKEEP_TOKEN": tokens[who]}
    return subprocess.run(
        [sys.executable, "-m", "modelkeep", "--repo", server.url, *args],
        capture_output=True,
        text=True,
        env=env,
    )


# -- datasets -------------------------------------------------------------------------


def test_a_dataset_is_hashed_here_and_its_chunks_sent(team, cache, local, tmp_path) -> None:  # type: ignore[no-untyped-def]
    csv = tmp_path / "sales.csv"
    _table(300, 1).to_csv(csv, index=False)
    remote = _open(team, "write")
    try:
        made = remote.data_add("sales", csv, "first sales")
        assert made == local.resolve("sales:1")
        assert (made.rev, made.author, made.artifact["rows"]) == ("sales:1", "alice", 300)
        assert made.artifact["format"] == "dataset"
        listed = {m.name: m for m in remote.models()}
        assert listed["sales"] == {m.name: m for m in local.models()}["sales"]
        assert listed["sales"].kind == "dataset"
        # Its bytes are on the server: checked out there, they are the file's.
        out = local.checkout("sales:1", tmp_path / "there")
        assert (Path(out.dest) / "sales.csv").read_bytes() == csv.read_bytes()
        # A model's name is not a dataset's: refused by the server, nothing added.
        with pytest.raises(ConflictError, match="not a dataset"):
            remote.data_add("churn", csv)
        assert [v.number for v in local.log("churn")] == [2, 1]
        with pytest.raises(UsageError, match="token's user"):
            remote.data_add("sales", csv, author="mallory")
    finally:
        remote.close()

    for who, error in (("read", PermissionDeniedError), ("other", NotFoundError)):
        refused = _open(team, who)
        try:
            with pytest.raises(error):
                refused.data_add("sales", csv, "not allowed")
        finally:
            refused.close()
    assert [v.number for v in local.log("sales")] == [1]

    shown = _cli(team, "read", "data", "list", "--json")
    assert shown.returncode == 0, shown.stderr
    assert [d["name"] for d in json.loads(shown.stdout)] == ["sales"]
    added = _cli(team, "write", "data", "add", "sales", str(csv), "-m", "again", "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["rev"] == "sales:2"
    assert local.resolve("sales:2").parents == (1,)


# -- policies -------------------------------------------------------------------------


def test_a_policy_is_set_and_read_with_the_same_rules(team, cache, local) -> None:  # type: ignore[no-untyped-def]
    remote = _open(team, "write")
    try:
        assert remote.policy("churn") is None
        rules = remote.set_policy("churn", POLICY, "alert on a drop")
        assert rules == local.policy("churn")
        assert remote.policy("churn") == rules
        assert (rules[0].name, rules[0].cooldown) == ("quality drop", 600)
        (event,) = local.events("churn", action="policy.set")
        assert (event.actor, event.message) == ("alice", "alert on a drop")
        # A policy that does not parse: 400 naming the problem, the old one kept.
        with pytest.raises(UsageError):
            remote.set_policy("churn", "[[rule]]\nmetric = 'nonsense'\n")
        assert local.policy("churn") == rules
    finally:
        remote.close()

    for who, error in (("read", PermissionDeniedError), ("other", NotFoundError)):
        refused = _open(team, who)
        try:
            with pytest.raises(error):
                refused.set_policy("churn", POLICY.replace("alert", "rollback"))
        finally:
            refused.close()
    reader = _open(team, "read")
    try:
        assert reader.policy("churn") == rules
    finally:
        reader.close()
    assert local.policy("churn") == rules
    assert len(local.events("churn", action="policy.set")) == 1

    # A webhook makes the server post to a URL of the policy's choosing: admin only.
    hooked = POLICY + 'webhook = "http://127.0.0.1:9/hook"\n'
    writer = _open(team, "write")
    try:
        with pytest.raises(PermissionDeniedError, match=r"webhook.*admin"):
            writer.set_policy("churn", hooked)
    finally:
        writer.close()
    assert local.policy("churn") == rules
    admin = _open(team, "churn_admin")
    try:
        assert admin.set_policy("churn", hooked)[0].webhook == "http://127.0.0.1:9/hook"
        assert admin.set_policy("churn", POLICY, "back") == rules  # as later tests expect
    finally:
        admin.close()

    shown = _cli(team, "read", "monitor", "policy", "churn", "--json")
    assert shown.returncode == 0, shown.stderr
    assert [r["name"] for r in json.loads(shown.stdout)] == ["quality drop"]


# -- schedules ------------------------------------------------------------------------


def test_schedules_are_made_and_ended_on_the_server(team, cache, local, tmp_path) -> None:  # type: ignore[no-untyped-def]
    template = str(tmp_path / "batch-{date}.csv")
    remote = _open(team, "churn_admin")
    try:
        made = remote.schedule("churn@production", "1h", template, target="label")
        assert made == local.schedules("churn")[0]
        assert (made.revision, made.every, made.data, made.created_by) == (
            "churn@production",
            3600,
            template,
            "dan",
        )
        assert remote.schedules("churn") == local.schedules("churn")
        # Relative to which folder? The server's: refused here, before anything is sent.
        with pytest.raises(UsageError, match="absolute path"):
            remote.schedule("churn@production", "1h", "batch-{date}.csv")
        with pytest.raises(UsageError, match="is not a revision of"):
            remote._client.post(
                "/models/churn/schedules",
                {"rev": "other:1", "every": "1h", "data": template},
            )
    finally:
        remote.close()

    # The server reads the files a schedule names: a write token (CI, training jobs)
    # may not make it do so.
    for who, error, match in (
        ("read", PermissionDeniedError, "admin"),
        ("write", PermissionDeniedError, r"read the files.*admin"),
        ("other", NotFoundError, None),
    ):
        refused = _open(team, who)
        try:
            with pytest.raises(error, match=match):
                refused.schedule("churn@production", "1d", template)
            with pytest.raises(error, match=match):
                refused.unschedule(made.id)
        finally:
            refused.close()
    assert local.schedules("churn") == [made]

    remote = _open(team, "churn_admin")
    try:
        with pytest.raises(NotFoundError, match="no schedule #999"):
            remote.unschedule(999)
        ended = remote.unschedule(made.id, "not needed")
        assert not ended.active
        assert ended == local.schedules("churn", include_removed=True)[0]
        assert remote.schedules("churn") == []
        assert remote.schedules("churn", include_removed=True) == [ended]
        assert local.events("churn", action="monitor.unschedule")[0].actor == "dan"
    finally:
        remote.close()


# -- diff -----------------------------------------------------------------------------


def test_diff_gives_the_same_typed_result(team, cache, local, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from safetensors.numpy import save_file

    rng = np.random.default_rng(3)
    weights = {"w1": rng.normal(size=(64, 64)), "w2": rng.normal(size=(16,)), "w3": np.ones(4)}
    folder = tmp_path / "net"
    folder.mkdir()
    save_file(weights, str(folder / "model.safetensors"))
    (folder / "notes.txt").write_text("first")
    remote = _open(team, "write")
    try:
        remote.commit("net", folder, "first")
        weights["w2"] = weights["w2"] + 1.0
        weights["w3"] = np.ones(8)
        del weights["w1"]
        save_file(weights, str(folder / "model.safetensors"))
        (folder / "notes.txt").unlink()
        (folder / "more.txt").write_text("second")
        remote.commit("net", folder, "second", metrics={"loss": 0.1})

        for a, b in (("churn:1", "churn:2"), ("net:1", "net:2"), ("churn:2", "churn:2")):
            there = local.diff(a, b)
            here = remote.diff(a, b)
            assert here == there
            assert (here.identical, here.breaking) == (there.identical, there.breaking)
        tensors = remote.diff("net:1", "net:2").tensors[0]
        assert (tensors.removed, tensors.reshaped) == (["w1"], [("w3", [4], [8])])
        assert remote.diff("churn:1", "churn:2").model == local.diff("churn:1", "churn:2").model
        with pytest.raises(UsageError, match="pull the model"):
            remote.diff("churn:1", "churn:2", data=tmp_path / "rows.csv")
    finally:
        remote.close()

    shown = _cli(team, "read", "diff", "churn:1", "churn:2", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["params"] == {"C": {"before": 1.0, "after": 0.05}}


# -- checkout -------------------------------------------------------------------------


def test_checkout_fetches_only_missing_chunks_then_writes_as_locally(  # type: ignore[no-untyped-def]
    team, cache, local, tmp_path
) -> None:
    remote = _open(team, "read")
    try:
        here = remote.checkout("churn:2", tmp_path / "here")
        there = local.checkout("churn:2", tmp_path / "there")
        assert (here.rev, here.written, here.unchanged, here.bytes_written) == (
            there.rev,
            there.written,
            there.unchanged,
            there.bytes_written,
        )
        for rel in there.written:
            assert (tmp_path / "here" / rel).read_bytes() == (tmp_path / "there" / rel).read_bytes()
        # Every object is cached now: a second checkout fetches nothing and finds its
        # files in place.
        needed = remote._client.get("/versions/churn:2/record")["objects"]
        assert remote._e.exchange.missing(ObjectId(i) for i in needed) == []
        again = remote.checkout("churn:2", tmp_path / "here")
        assert (again.written, again.unchanged) == ([], there.written)
        assert remote.checkout("churn@production", tmp_path / "first").rev == "churn:1"
        # A changed file is a conflict, as locally: nothing written unless forced.
        first = tmp_path / "here" / there.written[0]
        first.write_bytes(b"changed")
        with pytest.raises(ConflictError, match="overwrite"):
            remote.checkout("churn:2", tmp_path / "here")
        assert first.read_bytes() == b"changed"
        forced = remote.checkout("churn:2", tmp_path / "here", force=True)
        assert first.read_bytes() == (tmp_path / "there" / there.written[0]).read_bytes()
        assert forced.rev == "churn:2"
    finally:
        remote.close()

    done = _cli(team, "read", "checkout", "churn:1", str(tmp_path / "cli"), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rev"] == "churn:1"


def test_status_fetches_the_tree_and_links_never_the_files(  # type: ignore[no-untyped-def]
    team, cache, local, tmp_path
) -> None:
    folder = tmp_path / "kit"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(os.urandom(300_000))
    (folder / "notes.txt").write_text("first")
    (folder / "latest").symlink_to("weights.bin")
    local.commit("kit", folder, "a folder with a link")
    (folder / "notes.txt").write_text("second")
    (folder / "extra.txt").write_text("new")
    remote = _open(team, "read")
    try:
        got = remote.status("kit:1", folder)
        assert got == local.status("kit:1", folder)
        assert (got.modified, got.missing, got.untracked) == (["notes.txt"], [], ["extra.txt"])
        assert got.unchanged == 2  # the weights and the link, read from the cache
        # Each file here was hashed and compared with its manifest id: the chunks of
        # the weights never came.
        sizes = remote._client.get("/versions/kit:1/record")["objects"]
        lacking = remote._e.exchange.missing(ObjectId(i) for i in sizes)
        assert sum(sizes[o.hex] for o in lacking) >= 300_000
        (folder / "latest").unlink()
        (folder / "latest").symlink_to("notes.txt")
        assert remote.status("kit:1", folder).modified == ["latest", "notes.txt"]
    finally:
        remote.close()

    shown = _cli(team, "read", "status", "kit:1", str(folder), "--json")
    assert shown.returncode == 1, shown.stderr  # the folder differs: 1, as locally
    assert json.loads(shown.stdout)["untracked"] == ["extra.txt"]


# -- gc and fsck ----------------------------------------------------------------------


def test_gc_and_fsck_need_an_admin_token_for_every_model(team, cache, local) -> None:  # type: ignore[no-untyped-def]
    with local.store.writer() as writer:
        garbage = writer.add(b"an object no version references")
    assert local.fsck().unreferenced == 1
    for who in ("read", "write", "churn_admin"):
        refused = _open(team, who)
        try:
            with pytest.raises(PermissionDeniedError, match="admin"):
                refused.gc()
            with pytest.raises(PermissionDeniedError, match="admin"):
                refused.fsck()
        finally:
            refused.close()
    assert local.store.has(garbage)

    admin = _open(team, "admin")
    try:
        checked = admin.fsck()
        assert checked == local.fsck()
        assert (checked.ok, checked.unreferenced) == (True, 1)
        collected = admin.gc()
        assert (collected.objects_removed, collected.temp_files_removed) == (1, 0)
        assert collected.bytes_freed > 0
        assert local.fsck().unreferenced == 0
        assert admin.gc() == local.gc()  # nothing left to collect, either way
        assert admin.fsck(repair=True) == local.fsck()
    finally:
        admin.close()

    for args in (("fsck", "--json"), ("fsck", "--repair", "--json")):  # the server's fsck
        shown = _cli(team, "admin", *args)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["ok"] is True
    refused = _cli(team, "read", "gc")
    assert refused.returncode != 0
    assert len(refused.stderr.strip().splitlines()) == 1
