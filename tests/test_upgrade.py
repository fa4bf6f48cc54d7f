"""`upgrade`: a format-1 repository becomes format 2, its large objects page-aligned, and
its state dicts then load in place; a damaged repository is refused and left alone."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

import modelkeep
from modelkeep.errors import CorruptObjectError

# Format 1 is a folder's config.json: a shared repository starts at format 2.
pytestmark = pytest.mark.local_engine

if TYPE_CHECKING:
    from pathlib import Path

torch = pytest.importorskip("torch")


def _state() -> dict[str, Any]:
    g = torch.Generator().manual_seed(3)
    return {"a.weight": torch.randn(700, 700, generator=g), "a.bias": torch.randn(700, generator=g)}


def _format_1_repo(root: Path) -> Path:
    """A repository as a format-1 release leaves it: config format 1, one-byte headers."""
    modelkeep.Repo.init(root).close()
    config = root / ".modelkeep" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "format": 1}))
    with modelkeep.Repo(root) as repo:
        repo.commit("net", _state())
    return config


def _heads(root: Path) -> set[bytes]:
    objects = root / ".modelkeep" / "store" / "objects"
    return {p.read_bytes()[:1] for p in objects.glob("*/*")}


def _large(root: Path) -> list[Path]:
    objects = root / ".modelkeep" / "store" / "objects"
    return [p for p in objects.glob("*/*") if p.stat().st_size > 1 << 20]


def test_upgrade_rewrites_the_old_layout_and_loads_in_place(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    config = _format_1_repo(root)
    assert _heads(root) == {b"\x00"}
    with modelkeep.Repo(root) as repo:
        report = repo.upgrade()
        assert (report.format_before, report.format_after) == (1, 2)
        assert report.objects_rewritten == 1  # the 1.9 MiB weight; the bias is packed
        assert report.bytes_rewritten == 700 * 700 * 4
        assert json.loads(config.read_text())["format"] == 2
        assert _heads(root) == {b"\x02"}
        loaded = repo.load("net")
        assert not (root / ".modelkeep" / "cache").exists()  # in place
        for key, value in _state().items():
            assert torch.equal(loaded[key], value), key
        assert repo.fsck().ok
        again = repo.upgrade()
        assert (again.format_before, again.objects_rewritten) == (2, 0)
    # A new commit into the upgraded repository is page-aligned from the start.
    with modelkeep.Repo(root) as repo:
        state = {k: v + 1 for k, v in _state().items()}
        repo.commit("net", state)
        assert _heads(root) == {b"\x02"}
        assert torch.equal(repo.load("net:2")["a.weight"], state["a.weight"])


def test_an_interrupted_upgrade_loads_right_and_finishes_when_run_again(
    tmp_path: Path,
) -> None:
    """A crash after the config says format 2 but before the objects were rewritten:
    the old objects are still read right (copied and verified), and upgrade ends it."""
    root = tmp_path / "repo"
    config = _format_1_repo(root)
    config.write_text(json.dumps({**json.loads(config.read_text()), "format": 2}))
    with modelkeep.Repo(root) as repo:
        loaded = repo.load("net")
        assert torch.equal(loaded["a.weight"], _state()["a.weight"])
        report = repo.upgrade()
        assert (report.format_before, report.objects_rewritten) == (2, 1)
    assert _heads(root) == {b"\x02"}


def test_a_damaged_repository_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    config = _format_1_repo(root)
    (weight,) = _large(root)
    weight.chmod(0o644)
    with open(weight, "r+b") as f:
        f.seek(1000)
        f.write(b"\xde\xad")
    damaged = weight.read_bytes()
    with (
        modelkeep.Repo(root) as repo,
        pytest.raises(CorruptObjectError, match=r"nothing was upgraded.*Repo\.repair\(\)"),
    ):
        repo.upgrade()
    assert json.loads(config.read_text())["format"] == 1
    assert weight.read_bytes() == damaged


def test_the_upgrade_command(tmp_path: Path, cli: Any) -> None:
    root = tmp_path / "repo"
    _format_1_repo(root)
    res = cli(root, "upgrade")
    assert res.code == 0, res.err
    assert "format 1 -> 2: 1 object(s) rewritten" in res.out
    res = cli(root, "upgrade", "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out) == {
        "format_before": 2,
        "format_after": 2,
        "objects_rewritten": 0,
        "bytes_rewritten": 0,
    }
    assert "nothing to do" in cli(root, "upgrade").out
