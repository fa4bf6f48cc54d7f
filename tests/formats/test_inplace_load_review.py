"""Review of in-place state-dict loading: cases that fail (see the review report)."""

from __future__ import annotations

import mmap
import os
from typing import TYPE_CHECKING

import pytest

import modelkeep
from modelkeep.errors import CorruptObjectError

if TYPE_CHECKING:
    from pathlib import Path

torch = pytest.importorskip("torch")
st = pytest.importorskip("safetensors.torch")


@pytest.mark.local_engine  # maps the store's file (S3 loads through its read cache)
def test_once_fsck_finds_a_weight_corrupt_load_no_longer_trusts_it(tmp_path: Path) -> None:
    """A change that leaves the file's stat as it was (media corruption; or, reproduced
    here, a second write through a shared mapping whose page is already dirty: the
    kernel updates the times only on the first) is what fsck exists to catch. fsck
    does report it, yet load keeps serving the wrong bytes: the ledger still vouches."""
    state = {"w": torch.randn(1024, 1024, generator=torch.Generator().manual_seed(0))}
    with modelkeep.Repo.init(tmp_path / "repo") as repo:
        repo.commit("net", state)
        objects = tmp_path / "repo" / ".modelkeep" / "store" / "objects"
        (weight,) = (p for p in objects.glob("*/*") if p.stat().st_size > 4 << 20)
        weight.chmod(0o644)
        fd = os.open(weight, os.O_RDWR)
        try:
            shared = mmap.mmap(fd, 0)
        finally:
            os.close(fd)
        try:
            at = 4096 + 12345
            shared[at] = shared[at]  # same byte: the page is dirty, the bytes unchanged
            assert torch.equal(repo.load("net")["w"], state["w"])  # re-hashed, recorded
            # No write-fault now, so no new times: unless the kernel wrote the page back
            # meanwhile (then the ledger is not fooled and this test passes), the stat
            # stays the one recorded.
            shared[at] = shared[at] ^ 0xFF
            report = repo.fsck()
            assert not report.ok  # fsck sees the damage
            with pytest.raises(CorruptObjectError):
                repo.load("net")  # ...and so must load, from then on
        finally:
            shared.close()


def test_a_float4_state_dict_checks_out_as_a_file_safetensors_reads(tmp_path: Path) -> None:
    """(Found on the way; layout() predates this change, tensors() mirrors it.)
    safetensors names a float4_e2m1fn_x2 tensor of torch shape (3, 4) as F4 (3, 8) —
    one element per 4-bit value — but layout() writes the torch shape, so the checked-out
    model.safetensors is refused by load_file while the in-place load accepts it."""
    state = {"x": torch.zeros(3, 4, dtype=torch.float4_e2m1fn_x2), "y": torch.ones(2)}
    with modelkeep.Repo.init(tmp_path / "repo") as repo:
        repo.commit("net", state)
        repo.checkout("net", tmp_path / "co")
        loaded = st.load_file(str(tmp_path / "co" / "model.safetensors"))
        assert loaded["x"].shape == state["x"].shape
