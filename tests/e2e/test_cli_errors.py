"""Bad input: a one-line error on stderr, the documented exit code, and no change.

Exit codes: usage 2, not found 3, conflict 4, repository format 5, store 6.

The repository the CLI cases run against is built with the Python API (fast):

    churn:1  model.bin, run.sh (0o755)      branch exp, alias production (set once)
    churn:2  model.bin changed              branch main, tag validated
"""

from __future__ import annotations

import json
import os
import random
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import modelkeep
from modelkeep import errors
from modelkeep.revision import Revision
from modelkeep.store import TreeEntry

AUTHOR = "Ada Tester <ada@example.com>"


@dataclass
class Base:
    base: Path
    root: Path
    src: Path
    v2: dict[str, bytes]
    new_file: Path
    empty: Path
    events_json: str
    state: dict[str, Any]


@pytest.fixture(scope="module")
def base(cli: Any, e2e_base: Path, registry_state: Any) -> Base:
    rng = random.Random(99)
    src = e2e_base / "src"
    src.mkdir()
    (src / "model.bin").write_bytes(rng.randbytes(100_000))
    (src / "run.sh").write_bytes(b"#!/bin/sh\necho serving\n")
    (src / "run.sh").chmod(0o755)
    (src / "model.bin").chmod(0o644)
    root = e2e_base / "repo"
    with modelkeep.Repo.init(root) as repo:
        repo.commit("churn", src, "one", author=AUTHOR)
        (src / "model.bin").write_bytes(rng.randbytes(100_000))
        repo.commit("churn", src, "two", author=AUTHOR)
        repo.branch("churn", "exp", "churn:1")
        repo.promote("churn:1", "production", "first live")
        repo.tag("churn:2", "validated")
    new_file = e2e_base / "new.bin"
    new_file.write_bytes(rng.randbytes(50_000))  # content the store does not have
    empty = e2e_base / "empty"
    empty.mkdir()
    events = cli("events", "--json", cwd=root)
    return Base(
        base=e2e_base,
        root=root,
        src=src,
        v2={p.name: p.read_bytes() for p in src.iterdir()},
        new_file=new_file,
        empty=empty,
        events_json=events.out,
        state=registry_state(root),
    )


# (id, args, exit code, substrings of the message); {new}, {src}, {base} are paths.
CASES = [
    ("unknown-model", ["show", "nope:1"], 3, ["no model named 'nope'", "models here: churn"]),
    (
        "unknown-version",
        ["diff", "churn:1", "churn:9"],
        3,
        ["churn has no version 9", "it has versions 1..2"],
    ),
    (
        "unknown-ref",
        ["show", "churn@staging"],
        3,
        [
            "no branch, alias or tag named 'staging'",
            "alias production, branch exp, branch main, tag validated",
        ],
    ),
    (
        "unknown-branch",
        ["log", "churn", "--branch", "dev"],
        3,
        ["no branch named 'dev'", "(has: branch exp, branch main)"],
    ),
    (
        "malformed-revision",
        ["show", "churn::1"],
        2,
        ["cannot parse revision 'churn::1'", "churn@production"],
    ),
    ("missing-path", ["commit", "churn", "{base}/missing.bin"], 3, ["missing.bin", "no such file"]),
    ("empty-commit", ["commit", "churn", "{base}/empty"], 2, ["nothing to commit", "no files"]),
    ("name-slash", ["commit", "a/b", "{new}"], 2, ["invalid model name 'a/b'", "not allowed: '/'"]),
    (
        "param-without-equals",
        ["commit", "churn", "{new}", "--param", "lr"],
        2,
        ["--param expects KEY=VALUE, got 'lr'"],
    ),
    (
        "metric-not-a-number",
        ["commit", "churn", "{new}", "--metric", "f1=abc"],
        2,
        ["metric f1='abc' is not a finite number"],
    ),
    (
        "commit-to-missing-branch",
        ["commit", "churn", "{new}", "--branch", "dev"],
        3,
        ["no branch named 'dev'", "(has: branch exp, branch main)"],
    ),
    (
        "branch-exists",
        ["branch", "churn", "exp", "--from", "churn:2"],
        4,
        ["already has a branch named 'exp'"],
    ),
    (
        "delete-default-branch",
        ["branch", "churn", "--delete", "main"],
        4,
        ["'main' is the default branch of churn", "cannot be deleted"],
    ),
    (
        "tag-twice",
        ["tag", "churn:1", "validated"],
        4,
        ["tag 'validated' of churn already exists", "tags never move"],
    ),
    ("rollback-without-earlier-target", ["rollback", "churn@production"], 3, ["no earlier target"]),
]


