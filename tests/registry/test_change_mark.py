"""Change marks: a per-request check that a registry is unchanged (``ChangeMark``:
SQLite's; ``mark_of``: also PostgreSQL's) — it moves on every commit, by a connection of
this process or by another process, and (SQLite) when the file is replaced; it stays put
while nothing is committed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

import modelkeep
from modelkeep.registry.changes import ChangeMark, mark_of

if TYPE_CHECKING:
    from pathlib import Path


def test_a_replaced_file_moves_the_mark_and_a_missing_one_has_none(tmp_path: Path) -> None:
    with modelkeep.Repo.init(tmp_path / "repo") as repo:
        file = repo.registry.file
        if file is None:
            pytest.skip("a change mark is SQLite's")
        mark = ChangeMark(file)
        before = mark()
        copy = tmp_path / "copy.db"
        shutil.copyfile(file, copy)
        os.replace(copy, file)  # as a salvage does
        after = mark()
        assert after not in (None, before)
        os.rename(file, tmp_path / "gone.db")
        assert mark() is None  # unknown: nothing is taken as unchanged
        mark.close()


def test_no_mark_without_a_file() -> None:
    assert ChangeMark.of(None) is None
    assert modelkeep.Repo.memory().registry.file is None


def test_the_mark_of_either_engine_moves_on_every_commit_by_anyone_and_only_then(
    tmp_path: Path,
) -> None:
    """``mark_of``: SQLite's data_version, or PostgreSQL's count of write transactions
    (run under MODELKEEP_TEST_ENGINE=pg for the latter)."""
    with modelkeep.Repo.init(tmp_path / "repo") as repo:
        mark = mark_of(repo.registry)
        assert mark is not None
        first = mark()
        assert first is not None
        repo.models()  # reads change nothing
        assert mark() == first
        repo.tokens.create("alice", "read")
        second = mark()
        assert second not in (None, first)
        script = (
            "import modelkeep, sys; r = modelkeep.Repo(sys.argv[1]); "
            "r.tokens.create('bob', 'read'); r.close()"
        )
        subprocess.run([sys.executable, "-c", script, str(repo.root)], check=True)
        third = mark()
        assert third not in (None, first, second)
        # A refused write moves nothing.
        with pytest.raises(modelkeep.errors.UsageError):
            repo.tokens.create("carol", "no-such-scope")
        assert mark() == third
        mark.close()
