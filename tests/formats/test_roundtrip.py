"""Round trips per format: commit a model object (or file), load it back, and get the
very same predictions on a fixed input; the format and its libraries are recorded."""

from __future__ import annotations

import platform
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelkeep
from modelkeep import formats
from modelkeep.errors import ModelkeepWarning, UntrustedModelError
from modelkeep.formats.predict import predict


def roundtrip(repo: modelkeep.Repo, name: str, model: Any, x: Any, **kw: Any) -> tuple[Any, Any]:
    """Commit, load, and check predictions are identical; returns (version, loaded)."""
    v = repo.commit(name, model, **kw)
    assert repo.resolve(name).rev == v.rev
    loaded = repo.load(v.rev)
    np.testing.assert_array_equal(predict(loaded, x), predict(model, x), strict=True)
    assert v.artifact["python"] == platform.python_version()
    return v, loaded


# -- scikit-learn -------------------------------------------------------------------


def _sklearn_models() -> dict[str, Any]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "logreg": LogisticRegression(C=0.5),
        "forest": RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0),
        "pipeline": make_pipeline(StandardScaler(), LogisticRegression()),
    }


@pytest.mark.parametrize("kind", ["logreg", "forest", "pipeline"])
def test_sklearn_roundtrip(repo: modelkeep.Repo, table: Any, kind: str) -> None:
    x, y = table()
    model = _sklearn_models()[kind].fit(x, y)
    v, loaded = roundtrip(repo, kind, model, x)
    assert v.format == "sklearn"
    assert v.artifact["main"] == "model.skops"
    assert v.artifact["class"] == f"{type(model).__module__}.{type(model).__qualname__}"
    assert "scikit-learn" in v.artifact["libraries"]
    assert "skops" in v.artifact["libraries"]
    assert v.artifact["task"] == "classification"
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))


# -- PyTorch ------------------------------------------------------------------------


def test_torch_module_roundtrip(repo: modelkeep.Repo) -> None:
    import torch
    from torch_models import MLP

    torch.manual_seed(0)
    model = MLP(n_in=4, hidden=6, n_out=3).eval()
    x = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    v, loaded = roundtrip(repo, "mlp", model, x, init_args={"n_in": 4, "hidden": 6, "n_out": 3})
    assert v.format == "torch"
    assert v.artifact["class"] == "torch_models:MLP"
    assert v.artifact["options"] == {
        "kind": "module",
        "init_args": {"n_in": 4, "hidden": 6, "n_out": 3},
    }
    assert "torch" in v.artifact["libraries"]
    assert type(loaded) is MLP
    assert not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_torch_state_dict_roundtrip(repo: modelkeep.Repo) -> None:
    import torch
    from torch_models import MLP

    torch.manual_seed(1)
    state = MLP().state_dict()
    v = repo.commit("weights", state)
    assert v.format == "torch"
    assert v.artifact["options"]["kind"] == "state_dict"
    assert "torch" in v.artifact["libraries"]
    loaded = repo.load(v.rev)
    assert loaded.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    # Rebuilt into a module, the weights predict exactly as before.
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    a, b = MLP().eval(), MLP().eval()
    a.load_state_dict(state)
    b.load_state_dict(loaded)
    np.testing.assert_array_equal(predict(b, x), predict(a, x))


# torch.jit.script is deprecated in torch ≥ 2.9 (DeprecationWarning from torch.jit).
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning:torch.jit")
def test_torchscript_roundtrip(repo: modelkeep.Repo) -> None:
    import torch
    from torch_models import MLP

    torch.manual_seed(2)
    scripted = torch.jit.script(MLP().eval())
    x = np.random.default_rng(2).normal(size=(6, 4)).astype(np.float32)
    v, loaded = roundtrip(repo, "scripted", scripted, x)
    assert v.format == "torch"
    assert v.artifact["options"] == {"kind": "torchscript"}
    assert v.artifact["main"] == "model.pt"
    assert "torch" in v.artifact["libraries"]
    assert isinstance(loaded, torch.jit.ScriptModule)


