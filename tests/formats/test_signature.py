"""Signatures: inferred from an input example, checked against data, compared across
versions (with breaking changes called out), and never half-recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import modelkeep
from modelkeep.errors import SignatureError
from modelkeep.formats import signature

# -- inference ------------------------------------------------------------------------


def test_infer_dataframe_names_and_dtypes() -> None:
    frame = pd.DataFrame(
        {
            "age": np.array([31, 42], dtype=np.int64),
            "income": np.array([1.5, 2.5], dtype=np.float64),
            "score": np.array([0.1, 0.2], dtype=np.float32),
            "active": [True, False],
            "city": pd.Series(["Oslo", "Lima"], dtype=object),
        }
    )
    assert signature.infer(frame) == {
        "type": "tabular",
        "columns": [
            {"name": "age", "dtype": "int64"},
            {"name": "income", "dtype": "float64"},
            {"name": "score", "dtype": "float32"},
            {"name": "active", "dtype": "bool"},
            {"name": "city", "dtype": "object"},
        ],
    }


def test_infer_dataframe_keeps_column_order_and_stringifies_names() -> None:
    frame = pd.DataFrame(np.zeros((3, 3)), columns=[2, "z", "a"])
    sig = signature.infer(frame)
    assert [c["name"] for c in sig["columns"]] == ["2", "z", "a"]


@pytest.mark.parametrize(
    ("shape", "dtype", "expected"),
    [
        ((5, 3), np.float32, [-1, 3]),
        ((2, 4, 5), np.int64, [-1, 4, 5]),
        ((7,), np.float64, [-1]),
        ((1, 28, 28, 3), np.uint8, [-1, 28, 28, 3]),
    ],
)
def test_infer_ndarray_dtype_and_batch_shape(
    shape: tuple[int, ...], dtype: Any, expected: list[int]
) -> None:
    arr = np.zeros(shape, dtype=dtype)
    assert signature.infer(arr) == {
        "type": "tensor",
        "dtype": np.dtype(dtype).name,
        "shape": expected,
    }


def test_infer_torch_tensor() -> None:
    import torch

    assert signature.infer(torch.zeros(4, 3, dtype=torch.float32)) == {
        "type": "tensor",
        "dtype": "float32",
        "shape": [-1, 3],
    }
    assert signature.infer(torch.zeros(2, 8, 16, dtype=torch.bfloat16)) == {
        "type": "tensor",
        "dtype": "bfloat16",
        "shape": [-1, 8, 16],
    }


def test_infer_dict_of_tensors() -> None:
    import torch

    batch = {
        "input_ids": torch.zeros(2, 7, dtype=torch.int64),
        "attention_mask": torch.ones(2, 7, dtype=torch.bool),
        "pixels": np.zeros((2, 3, 4), dtype=np.float16),
    }
    assert signature.infer(batch) == {
        "type": "tensors",
        "tensors": {
            "input_ids": {"type": "tensor", "dtype": "int64", "shape": [-1, 7]},
            "attention_mask": {"type": "tensor", "dtype": "bool", "shape": [-1, 7]},
            "pixels": {"type": "tensor", "dtype": "float16", "shape": [-1, 3, 4]},
        },
    }


def test_infer_refuses_what_it_cannot_describe() -> None:
    with pytest.raises(SignatureError, match="DataFrame"):
        signature.infer(object())


# -- outputs recorded from the model --------------------------------------------------


def test_commit_records_tabular_inputs_and_model_outputs(repo: modelkeep.Repo, table: Any) -> None:
    from sklearn.linear_model import LinearRegression, LogisticRegression

    x, y = table()
    v = repo.commit("clf", LogisticRegression().fit(x, y), input_example=x.head(3))
    assert v.artifact["signature"] == {
        "inputs": signature.infer(x),
        "outputs": {"type": "tensor", "dtype": "int64", "shape": [-1]},
    }
    v = repo.commit("reg", LinearRegression().fit(x, y.astype(float)), input_example=x.head(3))
    assert v.artifact["signature"]["outputs"] == {
        "type": "tensor",
        "dtype": "float64",
        "shape": [-1],
    }


def test_commit_records_tensor_signature_of_torch_module(repo: modelkeep.Repo) -> None:
    import torch
    from torch_models import MLP

    example = torch.zeros(2, 4)
    v = repo.commit("mlp", MLP(4, 8, 3), input_example=example, init_args={"n_out": 3})
    assert v.artifact["signature"] == {
        "inputs": {"type": "tensor", "dtype": "float32", "shape": [-1, 4]},
        "outputs": {"type": "tensor", "dtype": "float32", "shape": [-1, 3]},
    }


def test_example_drops_the_target_column(repo: modelkeep.Repo, table: Any) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = table()
    with_label = x.assign(label=y)
    v = repo.commit(
        "clf", LogisticRegression().fit(x, y), input_example=with_label.head(), target="label"
    )
    assert [c["name"] for c in v.artifact["signature"]["inputs"]["columns"]] == ["a", "b", "c"]


# -- checking data against a signature --------------------------------------------------


def test_check_tabular() -> None:
    frame = pd.DataFrame({"age": [30, 40], "income": [1.0, 2.0], "city": ["a", "b"]})
    sig = signature.infer(frame)
    assert signature.check(sig, frame) == []
    assert signature.check(sig, frame.head(1)) == []  # any number of rows
    # ints fit where floats were recorded: numbers convert safely
    assert signature.check(sig, frame.assign(income=[1, 2])) == []
    # extra columns are fine
    assert signature.check(sig, frame.assign(extra=[0, 0])) == []

    missing = signature.check(sig, frame.drop(columns=["income"]))
    assert len(missing) == 1
    assert "missing column 'income'" in missing[0]

    retyped = signature.check(sig, frame.assign(age=["thirty", "forty"]))
    assert len(retyped) == 1
    assert "column 'age'" in retyped[0]
    assert "expected int64" in retyped[0]

    assert signature.check(sig, np.zeros((2, 3))) != []


def test_check_tensor() -> None:
    sig = signature.infer(np.zeros((5, 4, 2), dtype=np.float32))
    assert signature.check(sig, np.ones((100, 4, 2), dtype=np.float32)) == []
    assert signature.check(sig, np.ones((1, 4, 2), dtype=np.float64)) == []  # numbers

    wrong_shape = signature.check(sig, np.ones((5, 4, 3), dtype=np.float32))
    assert len(wrong_shape) == 1
    assert "shape is [-1, 4, 3]" in wrong_shape[0]
    assert "expected [-1, 4, 2]" in wrong_shape[0]

    wrong_rank = signature.check(sig, np.ones((5, 8), dtype=np.float32))
    assert len(wrong_rank) == 1
    assert "shape" in wrong_rank[0]

    wrong_dtype = signature.check(sig, np.array([[["x", "y"]] * 4], dtype=object))
    assert any("dtype is object" in p for p in wrong_dtype)

    assert signature.check(sig, pd.DataFrame({"a": [1.0]})) != []


# -- changes between versions -----------------------------------------------------------


def _tab(**cols: str) -> dict[str, Any]:
    return {"type": "tabular", "columns": [{"name": k, "dtype": t} for k, t in cols.items()]}


def _out(*shape: int, dtype: str = "float32") -> dict[str, Any]:
    return {"type": "tensor", "dtype": dtype, "shape": list(shape)}


def test_changes_breaking_and_not() -> None:
    base = {"inputs": _tab(age="int64", city="object"), "outputs": _out(-1, 2)}
    assert signature.changes(base, base) == []

    removed = {"inputs": _tab(age="int64"), "outputs": _out(-1, 2)}
    assert signature.changes(base, removed) == [("input column 'city' removed", True)]

    retyped = {"inputs": _tab(age="float64", city="object"), "outputs": _out(-1, 2)}
    assert signature.changes(base, retyped) == [("input column 'age': int64 → float64", True)]

    added = {"inputs": _tab(age="int64", city="object", tenure="int64"), "outputs": _out(-1, 2)}
    assert signature.changes(base, added) == [("input column 'tenure' added", False)]

    reshaped = {"inputs": base["inputs"], "outputs": _out(-1, 3)}
    ((text, breaking),) = signature.changes(base, reshaped)
    assert breaking
    assert "outputs" in text
    assert "[-1, 2]" in text
    assert "[-1, 3]" in text

    # A wider float for the same output shape is a change, not a breaking one.
    widened = {"inputs": base["inputs"], "outputs": _out(-1, 2, dtype="float64")}
    assert signature.changes(base, widened) == [("outputs: float32[-1, 2] → float64[-1, 2]", False)]


def test_changes_tensor_inputs_and_missing_signatures() -> None:
    a = {"inputs": _out(-1, 4), "outputs": _out(-1, 2)}
    b = {"inputs": _out(-1, 5), "outputs": _out(-1, 2)}
    assert signature.changes(a, b) == [("inputs: float32[-1, 4] → float32[-1, 5]", True)]
    assert signature.changes(None, a) == [("signature added", False)]
    assert signature.changes(a, None) == [("signature removed", False)]
    assert signature.changes(None, None) == []


def test_repo_diff_reports_signature_changes(repo: modelkeep.Repo, table: Any) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = table(columns="abcd")
    v1 = repo.commit(
        "clf", LogisticRegression().fit(x[["a", "b", "c"]], y), input_example=x[["a", "b", "c"]]
    )
    v2 = repo.commit("clf", LogisticRegression().fit(x, y), input_example=x)
    v3 = repo.commit("clf", LogisticRegression().fit(x[["a", "b"]], y), input_example=x[["a", "b"]])

    d = repo.diff(v1.rev, v2.rev)
    assert d.signature == [("input column 'd' added", False)]
    assert not d.breaking
    d = repo.diff(v2.rev, v3.rev)
    assert d.signature == [
        ("input column 'c' removed", True),
        ("input column 'd' removed", True),
    ]
    assert d.breaking
    assert d.to_dict()["breaking"] is True


# -- an example that does not fit leaves nothing behind -----------------------------------


def test_bad_example_fails_without_a_trace(repo: modelkeep.Repo, table: Any, snapshot: Any) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = table()
    model = LogisticRegression().fit(x, y)
    repo.commit("clf", model, input_example=x.head())
    before = snapshot(repo)
    for bad in (x.drop(columns=["b"]), x.rename(columns={"c": "z"}), x.assign(d=1.0)):
        with pytest.raises(SignatureError, match="input example does not fit the model"):
            repo.commit("clf", model, input_example=bad)
    assert snapshot(repo) == before
    assert [v.number for v in repo.log("clf")] == [1]


def test_bad_tensor_example_fails_without_a_trace(repo: modelkeep.Repo, snapshot: Any) -> None:
    import torch
    from torch_models import MLP

    model = MLP(4, 8, 2)
    before = snapshot(repo)
    with pytest.raises(SignatureError, match="does not fit") as info:
        repo.commit("mlp", model, input_example=torch.zeros(3, 5))
    assert "RuntimeError" in str(info.value)
    assert snapshot(repo) == before
    assert repo.models() == []


# -- CLI ----------------------------------------------------------------------------------


def test_cli_commit_example_then_show(
    repo: modelkeep.Repo, table: Any, tmp_path: Path, cli: Any
) -> None:
    import skops.io as sio
    from sklearn.linear_model import Ridge

    x, y = table()
    x = x.assign(n=np.arange(len(x), dtype=np.int64))
    model = Ridge().fit(x, y)
    sio.dump(model, tmp_path / "model.skops")
    x.head(5).to_csv(tmp_path / "x.csv", index=False)

    res = cli(
        repo.root, "commit", "ridge", tmp_path / "model.skops", "--example", tmp_path / "x.csv"
    )
    assert res.code == 0, res.err
    expected = {
        "inputs": {
            "type": "tabular",
            "columns": [
                {"name": "a", "dtype": "float64"},
                {"name": "b", "dtype": "float64"},
                {"name": "c", "dtype": "float64"},
                {"name": "n", "dtype": "int64"},
            ],
        },
        "outputs": {"type": "tensor", "dtype": "float64", "shape": [-1]},
    }
    assert repo.resolve("ridge:1").artifact["signature"] == expected

    shown = cli(repo.root, "show", "ridge:1", "--json")
    assert shown.code == 0, shown.err
    doc = json.loads(shown.out)
    assert doc["artifact"]["format"] == "sklearn"
    assert doc["artifact"]["signature"] == expected

    text = cli(repo.root, "show", "ridge:1").out
    assert "a:float64, b:float64, c:float64, n:int64" in text
