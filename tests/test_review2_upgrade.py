"""Review: `upgrade` beside a process that opened the repository before it. That process
decided the layout (page_aligned) from config.json when it opened, and keeps writing the
format-1 layout into the format-2 repository after the upgrade finished: the upgrade is
undone object by object (loads of those versions no longer map in place) until someone
runs `modelkeep upgrade` again — which then reports work on an "upgraded" repository."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import pytest

import modelkeep

if TYPE_CHECKING:
    from pathlib import Path


def _large_heads(root: Path) -> set[bytes]:
    objects = root / ".modelkeep" / "store" / "objects"
    return {p.read_bytes()[:1] for p in objects.glob("*/*") if p.stat().st_size > 1 << 20}


@pytest.mark.local_engine  # format 1 is a folder's config.json (shared ones start at 2)
def test_a_commit_after_the_upgrade_writes_the_new_layout(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    modelkeep.Repo.init(root).close()
    config = root / ".modelkeep" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "format": 1}))
    first = tmp_path / "a.bin"
    first.write_bytes(os.urandom(3 << 20))
    with modelkeep.Repo(root) as repo:
        repo.commit("blob", first)
    # A long-running process (a server, an update runner) has the repository open.
    with modelkeep.Repo(root) as running, modelkeep.Repo(root) as admin:
        assert admin.upgrade().objects_rewritten >= 1
        assert _large_heads(root) == {b"\x02"}
        # Its next commit starts after the upgrade (the store lock orders them).
        second = tmp_path / "b.bin"
        second.write_bytes(os.urandom(3 << 20))
        running.commit("blob", second)
    assert json.loads(config.read_text())["format"] == 2
    assert _large_heads(root) == {b"\x02"}, "format-1 objects written into format 2"
    with modelkeep.Repo(root) as repo:
        again = repo.upgrade()
        assert (again.format_before, again.objects_rewritten) == (2, 0)
