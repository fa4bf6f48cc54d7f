"""The classic session, through the real `modelkeep` command in subprocesses.

The module fixture builds the history every test reads:

    churn:1  baseline (folder: model.bin, config.json, old.txt; params, metrics, dataset)
    churn:2  on main, parent 1 (model.bin changed at its tail, old.txt → new.txt)
    churn:3  on branch exp, forked from churn:1

committing from a subfolder of the repository (discovery by walking up), from
outside it with ``--repo`` and from outside it with ``MODELKEEP_REPO``.
"""

from __future__ import annotations

import platform
import random
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import pytest

import modelkeep

AUTHOR = "Ada Tester <ada@example.com>"  # what the e2e conftest sets as MODELKEEP_AUTHOR


@dataclass
class Session:
    base: Path
    root: Path
    outside: Path
    v1: dict[str, bytes]
    v2: dict[str, bytes]
    exp: dict[str, bytes]
    dataset: Path
    init_out: str
    commit1_out: str
    commit2_out: str
    exp_commit: dict[str, Any]
    checkout_out: str
    branch_out: str
    restored: Path


def _write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture(scope="module")
def session(cli: Any, e2e_base: Path) -> Session:
    rng = random.Random(20240611)
    model = rng.randbytes(6 << 20)  # > max chunk size: at least two chunks
    config = b'{"features": 20, "target": "churned"}\n'
    v1 = {"model.bin": model, "config.json": config, "old.txt": b"notes for the baseline\n"}
    v2 = {
        "model.bin": model[:-1000] + rng.randbytes(1000),
        "config.json": config,
        "new.txt": b"notes for the bigger model\n",
    }
    exp = {"model.bin": rng.randbytes(300_000), "config.json": config}
    train1 = _write_folder(e2e_base / "train1", v1)
    train2 = _write_folder(e2e_base / "train2", v2)
    train_exp = _write_folder(e2e_base / "train_exp", exp)
    dataset = e2e_base / "train.csv"
    dataset.write_bytes(
        b"x1,x2,label\n" + b"".join(b"%d,%d,%d\n" % (i, i * 7, i % 2) for i in range(5000))
    )
    outside = e2e_base / "outside"
    outside.mkdir()

    root = e2e_base / "repo"
    init = cli("init", root, cwd=e2e_base)
    deeper = root / "sub" / "deeper"
    deeper.mkdir(parents=True)
    # Discovery: run from a subfolder, the repository is found by walking up.
    c1 = cli(
        "commit", "churn", train1, "-m", "baseline",
        "-p", "lr=0.01", "--param", "depth=3", "-p", "solver=lbfgs",
        "--metric", "f1=0.81", "--metric", "acc=0.9", "--data", dataset,
        cwd=deeper,
    )  # fmt: skip
    # --repo from a folder outside any repository.
    c2 = cli(
        "--repo", root, "commit", "churn", train2, "-m", "bigger model",
        "-p", "lr=0.02", "-p", "depth=3", "-p", "solver=lbfgs", "--metric", "f1=0.86",
        cwd=outside,
    )  # fmt: skip
    restored = e2e_base / "restored"
    co = cli("checkout", "churn:1", restored, cwd=root)
    br = cli("branch", "churn", "exp", "--from", "churn:1", cwd=root)
    # MODELKEEP_REPO from a folder outside any repository.
    c3 = cli(
        "commit", "churn", train_exp, "--branch", "exp", "-m", "retrain on a new seed",
        "-p", "lr=0.01", "--metric", "f1=0.83", "--json",
        cwd=outside, env={"MODELKEEP_REPO": str(root)},
    )  # fmt: skip
    return Session(
        base=e2e_base,
        root=root,
        outside=outside,
        v1=v1,
        v2=v2,
        exp=exp,
        dataset=dataset,
        init_out=init.out,
        commit1_out=c1.out,
        commit2_out=c2.out,
        exp_commit=c3.json(),
        checkout_out=co.out,
        branch_out=br.out,
        restored=restored,
    )


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_commit_branch_and_checkout_of_an_earlier_version(session: Session) -> None:
    s = session
    assert (
        s.init_out.strip() == f"Initialized empty modelkeep repository in {s.root / '.modelkeep'}"
    )
    assert (s.root / ".modelkeep" / "config.json").is_file()
    assert s.commit1_out.startswith("[main churn:1] baseline  (3 file(s), ")
    assert s.commit2_out.startswith("[main churn:2] bigger model  (3 file(s), ")
    assert s.branch_out.strip() == "created branch exp of churn at churn:1"
    assert s.exp_commit["rev"] == "churn:3"
    assert s.exp_commit["branch"] == "exp"
    assert s.exp_commit["parents"] == [1]
    assert s.exp_commit["file_count"] == 2

    # Going back: churn:1 comes out byte for byte, and nothing else with it.
    assert f"checked out churn:1 into {s.restored}: 3 written, 0 already up to date" in (
        s.checkout_out
    )
    assert _files(s.restored) == s.v1


