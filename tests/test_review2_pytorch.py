"""Review: a module loaded in place must be refused wherever safetensors' ``load_model``
on the checked-out file refuses it (here it was silently accepted)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

import modelkeep

if TYPE_CHECKING:
    from pathlib import Path

torch = pytest.importorskip("torch")
st = pytest.importorskip("safetensors.torch")

from torch import nn  # noqa: E402 - after the skip above


class Reshaped(nn.Module):
    """A module whose layout an init argument changes, as a class edited between
    saving and loading would: ``tie`` ties the output layer to the embedding, ``extra``
    adds an empty buffer the saved weights do not have."""

    def __init__(self, tie: bool = False, extra: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(600, 500)
        self.out = nn.Linear(500, 600, bias=False)
        if tie:
            self.out.weight = self.embed.weight
        self.register_buffer("a", torch.zeros(0))
        if extra:
            self.register_buffer("b", torch.zeros(0))


def _load_model_refuses(repo: modelkeep.Repo, args: dict[str, bool], tmp: Path) -> str:
    repo.checkout("m", tmp / "co")
    with pytest.raises(RuntimeError) as caught:
        st.load_model(Reshaped(**args), str(tmp / "co" / "model.safetensors"))
    return str(caught.value)


@pytest.mark.parametrize(
    ("args", "why"),
    [
        # The file has both weights, the module now shares one: load_model calls the
        # second name unexpected; in place, one weight silently overwrote the other.
        ({"tie": True}, "Unexpected key"),
        # A missing empty buffer: its data_ptr (0) equals that of the loaded empty
        # buffer, so _tied_to_loaded took it for a tied tensor.
        ({"extra": True}, "Missing key"),
    ],
)
def test_in_place_refuses_what_load_model_refuses(
    tmp_path: Path, args: dict[str, bool], why: str
) -> None:
    torch.manual_seed(5)
    model = Reshaped()
    setattr(model, "modelkeep_init_args", args)  # noqa: B010 - nn.Module types its attributes
    with modelkeep.Repo.init(tmp_path / "repo") as repo:
        repo.commit("m", model)
        assert why in _load_model_refuses(repo, args, tmp_path)
        with pytest.raises(RuntimeError, match=why):
            repo.load("m")
