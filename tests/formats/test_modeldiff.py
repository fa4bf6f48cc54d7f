"""Model-aware diff with known answers: tensors, scikit-learn specifics, predictions."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import modelkeep

# -- tensors ------------------------------------------------------------------------------


@pytest.fixture
def state_dicts() -> tuple[dict[str, Any], dict[str, Any]]:
    """8 tensors; then one scaled by 1.1, one reshaped, one added (9 in all)."""
    import torch

    g = torch.Generator().manual_seed(0)
    a = {f"layer{i}.weight": torch.randn(16, 8 + i, generator=g) for i in range(8)}
    b = dict(a)
    b["layer2.weight"] = a["layer2.weight"] * 1.1
    b["layer5.weight"] = a["layer5.weight"].reshape(8, -1)
    b["extra.bias"] = torch.randn(16, generator=g)
    return a, b


def test_tensor_diff_known_answer(
    repo: modelkeep.Repo, state_dicts: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = state_dicts
    va, vb = repo.commit("net", a), repo.commit("net", b)

    reads: list[tuple[int, int]] = []
    real_read = repo.store.read_range

    def spy(manifest: Any, begin: int, end: int) -> bytes:
        reads.append((begin, end))
        return real_read(manifest, begin, end)

    monkeypatch.setattr(repo.store, "read_range", spy)
    d = repo.diff(va.rev, vb.rev)

    assert [c.path for c in d.changed] == ["model.safetensors"]
    (td,) = d.tensors
    assert td.path == "model.safetensors"
    assert td.total == 9
    assert td.added == ["extra.bias"]
    assert td.removed == []
    assert td.reshaped == [("layer5.weight", [16, 13], [8, 26])]
    # Only the one tensor whose values changed is measured: the 6 unchanged are not.
    assert list(td.changed) == ["layer2.weight"]
    assert td.changed["layer2.weight"] == pytest.approx(0.1, abs=1e-6)
    assert len(reads) == 2  # that tensor, once in each version
    nbytes = a["layer2.weight"].numel() * 4
    assert all(end - begin == nbytes for begin, end in reads)

    # By hand: the changed, reshaped and added tensors over all tensors of b.
    params_total = sum(t.numel() for t in b.values())
    params_changed = 16 * 10 + 16 * 13 + 16
    assert td.params_total == params_total == 16 * sum(8 + i for i in range(8)) + 16
    assert td.params_changed == params_changed
    share = 100 * params_changed / params_total
    assert td.summary == f"3 of 9 tensors changed, {share:.1f} % of parameters"
    assert td.summary.startswith("3 of 9 tensors changed")


def test_tensor_diff_removed_and_unchanged(repo: modelkeep.Repo, state_dicts: Any) -> None:
    a, _ = state_dicts
    smaller = {k: v for k, v in a.items() if k != "layer7.weight"}
    va, vb = repo.commit("net", a), repo.commit("net", smaller)
    (td,) = repo.diff(va.rev, vb.rev).tensors
    assert td.removed == ["layer7.weight"]
    assert td.changed == {}
    assert td.reshaped == []
    assert td.added == []
    assert td.summary == "0 of 7 tensors changed, 0.0 % of parameters, 1 removed"


# -- scikit-learn -------------------------------------------------------------------------


def test_logistic_regression_hyperparameters_and_coefficients(
    repo: modelkeep.Repo, table: Any
) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = table(n=80)
    a = LogisticRegression(C=1.0).fit(x, y)
    b = LogisticRegression(C=0.05).fit(x, y)
    va, vb = repo.commit("clf", a), repo.commit("clf", b)
    d = repo.diff(va.rev, vb.rev)
    assert d.model["hyperparameters"] == {"C": ["1.0", "0.05"]}
    assert "class" not in d.model
    assert "trees" not in d.model
    delta = b.coef_ - a.coef_
    expected = np.linalg.norm(delta) / np.linalg.norm(a.coef_)
    assert expected > 0.01
    assert d.model["coefficients"]["relative_l2"] == pytest.approx(expected, rel=1e-12)
    assert d.model["coefficients"]["max_abs"] == pytest.approx(np.abs(delta).max(), rel=1e-12)


def test_random_forest_trees_and_depth(repo: modelkeep.Repo, table: Any) -> None:
    from sklearn.ensemble import RandomForestClassifier

    x, y = table(n=120)
    a = RandomForestClassifier(n_estimators=3, max_depth=2, random_state=0).fit(x, y)
    b = RandomForestClassifier(n_estimators=7, max_depth=5, random_state=0).fit(x, y)
    va, vb = repo.commit("rf", a), repo.commit("rf", b)
    d = repo.diff(va.rev, vb.rev)
    depth_a = max(t.tree_.max_depth for t in a.estimators_)
    depth_b = max(t.tree_.max_depth for t in b.estimators_)
    assert depth_a == 2
    assert depth_b > 2
    assert d.model["trees"] == {"count": [3, 7], "max_depth": [depth_a, depth_b]}
    assert d.model["hyperparameters"]["n_estimators"] == ["3", "7"]
    assert d.model["hyperparameters"]["max_depth"] == ["2", "5"]
    assert "coefficients" not in d.model


def test_pipeline_compares_final_steps(repo: modelkeep.Repo, table: Any) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = table()
    a = make_pipeline(StandardScaler(), LogisticRegression(C=1.0)).fit(x, y)
    b = make_pipeline(StandardScaler(), LogisticRegression(C=2.0)).fit(x, y)
    d = repo.diff(repo.commit("p", a).rev, repo.commit("p", b).rev)
    assert d.model["hyperparameters"] == {"C": ["1.0", "2.0"]}
    ca, cb = a[-1].coef_, b[-1].coef_
    expected = np.linalg.norm(cb - ca) / np.linalg.norm(ca)
    assert d.model["coefficients"]["relative_l2"] == pytest.approx(expected, rel=1e-12)


# -- predictions on --data ------------------------------------------------------------------


def _f1(y: np.ndarray, p: np.ndarray) -> float:
    tp = int(np.sum((p == 1) & (y == 1)))
    fp = int(np.sum((p == 1) & (y == 0)))
    fn = int(np.sum((p == 0) & (y == 1)))
    return 2 * tp / (2 * tp + fp + fn)


@pytest.fixture
def classifiers(repo: modelkeep.Repo, table: Any, tmp_path: Path) -> dict[str, Any]:
    """Two classifiers that disagree on some rows of an evaluation CSV with a label."""
    from sklearn.linear_model import LogisticRegression

    x, y = table(n=80, seed=1)
    rng = np.random.default_rng(2)
    noisy = np.where(rng.random(len(y)) < 0.3, 1 - y, y)
    a = LogisticRegression().fit(x, y)
    b = LogisticRegression(C=0.01).fit(x[["b", "c"]].assign(a=x["a"])[["a", "b", "c"]], noisy)
    ev_x, ev_y = table(n=50, seed=3)
    csv = tmp_path / "eval.csv"
    ev_x.assign(label=ev_y).to_csv(csv, index=False)
    frame = pd.read_csv(csv)
    pa = a.predict(frame[["a", "b", "c"]])
    pb = b.predict(frame[["a", "b", "c"]])
    truth = frame["label"].to_numpy()
    return {
        "va": repo.commit("clf", a),
        "vb": repo.commit("clf", b),
        "csv": csv,
        "pa": pa,
        "pb": pb,
        "y": truth,
    }


def test_classification_agreement_and_metrics(repo: modelkeep.Repo, classifiers: Any) -> None:
    c = classifiers
    d = repo.diff(c["va"].rev, c["vb"].rev, data=c["csv"], target="label")
    p = d.predictions
    assert p is not None
    agreement = float(np.mean(c["pa"] == c["pb"]))
    assert 0 < agreement < 1  # the known answer is not a trivial one
    assert p["task"] == "classification"
    assert p["rows"] == 50
    assert p["agreement"] == agreement
    assert p["accuracy"] == [float(np.mean(c["pa"] == c["y"])), float(np.mean(c["pb"] == c["y"]))]
    assert p["f1"] == pytest.approx([_f1(c["y"], c["pa"]), _f1(c["y"], c["pb"])], rel=1e-12)


def test_classification_without_target(repo: modelkeep.Repo, classifiers: Any) -> None:
    c = classifiers
    frame = pd.read_csv(c["csv"]).drop(columns=["label"])
    no_label = c["csv"].with_name("features.csv")
    frame.to_csv(no_label, index=False)
    p = repo.diff(c["va"].rev, c["vb"].rev, data=no_label).predictions
    assert p is not None
    assert p["agreement"] == float(np.mean(c["pa"] == c["pb"]))
    assert "accuracy" not in p
    assert "f1" not in p


@pytest.fixture
def regressors(repo: modelkeep.Repo, table: Any, tmp_path: Path) -> dict[str, Any]:
    from sklearn.linear_model import Ridge

    x, _ = table(n=70, seed=4)
    target = 3 * x["a"] - x["b"] + 0.1 * x["c"]
    a = Ridge(alpha=0.1).fit(x, target)
    b = Ridge(alpha=50.0).fit(x, target)
    ev_x, _ = table(n=40, seed=5)
    csv = tmp_path / "eval.csv"
    ev_x.assign(label=3 * ev_x["a"] - ev_x["b"]).to_csv(csv, index=False)
    frame = pd.read_csv(csv)
    return {
        "va": repo.commit("reg", a),
        "vb": repo.commit("reg", b),
        "csv": csv,
        "pa": a.predict(frame[["a", "b", "c"]]),
        "pb": b.predict(frame[["a", "b", "c"]]),
        "y": frame["label"].to_numpy(),
    }


def test_regression_mean_and_max_abs_diff(repo: modelkeep.Repo, regressors: Any) -> None:
    r = regressors
    p = repo.diff(r["va"].rev, r["vb"].rev, data=r["csv"], target="label").predictions
    assert p is not None
    diff = np.abs(r["pa"] - r["pb"])
    assert p["task"] == "regression"
    assert p["rows"] == 40
    assert p["mean_abs_diff"] == pytest.approx(diff.mean(), rel=1e-12)
    assert p["max_abs_diff"] == pytest.approx(diff.max(), rel=1e-12)
    assert p["mean_abs_diff"] > 0
    rmse = [math.sqrt(np.mean((r[k] - r["y"]) ** 2)) for k in ("pa", "pb")]
    mae = [float(np.mean(np.abs(r[k] - r["y"]))) for k in ("pa", "pb")]
    assert p["rmse"] == pytest.approx(rmse, rel=1e-12)
    assert p["mae"] == pytest.approx(mae, rel=1e-12)


# -- CLI ------------------------------------------------------------------------------------


def test_cli_diff_json_has_the_same_numbers(
    repo: modelkeep.Repo, classifiers: Any, cli: Any
) -> None:
    c = classifiers
    api = repo.diff(c["va"].rev, c["vb"].rev, data=c["csv"], target="label")
    res = cli(
        repo.root,
        "diff",
        c["va"].rev,
        c["vb"].rev,
        "--data",
        c["csv"],
        "--target",
        "label",
        "--json",
    )
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["predictions"] == api.predictions
    assert doc["predictions"]["agreement"] == float(np.mean(c["pa"] == c["pb"]))
    assert doc["model"] == json.loads(json.dumps(api.model))
    assert doc["model"]["hyperparameters"]["C"] == ["1.0", "0.01"]

    text = cli(repo.root, "diff", c["va"].rev, c["vb"].rev, "--data", c["csv"], "--target", "label")
    assert text.code == 0, text.err


def test_cli_diff_json_regression(repo: modelkeep.Repo, regressors: Any, cli: Any) -> None:
    r = regressors
    res = cli(
        repo.root,
        "diff",
        r["va"].rev,
        r["vb"].rev,
        "--data",
        r["csv"],
        "--target",
        "label",
        "--json",
    )
    assert res.code == 0, res.err
    p = json.loads(res.out)["predictions"]
    diff = np.abs(r["pa"] - r["pb"])
    assert p["mean_abs_diff"] == pytest.approx(diff.mean(), rel=1e-12)
    assert p["max_abs_diff"] == pytest.approx(diff.max(), rel=1e-12)
    assert p == repo.diff(r["va"].rev, r["vb"].rev, data=r["csv"], target="label").predictions


def test_diff_data_that_does_not_fit_is_a_signature_error(
    repo: modelkeep.Repo, regressors: Any
) -> None:
    from modelkeep.errors import SignatureError

    r = regressors
    with pytest.raises(SignatureError):
        repo.diff(r["va"].rev, r["vb"].rev, data=r["csv"])  # label left among the features


def test_cli_diff_json_tensors(repo: modelkeep.Repo, state_dicts: Any, cli: Any) -> None:
    a, b = state_dicts
    va, vb = repo.commit("net", a), repo.commit("net", b)
    res = cli(repo.root, "diff", va.rev, vb.rev, "--json")
    assert res.code == 0, res.err
    (td,) = json.loads(res.out)["tensors"]
    assert td["summary"].startswith("3 of 9 tensors changed")
    assert td["added"] == ["extra.bias"]
    assert td["reshaped"] == [["layer5.weight", [16, 13], [8, 26]]]
    assert list(td["changed"]) == ["layer2.weight"]
    assert td["changed"]["layer2.weight"] == pytest.approx(0.1, abs=1e-6)
    text = cli(repo.root, "diff", va.rev, vb.rev)
    assert "3 of 9 tensors changed" in text.out
