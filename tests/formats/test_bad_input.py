"""Bad input: the right error class, a message that says what and how, a one-line CLI
error with a non-zero exit, and no partial version left behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import modelkeep
from modelkeep.errors import (
    DataFormatError,
    SignatureError,
    UnsupportedModelError,
    UntrustedModelError,
    UsageError,
)
from modelkeep.formats.predict import predict

USAGE = 2  # exit code of UsageError and its subclasses


@pytest.fixture
def skops_file(table: Any, tmp_path: Path) -> Path:
    """A plain (all-trusted) scikit-learn model saved with skops, trained on a, b, c."""
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    x, y = table()
    path = tmp_path / "model.skops"
    sio.dump(LogisticRegression().fit(x, y), path)
    return path


# -- an object no format recognises ----------------------------------------------------------


@pytest.mark.parametrize("obj", [object(), {"weights": [1.0, 2.0]}, {}, 42])
def test_unsupported_object(repo: modelkeep.Repo, snapshot: Any, obj: Any) -> None:
    before = snapshot(repo)
    with pytest.raises(UnsupportedModelError) as info:
        repo.commit("thing", obj)
    message = str(info.value)
    assert type(obj).__qualname__ in message  # what
    for name in ("sklearn", "torch", "onnx", "xgboost", "lightgbm"):  # what is supported
        assert name in message
    assert "commit the files" in message  # how
    assert isinstance(info.value, UsageError)
    assert snapshot(repo) == before
    assert repo.models() == []


def test_torch_module_from_main_is_refused(repo: modelkeep.Repo, snapshot: Any) -> None:
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 1)

    Net.__module__ = "__main__"  # as if defined in a script or notebook
    before = snapshot(repo)
    with pytest.raises(UnsupportedModelError) as info:
        repo.commit("net", Net())
    message = str(info.value)
    assert "Net is defined in __main__" in message  # what
    assert "importable module" in message  # how …
    assert "state_dict()" in message  # … or how else
    assert snapshot(repo) == before
    # Its state dict is fine.
    assert repo.commit("net", Net().state_dict()).format == "torch"


# -- an input example that does not fit -----------------------------------------------------------


def test_example_that_does_not_fit(
    repo: modelkeep.Repo, table: Any, snapshot: Any, skops_file: Path, tmp_path: Path, cli: Any
) -> None:
    import skops.io as sio

    model = sio.load(skops_file)
    x, _ = table()
    repo.commit("clf", skops_file, input_example=x.head())
    before = snapshot(repo)

    with pytest.raises(SignatureError) as info:
        repo.commit("clf", model, input_example=x.drop(columns=["c"]))
    message = str(info.value)
    assert message.startswith("the input example does not fit the model: ValueError")
    assert "c" in message.split("missing")[-1]

    bad = tmp_path / "bad.csv"
    x.rename(columns={"b": "bee"}).head().to_csv(bad, index=False)
    res = cli(repo.root, "commit", "clf", skops_file, "--example", bad)
    assert res.code == USAGE
    line = res.one_line_error()
    assert "input example does not fit the model" in line
    assert "bee" in line
    assert snapshot(repo) == before


def test_example_for_files_that_are_no_model(
    repo: modelkeep.Repo, snapshot: Any, tmp_path: Path, table: Any
) -> None:
    src = tmp_path / "weights.bin"
    src.write_bytes(b"\x00" * 64)
    before = snapshot(repo)
    with pytest.raises(SignatureError, match="commit the model object, or drop the example"):
        repo.commit("raw", src, input_example=table()[0])
    assert snapshot(repo) == before


# -- a truncated safetensors file ---------------------------------------------------------------


def test_truncated_safetensors(
    repo: modelkeep.Repo, snapshot: Any, tmp_path: Path, cli_proc: Any
) -> None:
    import torch
    from safetensors.torch import save_file

    real = tmp_path / "real.safetensors"
    save_file({"w": torch.ones(64, 64), "b": torch.zeros(64)}, str(real))
    data = real.read_bytes()
    cut = tmp_path / "model.safetensors"
    cut.write_bytes(data[: len(data) - 100])  # what `head -c` would leave

    before = snapshot(repo)
    with pytest.raises(DataFormatError) as info:
        repo.commit("weights", cut)
    message = str(info.value)
    assert "model.safetensors" in message
    assert "truncated" in message
    assert "re-export it" in message

    res = cli_proc(repo.root, "commit", "weights", cut)
    assert res.code == USAGE
    line = res.one_line_error()
    assert "truncated" in line
    assert snapshot(repo) == before

    # The whole file is fine, and loads as its tensors.
    v = repo.commit("weights", real)
    assert v.format == "safetensors"
    assert torch.equal(repo.load(v.rev)["w"], torch.ones(64, 64))


# -- a skops file holding a type skops does not trust -------------------------------------------


@pytest.fixture
def untrusted_skops(table: Any, tmp_path: Path) -> tuple[Path, Any, pd.DataFrame]:
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    from torch_models import signed_log

    x, y = table()
    model = make_pipeline(FunctionTransformer(signed_log), LogisticRegression()).fit(x, y)
    path = tmp_path / "pipe.skops"
    sio.dump(model, path)
    return path, model, x


TYPE = "torch_models.signed_log"


def test_untrusted_skops_type(
    repo: modelkeep.Repo, snapshot: Any, untrusted_skops: Any, cli: Any
) -> None:
    path, model, x = untrusted_skops
    before = snapshot(repo)
    with pytest.raises(UntrustedModelError) as info:
        repo.commit("pipe", path)
    message = str(info.value)
    assert TYPE in message  # what
    assert f"trusted={[TYPE]!r}" in message  # how, as the Python API says it
    assert "--trust" not in message
    with pytest.raises(UntrustedModelError, match=TYPE):
        repo.commit("pipe", path, trusted=["some.other.Type"])

    res = cli(repo.root, "commit", "pipe", path)
    assert res.code != 0
    line = res.one_line_error()
    assert f"--trust {TYPE}" in line  # how, as the command line says it
    assert snapshot(repo) == before

    res = cli(repo.root, "commit", "pipe", path, "--trust", TYPE)
    assert res.code == 0, res.err
    v = repo.resolve("pipe:1")
    assert v.format == "sklearn"
    assert v.artifact["options"]["untrusted_types"] == [TYPE]
    # Vouched for at commit, it loads (the checkout verifies it is the same file).
    loaded = repo.load(v.rev)
    np.testing.assert_array_equal(predict(loaded, x), predict(model, x))


def test_untrusted_skops_type_with_trusted_true(repo: modelkeep.Repo, untrusted_skops: Any) -> None:
    path, model, x = untrusted_skops
    v = repo.commit("pipe", path, trusted=True)
    np.testing.assert_array_equal(predict(repo.load(v.rev), x), predict(model, x))


# -- data files that cannot be parsed -----------------------------------------------------------


def test_csv_that_cannot_be_parsed(
    repo: modelkeep.Repo, snapshot: Any, tmp_path: Path, cli_proc: Any
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\n1,2,3\n4,5,6\n7,8,9,10\n1,1,1\n")
    before = snapshot(repo)
    with pytest.raises(DataFormatError) as info:
        repo.data_add("d", bad)
    message = str(info.value)
    assert "bad.csv" in message
    assert "cannot parse CSV" in message
    assert "line 4" in message
    assert "Expected 3 fields" in message

    res = cli_proc(repo.root, "data", "add", "d", bad)
    assert res.code == USAGE
    line = res.one_line_error()
    assert "line 4" in line
    assert "bad.csv" in line
    assert snapshot(repo) == before


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.csv", "", "cannot parse CSV"),
        ("data.txt", "a,b\n1,2\n", "unknown data file type '.txt'"),
        ("broken.parquet", "not parquet at all", "not a readable Parquet file"),
    ],
)
def test_other_unreadable_datasets(
    repo: modelkeep.Repo, snapshot: Any, tmp_path: Path, name: str, content: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    before = snapshot(repo)
    with pytest.raises(DataFormatError, match=expected):
        repo.data_add("d", path)
    assert snapshot(repo) == before


def test_target_column_that_is_not_there(
    repo: modelkeep.Repo, snapshot: Any, table: Any, skops_file: Path, tmp_path: Path, cli: Any
) -> None:
    x, y = table()
    data = tmp_path / "train.csv"
    x.assign(label=y).to_csv(data, index=False)
    before = snapshot(repo)
    with pytest.raises(DataFormatError) as info:
        repo.commit("clf", skops_file, data=[data], target="nope")
    message = str(info.value)
    assert "'nope'" in message
    assert "columns: a, b, c, label" in message

    res = cli(repo.root, "commit", "clf", skops_file, "--data", data, "--target", "nope")
    assert res.code == USAGE
    line = res.one_line_error()
    assert "'nope'" in line
    assert "a, b, c, label" in line
    assert snapshot(repo) == before
