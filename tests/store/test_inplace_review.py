"""Review of in-place loading (page-headed objects, the trust ledger): cases that fail.

Each test states one promise the change breaks; see the review report for the
diagnosis and the proposed fix.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import TYPE_CHECKING

import numpy as np
import pytest

import modelkeep
from modelkeep.store import ChunkRef, LocalBackend, ObjectStore, objects

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

MIB = 1 << 20
# The repository format of every modelkeep that knows only codecs 0 (raw) and 1 (zstd):
# such a version reads codec 2 as "cannot decode".
LAST_FORMAT_WITHOUT_PAGES = 1


def _random(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


@pytest.mark.local_engine  # page-headed objects are a folder store's layout
def test_a_repository_holding_page_headed_objects_is_refused_by_older_modelkeep(
    tmp_path: Path,
) -> None:
    """A modelkeep from before this change opens the repository (its format is still 1),
    calls every page-headed weight "corrupted (cannot decode)", and its
    `fsck --repair` moves the healthy weights to quarantine. The repository format
    exists to make it refuse instead."""
    weights = tmp_path / "weights.bin"
    weights.write_bytes(_random(2 * MIB))
    with modelkeep.Repo.init(tmp_path / "repo") as repo:
        repo.commit("net", [str(weights)])
    store = tmp_path / "repo" / ".modelkeep" / "store"
    heads = {p.read_bytes()[:1] for p in (store / "objects").glob("*/*")}
    assert bytes([objects.RAW_PAGE]) in heads  # the new layout was written
    config = json.loads((tmp_path / "repo" / ".modelkeep" / "config.json").read_text())
    assert config["format"] > LAST_FORMAT_WITHOUT_PAGES


def _synced_files(monkeypatch: pytest.MonkeyPatch) -> set[tuple[int, int]]:
    """(device, inode) of every file fsynced from now on, in this process."""
    synced: set[tuple[int, int]] = set()

    def spy(real: Callable[[int], None]) -> Callable[[int], None]:
        def sync(fd: int) -> None:
            st = os.fstat(fd)
            synced.add((st.st_dev, st.st_ino))
            real(fd)

        return sync

    monkeypatch.setattr(os, "fsync", spy(os.fsync))
    monkeypatch.setattr(os, "fdatasync", spy(os.fdatasync))
    return synced


def test_the_ledger_never_vouches_for_a_file_not_made_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store copied elsewhere (copytree: page cache only, nothing fsynced) is hashed on
    first map and recorded in the ledger; after a power cut the copy can come back
    with its stat but not its bytes, and the ledger would then vouch for them."""
    data = _random(2 * MIB, seed=1)
    with ObjectStore(LocalBackend(tmp_path / "a")).writer() as w:
        oid = w.add(data)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    synced = _synced_files(monkeypatch)
    copy = ObjectStore(LocalBackend(tmp_path / "b"))
    mm = copy.mapped(ChunkRef(oid, len(data)))
    assert mm is not None
    assert bytes(mm) == data
    loose = os.stat(tmp_path / "b" / "objects" / oid.fanout())
    here = (loose.st_dev, loose.st_ino)
    vouched = set()
    for line in (tmp_path / "b" / "verified").read_text().splitlines():
        fields = line.split()
        if fields[0] == oid.hex:
            vouched.add((int(fields[1]), int(fields[2])))
    assert here in vouched  # the copy is trusted from now on...
    assert here in synced  # ...so it must have been made durable first
