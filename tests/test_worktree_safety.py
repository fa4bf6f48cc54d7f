"""Commit and checkout at the edges of a folder: symlinks, things in the way, the
repository's own folder.

The rule for symlinks (README, "Storage"): inside a committed folder a symlink is kept
as a link with its target, as git does, and never followed; one whose target leaves
the folder is refused at commit, and refused again at checkout (a version from
elsewhere may hold one). A path named on the command line is followed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import modelkeep
from modelkeep.errors import UnsafePathError, UsageError, WorkingTreeConflictError
from repo_state import snapshot


@pytest.fixture
def repo(tmp_path: Path) -> modelkeep.Repo:
    return modelkeep.Repo.init(tmp_path / "repo")


def _folder(root: Path) -> Path:
    model = root / "model"
    (model / "sub").mkdir(parents=True)
    (model / "weights.bin").write_bytes(b"w" * 1000)
    (model / "sub" / "config.json").write_text('{"layers": 3}')
    return model


# -- symlinks at commit ------------------------------------------------------------------


def test_a_link_to_a_file_outside_the_folder_is_refused_not_followed(
    repo: modelkeep.Repo, tmp_path: Path, cli: Any
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2")
    model = _folder(tmp_path)
    (model / "notes.txt").symlink_to(secret)
    before = snapshot(repo)
    with pytest.raises(UnsafePathError, match="outside the folder being committed"):
        repo.commit("churn", model, "leaks?")
    res = cli(repo.root, "commit", "churn", model, "-m", "leaks?")
    assert res.code == 2
    assert "notes.txt is a symlink to" in res.one_line_error()
    assert snapshot(repo) == before


@pytest.mark.parametrize(
    ("links", "bad"),
    [
        ({"sub/link": "../../outside"}, "sub/link"),
        ({"sub/link": "/etc/passwd"}, "sub/link"),
        ({"sub/link": "../sub/../.."}, "sub/link"),
        # Read as text, "sub/up/.." is "sub"; followed, sub/up is the folder itself,
        # and its parent is outside.
        ({"sub/up": "..", "trick": "sub/up/.."}, "trick"),
        ({"loop": "loop2", "loop2": "loop"}, "loop"),
    ],
)
def test_every_escaping_target_is_refused(
    repo: modelkeep.Repo, tmp_path: Path, links: dict[str, str], bad: str
) -> None:
    model = _folder(tmp_path)
    for rel, target in links.items():
        (model / rel).symlink_to(target)
    with pytest.raises(UnsafePathError, match=f"{bad} is a symlink"):
        repo.commit("churn", model, "x")


def test_a_link_through_links_that_stays_inside_is_kept(
    repo: modelkeep.Repo, tmp_path: Path
) -> None:
    model = _folder(tmp_path)
    (model / "sub" / "up").symlink_to("..")
    (model / "via").symlink_to("sub/up/weights.bin")
    v = repo.commit("churn", model, "x")
    out = tmp_path / "out"
    repo.checkout(v, out)
    assert (out / "via").read_bytes() == b"w" * 1000


def test_links_inside_the_folder_are_kept_as_links(repo: modelkeep.Repo, tmp_path: Path) -> None:
    model = _folder(tmp_path)
    (model / "latest.bin").symlink_to("weights.bin")
    (model / "sub" / "up.bin").symlink_to("../weights.bin")
    (model / "conf").symlink_to("sub")  # a link to a folder is a link too, not a copy
    (model / "dangling").symlink_to("not-there-yet")
    v = repo.commit("churn", model, "with links")
    files = {f.path: f for f in repo.files(v)}
    assert set(files) == {
        "weights.bin",
        "sub/config.json",
        "latest.bin",
        "sub/up.bin",
        "conf",
        "dangling",
    }
    assert files["latest.bin"].size == len("weights.bin")  # the target, not the bytes
    out = tmp_path / "out"
    repo.checkout(v, out)
    assert os.readlink(out / "latest.bin") == "weights.bin"
    assert os.readlink(out / "sub" / "up.bin") == "../weights.bin"
    assert os.readlink(out / "conf") == "sub"
    assert os.readlink(out / "dangling") == "not-there-yet"
    assert (out / "latest.bin").read_bytes() == b"w" * 1000
    st = repo.status(v.rev, out)
    assert st.clean, st
    # A second checkout finds them up to date; a changed link is a change.
    again = repo.checkout(v, out)
    assert again.written == []
    (out / "latest.bin").unlink()
    (out / "latest.bin").symlink_to("sub/config.json")
    assert repo.status(v.rev, out).modified == ["latest.bin"]


def test_a_file_named_on_the_command_line_is_followed(repo: modelkeep.Repo, tmp_path: Path) -> None:
    real = tmp_path / "real.bin"
    real.write_bytes(b"content")
    named = tmp_path / "model.bin"
    named.symlink_to(real)
    v = repo.commit("churn", named, "named")
    assert [f.size for f in repo.files(v)] == [len(b"content")]


def test_checkout_refuses_a_stored_link_that_escapes(
    repo: modelkeep.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version made elsewhere (or by an older release) may hold an escaping link:
    checkout refuses it before writing anything."""
    from modelkeep._engine import sources

    model = _folder(tmp_path)
    (model / "evil").symlink_to("/etc/passwd")
    monkeypatch.setattr(sources, "escaping_link", lambda links: None)
    v = repo.commit("churn", model, "crafted")
    monkeypatch.undo()
    out = tmp_path / "out"
    with pytest.raises(UnsafePathError, match="a symlink to '/etc/passwd'"):
        repo.checkout(v, out)
    assert not out.exists()