def test_log_json_graph_and_branch(cli: Any, session: Session) -> None:
    root = session.root
    versions = cli("log", "churn", "--json", cwd=root).json()
    assert [v["rev"] for v in versions] == ["churn:3", "churn:2", "churn:1"]  # newest first
    by_rev = {v["rev"]: v for v in versions}
    assert by_rev["churn:1"]["parents"] == []
    assert by_rev["churn:2"]["parents"] == [1]
    assert by_rev["churn:3"]["parents"] == [1]
    assert [v["branch"] for v in versions] == ["exp", "main", "main"]
    assert [v["message"] for v in versions] == [
        "retrain on a new seed",
        "bigger model",
        "baseline",
    ]
    assert {v["author"] for v in versions} == {AUTHOR}
    assert by_rev["churn:2"]["metrics"] == {"f1": 0.86}

    graph = cli("log", "churn", "--graph", cwd=root).out.splitlines()
    assert len(graph) == 4, graph
    assert graph[0].startswith("●")
    assert "churn:3 (exp)  retrain on a new seed" in graph[0]
    # main's head runs in a second lane beside exp, then joins churn:1's lane.
    assert graph[1].startswith("│ ●")
    assert "churn:2 (main)  bigger model" in graph[1]
    assert graph[2] == "├─╯"
    assert graph[3].startswith("●")
    assert "churn:1  baseline" in graph[3]

    only_exp = cli("log", "churn", "--branch", "exp", "--json", cwd=root).json()
    assert [v["rev"] for v in only_exp] == ["churn:3", "churn:1"]


def test_show_lineage_outside_git(cli: Any, session: Session) -> None:
    s = session
    doc = cli("show", "churn:1", "--json", cwd=s.root).json()
    assert doc["rev"] == "churn:1"
    assert doc["parents"] == []
    assert doc["author"] == AUTHOR
    assert doc["message"] == "baseline"
    # Parameters that parse as JSON numbers are numbers; the rest stay strings.
    assert doc["params"] == {"lr": 0.01, "depth": 3, "solver": "lbfgs"}
    assert isinstance(doc["params"]["lr"], float)
    assert isinstance(doc["params"]["depth"], int)
    assert doc["metrics"] == {"f1": 0.81, "acc": 0.9}
    data = s.dataset.read_bytes()
    assert doc["datasets"] == [
        {
            "path": str(s.dataset.resolve()),
            "content_id": blake3.blake3(data).hexdigest(),
            "size": len(data),
        }
    ]
    env = doc["environment"]
    assert env["python"] == platform.python_version()
    assert env["packages"]["modelkeep"] == modelkeep.__version__
    assert "scikit-learn" in env["packages"]
    assert doc["code"] is None  # committed from a folder that is in no git work tree
    files = {f["path"]: f for f in doc["files"]}
    assert sorted(files) == ["config.json", "model.bin", "old.txt"]
    train1 = s.base / "train1"
    for name, data in s.v1.items():
        assert files[name]["size"] == len(data)
        assert files[name]["mode"] == stat.S_IMODE((train1 / name).stat().st_mode)
    assert files["model.bin"]["chunks"] >= 2
    assert doc["file_count"] == 3
    assert doc["size"] == sum(len(d) for d in s.v1.values())


