"""Loads reuse the verified cache only while its files are untouched."""

from __future__ import annotations

from typing import TYPE_CHECKING

import modelkeep

if TYPE_CHECKING:
    from pathlib import Path


def test_a_tampered_cache_file_is_checked_out_again(tmp_path: Path) -> None:
    repo = modelkeep.Repo.init(tmp_path / "repo")
    (tmp_path / "weights.bin").write_bytes(b"\x01" * 5000)
    repo.commit("m", tmp_path / "weights.bin", "one file")
    first = repo.load("m:1")
    assert first.read_bytes() == b"\x01" * 5000
    before = first.stat().st_ino
    # Untouched: the second load reuses the cached file as it is.
    assert repo.load("m:1").stat().st_ino == before
    # Tampered in place (same size, same mtime): ctime moves, so it is restored.
    first.chmod(0o644)
    with open(first, "r+b") as f:
        f.write(b"\x02")
    again = repo.load("m:1")
    assert again.read_bytes() == b"\x01" * 5000
