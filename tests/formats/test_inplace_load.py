"""State dicts load straight from the store: tensors backed by the stored bytes, no
checkout, the same tensors as ``safetensors.torch.load_file`` of the checked-out file."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

import modelkeep
from modelkeep.errors import CorruptObjectError
from modelkeep.store import ChunkParams

torch = pytest.importorskip("torch")
st = pytest.importorskip("safetensors.torch")

MIB = 1 << 20


def _state() -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    return {
        "big.weight": torch.randn(768, 768, generator=g),  # 2.25 MiB: one mapped chunk
        "big.bias": torch.randn(768, generator=g),  # small: packed
        "half": torch.randn(600, 1000, generator=g).half(),
        "brain": torch.randn(7, 3, generator=g).bfloat16(),
        "steps": torch.arange(-5, 5, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "flat": torch.zeros(512, 1024),  # 2 MiB of zeros: compressed and packed
    }


def _checked_out(repo: modelkeep.Repo, rev: str, tmp: Path) -> dict[str, Any]:
    repo.checkout(rev, tmp / "co")
    result: dict[str, Any] = st.load_file(str(tmp / "co" / "model.safetensors"))
    return result


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert list(a) == list(b)  # load_file's order, too
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert a[key].shape == b[key].shape, key
        assert torch.equal(a[key], b[key]), key


@pytest.mark.local_engine  # maps the store's file (S3 loads through its read cache)
def test_a_state_dict_loads_in_place_as_load_file_reads_it(tmp_path: Path) -> None:
    state = _state()
    with modelkeep.Repo.init(tmp_path / "repo") as repo:
        repo.commit("net", state)
        loaded = repo.load("net")
        # Nothing checked out: the load cache was not used.
        assert not (tmp_path / "repo" / ".modelkeep" / "cache").exists()
        _same(loaded, _checked_out(repo, "net", tmp_path))
        for key, value in state.items():
            assert torch.equal(loaded[key], value), key


def test_loaded_tensors_are_writable_and_private(tmp_path: Path) -> None:
    with modelkeep.Repo.init(tmp_path / "repo") as repo:
        repo.commit("net", _state())
        first = repo.load("net")
        first["big.weight"].zero_()  # copy-on-write: not the store, not another load
        first["big.bias"].add_(1)
        again = repo.load("net")
        assert torch.equal(again["big.weight"], _state()["big.weight"])
        assert torch.equal(again["big.bias"], _state()["big.bias"])
        assert repo.fsck().ok


def test_a_tensor_larger_than_one_chunk_is_gathered(tmp_path: Path) -> None:
    params = ChunkParams(
        min_size=64 << 10, avg_size=256 << 10, max_size=1 << 20, max_tensor_chunk=1 << 20
    )
    g = torch.Generator().manual_seed(1)
    state = {"huge": torch.randn(3 * MIB // 4 * 3, generator=g), "tail": torch.ones(5)}
    with modelkeep.Repo.init(tmp_path / "repo", params=params) as repo:
        repo.commit("net", state)
        loaded = repo.load("net")
        _same(loaded, _checked_out(repo, "net", tmp_path))


@pytest.mark.local_engine  # maps the store's file (S3 loads through its read cache)
def test_a_corrupted_weight_is_refused_and_names_fsck(tmp_path: Path) -> None:
    with modelkeep.Repo.init(tmp_path / "repo") as repo:
        repo.commit("net", _state())
        objects = tmp_path / "repo" / ".modelkeep" / "store" / "objects"
        big = max(objects.glob("*/*"), key=lambda p: p.stat().st_size)
        big.chmod(0o644)
        with open(big, "r+b") as f:
            f.seek(4096 + 1000)
            f.write(b"\x00\x01\x02\x03")
        with pytest.raises(CorruptObjectError, match=r"model\.safetensors of net:1.*fsck"):
            repo.load("net")


@pytest.mark.local_engine  # maps the store's file (S3 loads through its read cache)
def test_a_copied_repository_verifies_then_loads(tmp_path: Path) -> None:
    with modelkeep.Repo.init(tmp_path / "a") as repo:
        repo.commit("net", _state())
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    with modelkeep.Repo(tmp_path / "b") as copy:
        loaded = copy.load("net")
        assert loaded.keys() == _state().keys()
        for key, value in _state().items():
            assert torch.equal(loaded[key], value), key
        ledger = (tmp_path / "b" / ".modelkeep" / "store" / "verified").read_text()
        assert len(ledger.splitlines()) >= 2  # written in a, then verified again in b


@pytest.mark.local_engine  # maps the store's file (S3 loads through its read cache)
def test_a_module_loads_in_place(tmp_path: Path) -> None:
    from torch_models import MLP

    torch.manual_seed(2)
    model = MLP()
    with modelkeep.Repo.init(tmp_path / "repo") as repo:
        repo.commit("mlp", model)
        loaded = repo.load("mlp")
        assert not (tmp_path / "repo" / ".modelkeep" / "cache").exists()  # in place
        assert isinstance(loaded, MLP)
        assert not loaded.training
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key


@pytest.mark.local_engine  # format 1 is a folder's config.json (shared ones start at 2)
def test_a_format_1_repository_keeps_the_layout_older_releases_read(tmp_path: Path) -> None:
    """Releases that know format 1 read only 1-byte headers: such a repository is still
    written that way, and its models load from checked-out files."""
    import json

    modelkeep.Repo.init(tmp_path / "repo").close()
    config_path = tmp_path / "repo" / ".modelkeep" / "config.json"
    config = json.loads(config_path.read_text())
    assert config["format"] == 2
    config_path.write_text(json.dumps({**config, "format": 1}))
    with modelkeep.Repo(tmp_path / "repo") as repo:
        repo.commit("net", _state())
        store = tmp_path / "repo" / ".modelkeep" / "store"
        heads = {p.read_bytes()[:1] for p in (store / "objects").glob("*/*")}
        assert heads == {b"\x00"}  # raw, one byte of header
        _same(repo.load("net"), _checked_out(repo, "net", tmp_path))
        assert (tmp_path / "repo" / ".modelkeep" / "cache").is_dir()  # the file route
        assert not (store / "verified").exists()
    assert json.loads(config_path.read_text())["format"] == 1


def test_a_module_with_tied_weights_loads_from_its_file_ties_kept(tmp_path: Path) -> None:
    """Tied weights are left to safetensors' load_model, which knows the names saving
    dropped and refuses stored tensors a tie would overwrite."""
    from torch_models import Tied

    torch.manual_seed(4)
    model = Tied()
    ids = torch.arange(10).reshape(2, 5)
    with modelkeep.Repo.init(tmp_path / "repo") as repo:
        repo.commit("lm", model)
        loaded = repo.load("lm")
        assert (tmp_path / "repo" / ".modelkeep" / "cache").is_dir()  # the file route
        assert isinstance(loaded, Tied)
        assert not loaded.training
        assert loaded.out.weight is loaded.embed.weight  # still one tensor
        assert torch.equal(loaded(ids), model(ids))


def test_weights_that_do_not_fit_the_module_fail_as_from_a_file(tmp_path: Path) -> None:
    from torch_models import MLP

    model = MLP()
    model.modelkeep_init_args = {"hidden": 16}  # wrong: the weights have 8
    with modelkeep.Repo.init(tmp_path / "repo") as repo:
        repo.commit("mlp", model)
        with pytest.raises(RuntimeError, match="size mismatch"):
            repo.load("mlp")
