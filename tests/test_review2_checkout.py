"""Review: checking a raw loose object out onto another filesystem. ``copy_file_range``
between filesystems fails with EXDEV on current kernels (5.19+; and on all before 5.3),
and the checkout failed instead of copying the bytes another way."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import modelkeep

if TYPE_CHECKING:
    from collections.abc import Iterator

SHM = Path("/dev/shm")


@pytest.fixture
def other_fs(tmp_path: Path) -> Iterator[Path]:
    """A folder on a filesystem other than tmp_path's (tmpfs at /dev/shm)."""
    if not SHM.is_dir() or SHM.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on a filesystem of its own")
    folder = SHM / f"modelkeep-review2-{uuid.uuid4().hex}"
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_checkout_onto_another_filesystem(tmp_path: Path, other_fs: Path) -> None:
    data = os.urandom(3 << 20)  # incompressible: raw loose objects
    src = tmp_path / "weights.bin"
    src.write_bytes(data)
    with modelkeep.Repo.init(tmp_path / "repo") as repo:
        repo.commit("blob", src)
        result = repo.checkout("blob", other_fs / "co")
        assert result.written == ["weights.bin"]
        assert (other_fs / "co" / "weights.bin").read_bytes() == data


def test_load_with_the_cache_on_another_filesystem(tmp_path: Path, other_fs: Path) -> None:
    """The load cache moved to a faster disk by a symlink, as people do."""
    data = os.urandom(3 << 20)
    src = tmp_path / "weights.bin"
    src.write_bytes(data)
    with modelkeep.Repo.init(tmp_path / "repo") as repo:
        repo.commit("blob", src)
        (tmp_path / "repo" / ".modelkeep" / "cache").symlink_to(other_fs)
        assert Path(repo.load("blob")).read_bytes() == data