def _git(cwd: Path, *args: str, env: dict[str, str]) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_commit_inside_git_records_code_commit_and_dirty_flag(cli: Any, session: Session) -> None:
    proj = session.base / "gitproj"
    proj.mkdir()
    env = {
        **cli.env,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    _git(proj, "init", "-q", "-b", "trunk", env=env)
    (proj / "train.py").write_text("print('training')\n")
    _git(proj, "add", "train.py", env=env)
    _git(proj, "commit", "-q", "-m", "training script", env=env)
    head = _git(proj, "rev-parse", "HEAD", env=env)
    (proj / "model.bin").write_bytes(b"scorer weights v1")  # untracked: not dirty

    clean = cli("--repo", session.root, "commit", "scorer", "model.bin", "--json", cwd=proj).json()
    assert clean["code"] == {
        "commit": head,
        "dirty": False,
        "repository": str(proj),
        "branch": "trunk",
    }

    (proj / "train.py").write_text("print('training, tuned')\n")  # tracked and changed
    (proj / "model.bin").write_bytes(b"scorer weights v2")
    dirty = cli("--repo", session.root, "commit", "scorer", "model.bin", "--json", cwd=proj).json()
    assert dirty["rev"] == "scorer:2"
    assert dirty["code"]["commit"] == head
    assert dirty["code"]["dirty"] is True


def test_alias_promote_rollback_tag_history_and_events(cli: Any, session: Session) -> None:
    root = session.root
    assert (
        cli("alias", "set", "churn@production", "1", "-m", "first live", cwd=root).out.strip()
        == "churn@production → churn:1"
    )
    assert (
        cli("promote", "churn:2", "production", "-m", "better f1", cwd=root).out.strip()
        == "churn@production: churn:1 → churn:2"
    )
    # Default: back to where it pointed before its last move.
    assert (
        cli("rollback", "churn@production", "-m", "latency", cwd=root).out.strip()
        == "churn@production: churn:2 → churn:1"
    )
    # Rolling back a rollback undoes it.
    assert (
        cli("rollback", "churn@production", cwd=root).out.strip()
        == "churn@production: churn:1 → churn:2"
    )
    assert (
        cli("rollback", "churn@production", "--to", "1", "-m", "manual", cwd=root).out.strip()
        == "churn@production: churn:2 → churn:1"
    )
    assert cli("tag", "churn:2", "validated", cwd=root).out.strip() == "tagged churn:2 as validated"

    moves = cli("history", "churn@production", "--json", cwd=root).json()
    assert [(e["action"], e["before"], e["after"], e["message"]) for e in moves] == [
        ("rollback", 2, 1, "manual"),
        ("rollback", 1, 2, ""),
        ("rollback", 2, 1, "latency"),
        ("promote", 1, 2, "better f1"),
        ("alias.set", None, 1, "first live"),
    ]
    assert {(e["model"], e["ref_kind"], e["ref_name"], e["actor"]) for e in moves} == {
        ("churn", "alias", "production", AUTHOR)
    }

    events = cli("events", "--json", cwd=root).json()
    ids = [e["id"] for e in events]
    assert ids == sorted(ids, reverse=True)  # newest first
    churn = [(e["action"], e["ref_name"], e["before"], e["after"]) for e in events]
    churn = [row for row, e in zip(churn, events, strict=True) if e["model"] == "churn"]
    assert churn == [
        ("tag", "validated", None, 2),
        ("rollback", "production", 2, 1),
        ("rollback", "production", 1, 2),
        ("rollback", "production", 2, 1),
        ("promote", "production", 1, 2),
        ("alias.set", "production", None, 1),
        ("commit", "exp", 1, 3),
        ("branch.create", "exp", None, 1),
        ("commit", "main", 1, 2),
        ("commit", "main", None, 1),
    ]


def test_diff_files_params_and_metrics(cli: Any, session: Session) -> None:
    d = cli("diff", "churn:1", "churn:2", "--json", cwd=session.root).json()
    assert (d["a"], d["b"]) == ("churn:1", "churn:2")
    assert [(f["path"], f["size_before"], f["size_after"]) for f in d["added"]] == [
        ("new.txt", None, len(session.v2["new.txt"]))
    ]
    assert [(f["path"], f["size_before"], f["size_after"]) for f in d["removed"]] == [
        ("old.txt", len(session.v1["old.txt"]), None)
    ]
    [changed] = d["changed"]
    assert changed["path"] == "model.bin"
    assert changed["size_before"] == changed["size_after"] == 6 << 20
    # Only the tail changed: the leading chunks are shared with churn:1.
    assert 0 < changed["bytes_changed"] < changed["size_after"]
    assert 1 <= changed["chunks_changed"] < changed["chunks_total"]
    assert d["params"] == {"lr": {"before": 0.01, "after": 0.02}}  # depth, solver unchanged
    assert d["metrics"] == {
        "acc": {"before": 0.9, "after": None},
        "f1": {"before": 0.81, "after": 0.86},
    }


def test_status_clean_and_changed(cli: Any, session: Session) -> None:
    folder = session.base / "status_copy"
    shutil.copytree(session.restored, folder)
    clean = cli("status", "churn:1", folder, cwd=session.root)
    assert clean.out.strip() == f"{folder} matches churn:1"

    (folder / "model.bin").write_bytes(session.v1["model.bin"][:-1] + b"\x00")
    (folder / "config.json").unlink()
    (folder / "extra.txt").write_text("not in the version\n")
    text = cli("status", "churn:1", folder, code=1, cwd=session.root).out.splitlines()
    assert text == [
        f"{folder} differs from churn:1",
        "  modified: model.bin",
        "  missing: config.json",
        "  untracked: extra.txt",
    ]
    doc = cli("status", "churn:1", folder, "--json", code=1, cwd=session.root).json()
    assert doc["clean"] is False
    assert (doc["modified"], doc["missing"], doc["untracked"]) == (
        ["model.bin"],
        ["config.json"],
        ["extra.txt"],
    )
    assert doc["unchanged"] == 1  # old.txt
    assert doc["rev"] == "churn:1"


def test_fsck_gc_and_models(cli: Any, session: Session) -> None:
    root = session.root
    # What an interrupted commit leaves: an object no version references.
    with modelkeep.Repo(root) as repo, repo.store.writer() as writer:
        writer.add(b"orphan bytes of a commit that never published its version")

    report = cli("fsck", "--json", cwd=root).json()
    assert report["ok"] is True
    assert report["problems"] == []
    assert report["unreferenced"] == 1
    assert report["objects_checked"] > 1

    gc = cli("gc", "--json", cwd=root).json()
    assert gc["objects_removed"] == 1
    assert gc["bytes_freed"] > 0

    # --repo wins over MODELKEEP_REPO, which wins over the current folder.
    models = cli(
        "--repo", root, "models", "--json",
        cwd=session.outside, env={"MODELKEEP_REPO": str(session.base / "no-such-repo")},
    ).json()  # fmt: skip
    by_name = {m["name"]: m for m in models}
    assert by_name["churn"]["versions"] == 3
    assert by_name["churn"]["latest"] == 3
    assert by_name["churn"]["default_branch"] == "main"
    assert report["versions_checked"] == sum(m["versions"] for m in models)

    with modelkeep.Repo(root) as repo:
        after = repo.fsck()
        assert (after.ok, after.unreferenced) == (True, 0)
        repo.checkout("churn:2", session.base / "after_gc")
    assert _files(session.base / "after_gc") == session.v2


def test_outside_any_repository(cli: Any, session: Session) -> None:
    run = cli("log", "churn", code=3, cwd=session.outside)
    message = run.one_line_error()
    assert "no modelkeep repository" in message
    assert "modelkeep init" in message
    # MODELKEEP_REPO pointing nowhere fails the same way, naming that folder.
    nowhere = session.base / "no-such-repo"
    run = cli("models", code=3, cwd=session.root, env={"MODELKEEP_REPO": str(nowhere)})
    assert str(nowhere) in run.one_line_error()