# -- ONNX ---------------------------------------------------------------------------

W = (np.arange(6, dtype=np.float32).reshape(3, 2) - 2.5) / 10
B = np.array([0.5, -0.25], dtype=np.float32)


def tiny_onnx() -> Any:
    """y = x @ W + B, built by hand (no converter)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "B"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_onnx_roundtrip(repo: modelkeep.Repo) -> None:
    x = np.random.default_rng(3).normal(size=(5, 3)).astype(np.float32)
    v = repo.commit("tiny", tiny_onnx())
    assert v.format == "onnx"
    assert {"onnx", "onnxruntime"} <= v.artifact["libraries"].keys()
    session = repo.load(v.rev)
    assert type(session).__name__ == "InferenceSession"
    out = predict(session, x)
    np.testing.assert_array_equal(out, session.run(None, {"x": x})[0])
    np.testing.assert_allclose(out, x @ W + B, rtol=1e-6)
    # Loaded twice, the same file gives the same numbers.
    np.testing.assert_array_equal(predict(repo.load(v.rev), x), out)


def test_onnx_file_with_example_records_signature(repo: modelkeep.Repo, tmp_path: Path) -> None:
    import onnx

    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_onnx(), str(path))
    x = np.zeros((2, 3), dtype=np.float32)
    v = repo.commit("tiny", path, input_example=x)
    assert v.format == "onnx"
    assert v.artifact["signature"] == {
        "inputs": {"type": "tensor", "dtype": "float32", "shape": [-1, 3]},
        "outputs": {"type": "tensor", "dtype": "float32", "shape": [-1, 2]},
    }
    np.testing.assert_allclose(predict(repo.load(v.rev), x), np.broadcast_to(B, (2, 2)))


def test_onnx_object_with_example_records_signature(repo: modelkeep.Repo) -> None:
    x = np.zeros((2, 3), dtype=np.float32)
    v = repo.commit("tiny", tiny_onnx(), input_example=x)
    assert v.artifact["signature"]["outputs"]["shape"] == [-1, 2]


# -- XGBoost and LightGBM -----------------------------------------------------------


def test_xgboost_classifier_roundtrip(repo: modelkeep.Repo, table: Any) -> None:
    import xgboost as xgb

    x, y = table(seed=4)
    model = xgb.XGBClassifier(n_estimators=6, max_depth=2, random_state=0).fit(x, y)
    v, loaded = roundtrip(repo, "xgbc", model, x)
    assert v.format == "xgboost"
    assert v.artifact["main"] == "model.json"
    assert v.artifact["task"] == "classification"
    assert type(loaded) is xgb.XGBClassifier
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))


def test_xgboost_booster_roundtrip(repo: modelkeep.Repo, table: Any) -> None:
    import xgboost as xgb

    x, y = table(seed=5)
    booster = xgb.train(
        {"max_depth": 2, "objective": "binary:logistic"},
        xgb.DMatrix(x.to_numpy(), label=y.to_numpy()),
        num_boost_round=4,
    )
    v, loaded = roundtrip(repo, "xgbb", booster, x.to_numpy())
    assert v.format == "xgboost"
    assert type(loaded) is xgb.Booster


def test_xgboost_libraries_recorded(repo: modelkeep.Repo, table: Any) -> None:
    import xgboost as xgb

    x, y = table(seed=4)
    v = repo.commit("xgbc", xgb.XGBClassifier(n_estimators=2, max_depth=2).fit(x, y))
    assert v.artifact["libraries"].get("xgboost") == xgb.__version__


def test_lightgbm_regressor_loads_as_booster(repo: modelkeep.Repo, table: Any) -> None:
    import lightgbm as lgb

    x, _ = table(n=80, seed=6)
    target = 2 * x["a"] - x["b"]
    model = lgb.LGBMRegressor(n_estimators=8, min_child_samples=5, verbose=-1).fit(x, target)
    v, loaded = roundtrip(repo, "lgbm", model, x)
    assert v.format == "lightgbm"
    assert v.artifact["main"] == "model.txt"
    assert "lightgbm" in v.artifact["libraries"]
    assert v.artifact["task"] == "regression"
    assert type(loaded) is lgb.Booster


# -- files: pickles and plain files -------------------------------------------------


def test_pickle_needs_trust(repo: modelkeep.Repo, table: Any, tmp_path: Path) -> None:
    import joblib
    from sklearn.linear_model import LogisticRegression

    x, y = table(seed=7)
    model = LogisticRegression().fit(x, y)
    path = tmp_path / "model.pkl"
    joblib.dump(model, path)
    v = repo.commit("pickled", path)
    assert v.format == "pickle"
    assert "joblib" in v.artifact["libraries"]
    for trusted in (None, False, ["sklearn.linear_model._logistic.LogisticRegression"]):
        with pytest.raises(UntrustedModelError, match=r"pickle.*trusted=True"):
            repo.load(v.rev, trusted=trusted)
    loaded = repo.load(v.rev, trusted=True)
    np.testing.assert_array_equal(predict(loaded, x), predict(model, x))


def test_plain_file_loads_as_path(repo: modelkeep.Repo, tmp_path: Path) -> None:
    src = tmp_path / "weights.bin"
    src.write_bytes(bytes(range(256)) * 10)
    v = repo.commit("raw", src)
    assert v.format == "files"
    assert v.artifact == {}
    path = repo.load(v.rev)
    assert isinstance(path, Path)
    assert path.name == "weights.bin"
    assert path.read_bytes() == src.read_bytes()


def test_plain_folder_loads_as_folder(repo: modelkeep.Repo, tmp_path: Path) -> None:
    src = tmp_path / "bundle"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text('{"layers": 2}')
    (src / "sub" / "vocab.txt").write_text("a\nb\n")
    v = repo.commit("bundle", src)
    assert v.format == "files"
    folder = repo.load(v.rev)
    assert folder.is_dir()
    assert (folder / "config.json").read_text() == '{"layers": 2}'
    assert (folder / "sub" / "vocab.txt").read_text() == "a\nb\n"


# -- library versions -----------------------------------------------------------------


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no library warned about yet."""
    monkeypatch.setattr(formats, "_warned", set())