@pytest.mark.parametrize(
    ("args", "code", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_one_line_and_changes_nothing(
    cli: Any,
    base: Base,
    registry_state: Any,
    store_ids: Any,
    args: list[str],
    code: int,
    needles: list[str],
) -> None:
    argv = [
        a.format(new=base.new_file, src=base.src, base=base.base) if "{" in a else a for a in args
    ]
    state, objects = registry_state(base.root), store_ids(base.root)
    message = cli(*argv, code=code, cwd=base.root).one_line_error()
    for needle in needles:
        assert needle in message
    assert registry_state(base.root) == state
    assert store_ids(base.root) == objects


def test_commit_to_missing_branch_writes_no_objects(base: Base, store_ids: Any) -> None:
    fresh = base.base / "fresh.bin"
    fresh.write_bytes(random.Random(7).randbytes(50_000))  # content the store does not have
    before = store_ids(base.root)
    with modelkeep.Repo(base.root) as repo, pytest.raises(errors.RefNotFoundError):
        repo.commit("churn", fresh, "typo in the branch", branch="dev", author=AUTHOR)
    assert store_ids(base.root) == before


def test_rollback_without_earlier_target_says_what_to_do(base: Base) -> None:
    with modelkeep.Repo(base.root) as repo, pytest.raises(modelkeep.NotFoundError) as caught:
        repo.rollback("churn@production")
    message = str(caught.value)
    assert "^" not in message
    assert "to='VERSION'" in message


def test_checkout_refuses_to_overwrite_changes_and_keeps_modes(cli: Any, base: Base) -> None:
    dest = base.base / "serve"
    out = cli("checkout", "churn:2", dest, cwd=base.root).out
    assert "2 written" in out
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == base.v2
    assert stat.S_IMODE((dest / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "model.bin").stat().st_mode) == 0o644

    local = b"weights edited by hand"
    (dest / "model.bin").write_bytes(local)
    (dest / "run.sh").unlink()
    run = cli("checkout", "churn:2", dest, code=4, cwd=base.root)
    message = run.one_line_error()
    assert "would overwrite 1 path(s) that differ from churn:2: model.bin;" in message
    assert "--force" in message
    # Planned first: nothing was written, not even the missing file.
    assert (dest / "model.bin").read_bytes() == local
    assert not (dest / "run.sh").exists()
    assert [p.name for p in dest.iterdir()] == ["model.bin"]

    out = cli("checkout", "churn:2", dest, "--force", cwd=base.root).out
    assert "2 written" in out
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == base.v2
    assert stat.S_IMODE((dest / "run.sh").stat().st_mode) == 0o755


def test_newer_repository_format(cli: Any, e2e_base: Path) -> None:
    root = e2e_base / "future"
    modelkeep.Repo.init(root).close()
    config_path = root / ".modelkeep" / "config.json"
    config = json.loads(config_path.read_text())
    config["format"] = 99
    config_path.write_text(json.dumps(config))
    before = config_path.read_bytes()

    message = cli("log", "churn", code=5, cwd=root).one_line_error()
    assert "format 99" in message
    assert "upgrade" in message
    with pytest.raises(errors.RepositoryFormatError, match="upgrade"):
        modelkeep.Repo(root)
    assert config_path.read_bytes() == before


def _crafted(repo: modelkeep.Repo, files: dict[str, bytes], message: str) -> str:
    """Publish a version whose tree holds exactly ``files`` (paths unchecked)."""
    with repo.store.writer() as writer:
        entries = {}
        for path, data in files.items():
            manifest = repo.store.store_buffer(memoryview(data), writer)
            entries[path] = TreeEntry(manifest.id, manifest.size, 0o644)
        tree = repo.store.put_tree(entries, writer)
    v = repo.registry.add_version(
        model="churn",
        branch=None,
        tree_id=tree.id.hex,
        size=tree.size,
        file_count=len(entries),
        message=message,
        author=AUTHOR,
        params={},
        metrics={},
        lineage={},
        datasets=[],
    )
    return v.rev


def test_checkout_refuses_paths_that_escape(cli: Any, e2e_base: Path) -> None:
    top = e2e_base / "escape"
    top.mkdir()
    with modelkeep.Repo.init(top / "repo") as repo:
        # "-ok.txt" sorts before "../evil": checkout plans everything before writing.
        rev = _crafted(repo, {"-ok.txt": b"fine", "../evil": b"pwned"}, "crafted")
        others = [
            _crafted(repo, {"/tmp/modelkeep-evil": b"pwned"}, "absolute"),
            _crafted(repo, {"sub/../../evil": b"pwned"}, "dot-dot inside"),
        ]
    dest = top / "out" / "dest"
    message = cli("checkout", rev, dest, code=2, cwd=top / "repo").one_line_error()
    assert "refusing path '../evil'" in message
    assert "escape" in message
    assert not (dest.parent / "evil").exists()
    assert not dest.exists()  # a refused checkout does not even create the folder

    dest.mkdir(parents=True)
    with modelkeep.Repo(top / "repo") as repo:
        for r in [rev, *others]:
            with pytest.raises(errors.UnsafePathError):
                repo.checkout(r, dest, force=True)
            with pytest.raises(modelkeep.UsageError):
                repo.status(r, dest)
    assert not (top / "evil").exists()
    assert not (dest.parent / "evil").exists()
    assert not Path("/tmp/modelkeep-evil").exists()
    assert not dest.exists() or list(dest.iterdir()) == []


def test_checkout_never_writes_through_a_symlinked_folder(cli: Any, e2e_base: Path) -> None:
    top = e2e_base / "symlinked"
    outside = top / "outside"
    outside.mkdir(parents=True)
    secret = outside / "secret.txt"
    secret.write_bytes(b"not yours")
    src = top / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"top-level file")
    (src / "sub" / "weights.bin").write_bytes(b"weights")
    with modelkeep.Repo.init(top / "repo") as repo:
        repo.commit("churn", src, "with a sub-folder", author=AUTHOR)
    dest = top / "dest"
    dest.mkdir()
    (dest / "sub").symlink_to(outside, target_is_directory=True)

    # The link stands where the version has a folder: a conflict, found first.
    message = cli("checkout", "churn:1", dest, code=4, cwd=top / "repo").one_line_error()
    assert "sub (a symlink where churn:1 has a folder)" in message
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert sorted(p.name for p in dest.iterdir()) == ["sub"]  # a.txt was not written either

    # Forced, the link is replaced by the folder: nothing is written through it.
    with modelkeep.Repo(top / "repo") as repo:
        repo.checkout("churn:1", dest, force=True)
        assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
        assert not (dest / "sub").is_symlink()
        assert (dest / "sub" / "weights.bin").read_bytes() == b"weights"

        # A file that is a symlink to something outside is a conflict, and --force
        # replaces the link itself, never what it points to.
        (dest / "a.txt").unlink()
        (dest / "a.txt").symlink_to(secret)
        with pytest.raises(errors.WorkingTreeConflictError) as caught:
            repo.checkout("churn:1", dest)
        assert caught.value.paths == ["a.txt"]
        repo.checkout("churn:1", dest, force=True)
    assert not (dest / "a.txt").is_symlink()
    assert (dest / "a.txt").read_bytes() == b"top-level file"
    assert secret.read_bytes() == b"not yours"
    assert (dest / "sub" / "weights.bin").read_bytes() == b"weights"


def test_python_api_raises_typed_errors(base: Base, registry_state: Any, e2e_base: Path) -> None:
    missing = base.base / "missing.bin"
    with modelkeep.Repo(base.root) as repo:
        usage = [
            lambda: repo.commit("a/b", base.new_file),
            lambda: repo.commit("x y", base.new_file),
            lambda: repo.commit("churn", base.empty),
            lambda: repo.resolve("churn::1"),
            lambda: repo.resolve("churn:0"),
            lambda: repo.set_alias("churn", "1"),
            lambda: repo.history("churn:1"),
            lambda: repo.branch("churn", "bad name"),
        ]
        for call in usage:
            with pytest.raises(modelkeep.UsageError) as caught:
                call()
            assert isinstance(caught.value, ValueError | modelkeep.ModelkeepError)
        with pytest.raises(errors.InvalidNameError, match=r"not allowed: '/'"):
            repo.commit("a/b", base.new_file)
        with pytest.raises(errors.InvalidNameError, match=r"'x y' \(not allowed: ' '\)"):
            repo.commit("x y", base.new_file)
        with pytest.raises(errors.RevisionSyntaxError):
            Revision.parse("churn@")
        with pytest.raises(errors.EmptyCommitError):
            repo.commit("churn", base.empty)

        not_found = [
            (lambda: repo.resolve("nope:1"), errors.ModelNotFoundError),
            (lambda: repo.resolve("churn:9"), errors.VersionNotFoundError),
            (lambda: repo.resolve("churn@staging"), errors.RefNotFoundError),
            (lambda: repo.log("churn", branch="dev"), errors.RefNotFoundError),
            (lambda: repo.commit("churn", missing), errors.PathNotFoundError),
            (lambda: repo.rollback("churn@production"), errors.VersionNotFoundError),
        ]
        for call, cls in not_found:
            with pytest.raises(modelkeep.NotFoundError) as caught:
                call()
            assert isinstance(caught.value, cls)
            assert isinstance(caught.value, LookupError)
        with pytest.raises(modelkeep.NotFoundError, match=r"1\.\.2"):
            repo.resolve("churn:9")
        with pytest.raises(errors.RefNotFoundError, match=r"\(has: alias production\)"):
            repo.rollback("churn@staging")

        conflicts = [
            (lambda: repo.branch("churn", "exp", "churn:2"), errors.RefExistsError),
            (lambda: repo.delete_branch("churn", "main"), errors.ConflictError),
            (lambda: repo.tag("churn:1", "validated"), errors.RefExistsError),
        ]
        for call, cls in conflicts:
            with pytest.raises(modelkeep.ConflictError) as caught:
                call()
            assert isinstance(caught.value, cls)
    with pytest.raises(modelkeep.ConflictError):
        modelkeep.Repo.init(base.root)
    nowhere = e2e_base / "nowhere"
    nowhere.mkdir()
    with pytest.raises(modelkeep.RepositoryNotFoundError, match=r"Repo\.init\(path\) creates"):
        modelkeep.Repo(nowhere)
    assert registry_state(base.root) == base.state


def test_errors_left_the_event_log_alone(cli: Any, base: Base, registry_state: Any) -> None:
    """Runs last: everything above failed without a trace in the registry."""
    assert cli("events", "--json", cwd=base.root).out == base.events_json
    assert registry_state(base.root) == base.state
    assert os.listdir(base.root / ".modelkeep")  # still a repository
