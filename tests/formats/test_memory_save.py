"""Models saved to memory for a commit: the bytes are the file's, only no file is written."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import safetensors.torch as st
import torch
from torch import nn

from modelkeep.formats import stlayout

if TYPE_CHECKING:
    import modelkeep


def _joined(parts: tuple[memoryview, ...] | None) -> bytes:
    assert parts is not None
    return b"".join(bytes(p) for p in parts)


def _mixed() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    tensors = {
        "b.weight": torch.randn(3, 4, generator=g),
        "a": torch.arange(5, dtype=torch.int64),
        "mask": torch.ones(7, dtype=torch.bool),
        "half": torch.randn(9, generator=g).half(),
        "brain": torch.randn(3, generator=g).bfloat16(),
        "empty": torch.empty(0, 3),
        "scalar": torch.tensor(3.0),
        "bytes": torch.arange(3, dtype=torch.uint8),
        "ünï名": torch.ones(2),
        'quote"\nnewline': torch.zeros(1, dtype=torch.float64),
        "complex": torch.randn(2, dtype=torch.complex64, generator=g),
        "transposed": torch.randn(4, 3, generator=g).t().contiguous(),
    }
    for name in ("float8_e4m3fn", "uint16", "uint32", "int16", "int8"):
        tensors[name] = torch.ones(3, dtype=getattr(torch, name))
    return tensors


@pytest.mark.skipif(sys.byteorder != "little", reason="laid out only on little-endian")
def test_layout_is_byte_for_byte_what_safetensors_writes() -> None:
    tensors = _mixed()
    assert _joined(stlayout.layout(tensors)) == st.save(tensors)
    meta = {"format": "pt"}
    assert _joined(stlayout.layout(tensors, meta)) == st.save(tensors, metadata=meta)
    one = {"x": torch.ones(2, 2)}
    assert _joined(stlayout.layout(one)) == st.save(one)


def test_layout_leaves_unusual_tensors_to_safetensors() -> None:
    base = torch.randn(4, 4)
    assert stlayout.layout({"a": base, "b": base}) is None  # shared storage
    assert stlayout.layout({"a": base, "b": base[1]}) is None  # a view into it
    assert stlayout.layout({"s": base.to_sparse()}) is None
    assert stlayout.layout({"c": torch.randn(2, dtype=torch.complex64).conj()}) is None


def test_parts_are_the_tensors_own_memory() -> None:
    weight = torch.randn(64, 64)
    parts = stlayout.layout({"w": weight})
    assert parts is not None
    header, data = parts
    assert bytes(header[:8]) == (len(header) - 8).to_bytes(8, "little")
    weight[0, 0] = 123.0  # no copy was made: the part sees the change
    assert bytes(data[:4]) == weight[0, 0].numpy().tobytes()


def test_committed_state_dict_is_the_file_save_file_writes(
    repo: modelkeep.Repo, tmp_path: Path
) -> None:
    state = {k: v for k, v in nn.Linear(300, 200).state_dict().items()}
    state["steps"] = torch.tensor(7, dtype=torch.int64)
    state["transposed"] = torch.randn(5, 3).t()  # not contiguous: laid out as it reads
    from_memory = repo.commit("net", state)
    path = tmp_path / "model.safetensors"
    st.save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    from_file = repo.commit("net-file", path)
    (mine,) = repo.files(from_memory)
    (theirs,) = repo.files(from_file)
    assert (mine.path, mine.size, mine.content_id) == (theirs.path, theirs.size, theirs.content_id)
    assert mine.mode == 0o644
    loaded = repo.load("net")
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


class Tied(nn.Module):
    """Embedding and output layer share one weight, as in many language models."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.out = nn.Linear(4, 10, bias=False)
        self.out.weight = self.embed.weight


def test_module_with_tied_weights_still_commits_through_a_file(
    repo: modelkeep.Repo, tmp_path: Path
) -> None:
    # Tied weights are for save_model to sort out: the memory route steps aside.
    model = Tied()
    assert stlayout.layout(model.state_dict()) is None
    version = repo.commit("tied", model, init_args={})
    repo.checkout(version, tmp_path / "out")
    stored = st.load_file(str(tmp_path / "out" / "model.safetensors"))
    assert set(stored) == {"embed.weight"}  # the duplicate name dropped, as save_model does
    loaded = repo.load("tied")
    assert loaded.out.weight is loaded.embed.weight
    assert torch.equal(loaded.embed.weight, model.embed.weight)
