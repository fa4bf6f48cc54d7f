"""A damaged registry: one line naming the file and a recovery that loses nothing (exit 6),
and `fsck --repair` salvaging every row that can still be read.

Damage is made the way it happens: a file cut short, a file overwritten, a page of it
overwritten in place (a bad sector, a stray write).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

import modelkeep
from modelkeep.errors import RegistryDamagedError

VERSIONS = 80
PAGE = 4096


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository whose registry spans many pages (a model of many versions)."""
    root = tmp_path_factory.mktemp("damaged") / "repo"
    with modelkeep.Repo.init(root) as repo:
        model = root.parent / "m.bin"
        for i in range(VERSIONS):
            model.write_bytes(b"weights %d" % i)
            repo.commit("churn", model, f"version {i} " * 10, metrics={"f1": i / VERSIONS})
        repo.promote("churn:3", "production")
    return root


@pytest.fixture
def root(template: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(template, copy)
    return copy


def _db(root: Path) -> Path:
    return root / ".modelkeep" / "registry.db"


def _truncate(root: Path) -> None:
    # Cut short early, as a copy interrupted or a disk that filled: its list of tables
    # (which later migrations grew onto later pages) is cut too.
    os.truncate(_db(root), 3 * PAGE)


def _garbage(root: Path) -> None:
    _db(root).write_bytes(os.urandom(20_000))


def _empty(root: Path) -> None:
    _db(root).write_bytes(b"")


def _page(root: Path, number: int) -> None:
    with open(_db(root), "r+b") as f:
        f.seek(number * PAGE)
        f.write(os.urandom(PAGE))


DAMAGE = {"truncated": _truncate, "garbage": _garbage, "empty": _empty}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize(
    "args",
    [["log", "churn"], ["models"], ["show", "churn:1"], ["fsck"], ["events"]],
    ids=lambda a: a[0],
)
def test_a_damaged_registry_is_one_line_that_names_the_file_and_a_safe_recovery(
    cli: Any, root: Path, damage: str, args: list[str]
) -> None:
    DAMAGE[damage](root)
    before = _db(root).read_bytes()
    res = cli(root, *args)
    message = res.one_line_error()
    assert res.code == 6
    assert str(_db(root)) in message
    assert "backup" in message
    assert "fsck --repair" in message
    assert "init" not in message, "re-creating the repository would lose every version"
    assert _db(root).read_bytes() == before


def test_the_python_api_raises_the_same_typed_error(root: Path) -> None:
    _garbage(root)
    with pytest.raises(RegistryDamagedError, match="is damaged"):
        modelkeep.Repo(root)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_repair_refuses_when_nothing_can_be_read_and_changes_nothing(
    cli: Any, root: Path, damage: str
) -> None:
    DAMAGE[damage](root)
    before = sorted(os.listdir(root / ".modelkeep"))
    content = _db(root).read_bytes()
    res = cli(root, "fsck", "--repair")
    assert res.code == 6
    assert "nothing to salvage; restore it from a backup (it is unchanged)" in res.one_line_error()
    assert _db(root).read_bytes() == content
    assert sorted(os.listdir(root / ".modelkeep")) == before


def _readable_until_a_page_fails(root: Path) -> int:
    """A data page whose loss breaks reads but leaves the list of tables readable."""
    size = _db(root).stat().st_size // PAGE
    for number in range(size - 2, 1, -1):
        probe = root.parent / f"probe-{number}"
        shutil.copytree(root, probe)
        _page(probe, number)
        try:
            with modelkeep.Repo(probe) as repo:
                problems = repo.registry.integrity_problems()
            if problems and "unreadable" not in " ".join(problems):
                return number
        except RegistryDamagedError:
            pass
        finally:
            shutil.rmtree(probe)
    pytest.fail("no page of the registry could be damaged alone")


def test_fsck_finds_a_damaged_page_and_repair_salvages_the_rest(cli: Any, root: Path) -> None:
    _page(root, _readable_until_a_page_fails(root))
    damaged = _db(root).read_bytes()

    found = cli(root, "fsck")
    assert found.code == 6
    assert "problem: registry:" in found.out
    assert "restore .modelkeep/registry.db from a backup" in found.out
    assert _db(root).read_bytes() == damaged, "fsck without --repair changes nothing"

    repaired = cli(root, "fsck", "--repair", "--json")
    assert repaired.code == 6, repaired.err  # it had problems: said, and exit 6
    report = __import__("json").loads(repaired.out)
    copy = Path(report["salvaged"]["damaged_copy"])
    assert copy.read_bytes() == damaged, "the damaged file is kept as it was"
    assert copy.parent == _db(root).parent

    # The salvaged registry is sound and serves again; what survived is intact.
    again = cli(root, "fsck")
    assert again.code == 0, again.out
    with modelkeep.Repo(root) as repo:
        versions = repo.log("churn")
        assert 0 < len(versions) <= VERSIONS
        for v in versions:
            assert v.message == f"version {v.number - 1} " * 10
            assert repo.checkout(v, root.parent / "out" / str(v.number)).written


def test_salvaging_a_sound_registry_keeps_every_row(root: Path) -> None:
    """The salvage loses nothing it can read: run on a sound registry, every row, ref and
    event is there after it."""
    with modelkeep.Repo(root) as repo:
        events = len(repo.events())
    salvaged = modelkeep.Repo.salvage_registry(root)
    assert salvaged.kept["versions"] == VERSIONS
    assert not salvaged.lost
    with modelkeep.Repo(root) as repo:
        assert len(repo.log("churn")) == VERSIONS
        assert len(repo.events()) == events
        assert repo.resolve("churn@production").number == 3