@pytest.mark.usefixtures("fresh_warnings")
def test_major_version_change_warns_once(repo: modelkeep.Repo, table: Any) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = table()
    v = repo.commit("logreg", LogisticRegression().fit(x, y))
    recorded = v.artifact["libraries"]
    installed = recorded["numpy"]
    # As recorded, nothing to say.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        formats.warn_versions(recorded, v.rev)
        formats.warn_versions({"numpy": installed.split(".")[0] + ".999"}, v.rev)
        formats.warn_versions({"not-a-real-package": "1.0"}, v.rev)
    with pytest.warns(ModelkeepWarning) as caught:
        formats.warn_versions({"numpy": "0.1"}, "x")
    assert len(caught) == 1
    text = str(caught[0].message)
    assert "x was saved with numpy 0.1" in text
    assert installed in text
    assert "major version" in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        formats.warn_versions({"numpy": "0.1"}, "x")  # already said: silent


@pytest.mark.usefixtures("fresh_warnings")
def test_load_warns_once_when_installed_major_differs(
    repo: modelkeep.Repo, table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = table()
    model = LogisticRegression().fit(x, y)
    v = repo.commit("logreg", model)
    # Pretend the environment moved on to a new major version of every library.
    monkeypatch.setattr(formats, "versions", lambda *names: dict.fromkeys(names, "999.0"))
    with pytest.warns(ModelkeepWarning) as caught:
        loaded = repo.load(v.rev)
    libs = v.artifact["libraries"]
    assert len(caught) == len(libs)  # one per library …
    assert {str(w.message).split(" was saved with ")[1].split()[0] for w in caught} == set(libs)
    assert all(str(w.message).startswith(f"{v.rev} was saved with") for w in caught)
    np.testing.assert_array_equal(predict(loaded, x), predict(model, x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        repo.load(v.rev)  # … and only once