# -- checkout: everything in the way is found first ----------------------------------------


def test_a_file_in_place_of_a_folder_is_a_conflict_found_before_writing(
    repo: modelkeep.Repo, tmp_path: Path, cli: Any
) -> None:
    v = repo.commit("churn", _folder(tmp_path), "v1")
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").write_text("I am a file")
    with pytest.raises(WorkingTreeConflictError) as info:
        repo.checkout(v, out)
    assert "sub (a file where churn:1 has a folder)" in str(info.value)
    assert sorted(p.name for p in out.iterdir()) == ["sub"], "nothing else was written"
    res = cli(repo.root, "checkout", "churn:1", out)
    assert res.code == 4
    assert "a file where churn:1 has a folder" in res.one_line_error()
    assert sorted(p.name for p in out.iterdir()) == ["sub"]
    forced = cli(repo.root, "checkout", "churn:1", out, "--force")
    assert forced.code == 0, forced.err
    assert (out / "sub" / "config.json").read_text() == '{"layers": 3}'
    assert repo.status("churn:1", out).clean


def test_every_conflict_is_listed_at_once(repo: modelkeep.Repo, tmp_path: Path) -> None:
    v = repo.commit("churn", _folder(tmp_path), "v1")
    out = tmp_path / "out"
    (out / "weights.bin").mkdir(parents=True)  # a folder where a file goes
    (out / "weights.bin" / "keep.txt").write_text("mine")
    (out / "sub").symlink_to(tmp_path)  # a link where a folder goes
    with pytest.raises(WorkingTreeConflictError) as info:
        repo.checkout(v, out)
    assert sorted(info.value.paths) == [
        "sub (a symlink where churn:1 has a folder)",
        "weights.bin (a folder where churn:1 has a file)",
    ]
    assert (out / "weights.bin" / "keep.txt").read_text() == "mine"
    repo.checkout(v, out, force=True)
    assert (out / "weights.bin").read_bytes() == b"w" * 1000
    assert not (out / "sub").is_symlink()
    assert not (tmp_path / "config.json").exists(), "nothing written through the link"
    assert repo.status("churn:1", out).clean


def test_a_changed_file_and_a_blocker_are_both_listed(repo: modelkeep.Repo, tmp_path: Path) -> None:
    v = repo.commit("churn", _folder(tmp_path), "v1")
    out = tmp_path / "out"
    out.mkdir()
    (out / "weights.bin").write_bytes(b"changed")
    (out / "sub").write_text("file")
    with pytest.raises(WorkingTreeConflictError) as info:
        repo.checkout(v, out)
    assert len(info.value.paths) == 2
    assert (out / "weights.bin").read_bytes() == b"changed"


# -- the repository's own folder ------------------------------------------------------------


@pytest.mark.local_engine  # the folder's own store and SQLite file
@pytest.mark.parametrize("inside", [".modelkeep", ".modelkeep/store", ".modelkeep/registry.db"])
def test_committing_the_repository_itself_is_refused(
    repo: modelkeep.Repo, cli: Any, inside: str
) -> None:
    before = snapshot(repo)
    with pytest.raises(UsageError, match=r"inside the repository's own \.modelkeep folder"):
        repo.commit("m", repo.root / inside, "oops")
    res = cli(repo.root, "commit", "m", repo.root / inside, "-m", "oops")
    assert res.code == 2
    assert "commit the model's files, not the repository" in res.one_line_error()
    assert snapshot(repo) == before
