"""Updates end to end: real scikit-learn models, real CSV/Parquet files, a real
repository on disk.

Each test checks what an update made (the candidate version, its lineage, where the
alias points) against what it should have made, recomputed independently here: the
same 80/20 split of the new data, the same continued training, the same metrics.
Bad input must leave the repository exactly as it was.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import SGDClassifier, SGDRegressor
from sklearn.metrics import f1_score, mean_squared_error
from sklearn.model_selection import train_test_split
from typer.testing import CliRunner

import modelkeep
from modelkeep.cli.app import app
from modelkeep.errors import (
    DataFormatError,
    GateRuleError,
    InvalidNameError,
    NotIncrementalError,
    SignatureError,
    TrainerError,
    UsageError,
)
from modelkeep.registry.records import DatasetRef

if TYPE_CHECKING:
    from collections.abc import Iterator

HERE = Path(__file__).resolve().parent
# Trainers are named `trainers:FUNCTION`: make this folder importable however pytest
# was started (the real `modelkeep` subprocess gets it on PYTHONPATH).
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import trainers  # noqa: E402

FEATURES = ["tenure", "charges", "calls", "usage", "age"]
TARGET = "label"
HOLDOUT = 0.2  # the runner's share of the new data held out (seed 0)


def content_id(path: Path) -> str:
    return blake3.blake3(path.read_bytes()).hexdigest()


def rows_per_tree(forest: RandomForestClassifier) -> set[float]:
    """How many rows each tree was fitted on (bootstrap counts add up to the rows)."""
    return {float(t.tree_.weighted_n_node_samples[0]) for t in forest.estimators_}


@dataclass(frozen=True)
class Data:
    """Files shared by the module; tests never write to them."""

    cls_train: Path  # 1500 rows, classification
    cls_new: Path  # 1500 new rows, same distribution
    cls_new_parquet: Path  # the same new rows as Parquet
    reg_train: Path  # 200 rows, regression
    reg_new: Path  # 2000 new rows, Parquet
    header_only: Path
    wrong_columns: Path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    folder = tmp_path_factory.mktemp("update-data")
    x, y = make_classification(
        n_samples=3000,
        n_features=len(FEATURES),
        n_informative=3,
        n_redundant=1,
        n_clusters_per_class=1,
        class_sep=1.5,
        random_state=0,
    )
    cls = pd.DataFrame(x, columns=FEATURES).assign(**{TARGET: y})
    xr, yr = make_regression(n_samples=2200, n_features=len(FEATURES), noise=5.0, random_state=0)
    reg = pd.DataFrame(xr, columns=FEATURES).assign(**{TARGET: yr})
    d = Data(
        cls_train=folder / "train.csv",
        cls_new=folder / "new.csv",
        cls_new_parquet=folder / "new.parquet",
        reg_train=folder / "reg-train.csv",
        reg_new=folder / "reg-new.parquet",
        header_only=folder / "empty.csv",
        wrong_columns=folder / "renamed.csv",
    )
    cls.iloc[:1500].to_csv(d.cls_train, index=False)
    new = cls.iloc[1500:].reset_index(drop=True)
    new.to_csv(d.cls_new, index=False)
    new.to_parquet(d.cls_new_parquet, index=False)
    reg.iloc[:200].to_csv(d.reg_train, index=False)
    reg.iloc[200:].reset_index(drop=True).to_parquet(d.reg_new, index=False)
    d.header_only.write_text(",".join([*FEATURES, TARGET]) + "\n")
    new.rename(columns={"charges": "charge"}).drop(columns=["calls"]).to_csv(
        d.wrong_columns, index=False
    )
    return d


def xy(path: Path) -> tuple[pd.DataFrame, pd.Series]:
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    return frame[FEATURES], frame[TARGET]


def split(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """The runner's split of new data into training rows and the holdout."""
    x, y = xy(path)
    return train_test_split(x, y, test_size=HOLDOUT, random_state=0)


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[modelkeep.Repo]:
    with modelkeep.Repo.init(tmp_path / "repo") as r:
        yield r


def snapshot(repo: modelkeep.Repo) -> dict[str, Any]:
    """What a failed update must leave unchanged: versions, refs, events, objects."""
    names = [m.name for m in repo.models()]
    return {
        "versions": {n: [v.to_dict() for v in repo.log(n)] for n in names},
        "refs": {n: [r.to_dict() for r in repo.refs(n)] for n in names},
        "events": [e.to_dict() for e in repo.events()],
        "objects": {oid.hex for oid in repo.store.iter_ids()},
    }


def sgd_parent(repo: modelkeep.Repo, data: Data) -> SGDClassifier:
    """churn:1, an SGDClassifier trained on dataset train:1, at churn@production."""
    assert repo.data_add("train", data.cls_train, "training data").rev == "train:1"
    x, y = xy(data.cls_train)
    model = SGDClassifier(loss="log_loss", random_state=0).fit(x, y)
    v = repo.commit(
        "churn", model, "baseline", data=["train:1"], input_example=x.head(), target=TARGET
    )
    assert v.rev == "churn:1"
    repo.promote("churn:1", "production")
    return model


def forest_parent(repo: modelkeep.Repo, data: Data, training: str | Path) -> RandomForestClassifier:
    """churn:1, a random forest trained on ``data.cls_train`` (recorded as ``training``)."""
    x, y = xy(data.cls_train)
    model = RandomForestClassifier(n_estimators=12, max_depth=6, random_state=0).fit(x, y)
    repo.commit(
        "churn", model, "forest", data=[str(training)], input_example=x.head(), target=TARGET
    )
    repo.promote("churn:1", "production")
    return model


# -- (1) incremental -------------------------------------------------------------------


def test_incremental_update_passes_promotes_and_records_lineage(
    repo: modelkeep.Repo, data: Data
) -> None:
    parent_model = sgd_parent(repo, data)
    result = repo.update(
        "churn@production",
        data=data.cls_new,
        target=TARGET,
        strategy="incremental",
        gate="f1 >= parent - 0.05",
        promote="production",
    )
    cand = result.candidate
    assert result.passed
    assert result.promoted == "production"
    assert result.strategy == "incremental"
    assert result.parent.rev == "churn:1"
    assert (cand.rev, cand.branch, cand.parents) == ("churn:2", "main", (1,))
    assert (cand.kind, cand.status) == ("update.incremental", "ok")
    assert repo.resolve("churn@production").rev == "churn:2"
    assert repo.resolve("churn").rev == "churn:2"  # head of main
    assert "candidates" not in {r.name for r in repo.refs("churn", "branch")}

    # Lineage names exactly the data it used: the new file, by content; not train:1
    # (incremental), and no holdout file (the holdout is a split of the new data).
    assert cand.datasets == (
        DatasetRef(
            str(data.cls_new.resolve()), content_id(data.cls_new), data.cls_new.stat().st_size
        ),
    )
    update = cand.annotations["update"]
    assert update["datasets"] == [str(data.cls_new)]
    assert update["strategy"] == "incremental"
    assert update["parent"] == "churn:1"
    assert update["gate"] == "f1 >= parent - 0.05"
    assert update["verdict"] == "passed"
    assert update["reason"] == result.reason
    assert update["holdout"] == {
        "source": f"20% of {data.cls_new} (seed 0)",
        "rows": 300,
        "dataset": "churn-holdout:1",
    }
    assert result.holdout_dataset == "churn-holdout:1"
    assert update["metrics"] == {
        "parent": result.parent_metrics,
        "candidate": result.candidate_metrics,
    }
    assert cand.metrics == result.candidate_metrics
    assert set(cand.metrics) == {"accuracy", "f1", "precision", "recall", "auc"}
    assert cand.params["strategy"] == "incremental"

    # It really continued training the parent on the 80 % of the new rows ...
    x_train, x_hold, y_train, y_hold = split(data.cls_new)
    expected = copy.deepcopy(parent_model)
    expected.partial_fit(x_train, y_train)
    loaded = repo.load("churn@production")
    assert type(loaded) is SGDClassifier
    np.testing.assert_allclose(loaded.coef_, expected.coef_)
    np.testing.assert_allclose(loaded.intercept_, expected.intercept_)
    assert not np.allclose(loaded.coef_, parent_model.coef_)
    np.testing.assert_array_equal(loaded.predict(x_hold), expected.predict(x_hold))
    np.testing.assert_allclose(loaded.predict_proba(x_hold), expected.predict_proba(x_hold))
    # ... and both were scored on the same 20 %.
    parent_f1 = f1_score(y_hold, parent_model.predict(x_hold))
    cand_f1 = f1_score(y_hold, expected.predict(x_hold))
    assert result.parent_metrics["f1"] == pytest.approx(parent_f1)
    assert result.candidate_metrics["f1"] == pytest.approx(cand_f1)
    assert result.reason == f"f1 {cand_f1:.4g} >= {parent_f1 - 0.05:.4g}: yes"

    # The parent is untouched, and the promotion is in the alias's history.
    np.testing.assert_array_equal(repo.load("churn:1").coef_, parent_model.coef_)
    moves = [(e.before, e.after) for e in repo.history("churn@production")]
    assert moves[0] == (1, 2)


# -- (2) batch -----------------------------------------------------------------------


def test_batch_update_retrains_fresh_copy_on_parent_data_plus_new(
    repo: modelkeep.Repo, data: Data
) -> None:
    repo.data_add("train", data.cls_train)
    parent_model = forest_parent(repo, data, "train:1")
    result = repo.update(
        "churn@production",
        data=data.cls_new_parquet,
        target=TARGET,
        strategy="batch",
        gate="f1 >= parent - 0.05",
        promote="production",
    )
    cand = result.candidate
    assert result.passed
    assert (cand.rev, cand.branch, cand.parents) == ("churn:2", "main", (1,))
    assert (cand.kind, cand.status) == ("update.batch", "ok")
    assert repo.resolve("churn@production").rev == "churn:2"

    # Lineage: the new Parquet file and the parent's training data, both by content.
    assert {(d.path, d.content_id) for d in cand.datasets} == {
        (str(data.cls_new_parquet.resolve()), content_id(data.cls_new_parquet)),
        ("train:1", content_id(data.cls_train)),
    }
    assert cand.annotations["update"]["datasets"] == [str(data.cls_new_parquet), "train:1"]
    assert cand.annotations["update"]["strategy"] == "batch"

    # A fresh estimator with the same hyper-parameters, fitted on 1500 + 1200 rows.
    loaded = repo.load(cand)
    assert type(loaded) is RandomForestClassifier
    assert loaded.get_params() == parent_model.get_params()
    assert len(loaded.estimators_) == 12
    assert rows_per_tree(loaded) == {1500.0 + 1200.0}
    assert rows_per_tree(parent_model) == {1500.0}
    x_hold = split(data.cls_new_parquet)[1]
    x_all = pd.concat([xy(data.cls_train)[0], split(data.cls_new_parquet)[0]], ignore_index=True)
    y_all = pd.concat([xy(data.cls_train)[1], split(data.cls_new_parquet)[2]], ignore_index=True)
    expected = RandomForestClassifier(**parent_model.get_params()).fit(x_all, y_all)
    np.testing.assert_allclose(loaded.predict_proba(x_hold), expected.predict_proba(x_hold))


def test_batch_update_from_a_recorded_file_and_an_explicit_holdout(
    repo: modelkeep.Repo, data: Data, tmp_path: Path
) -> None:
    """The parent's training data recorded as a file path (unchanged, so usable); a
    holdout file given: it is consumed too, so lineage lists it."""
    forest_parent(repo, data, data.cls_train)
    holdout = tmp_path / "holdout.csv"
    pd.read_csv(data.cls_new).iloc[:400].to_csv(holdout, index=False)
    result = repo.update(
        "churn", data=data.cls_new, target=TARGET, strategy="batch", holdout=holdout
    )
    assert result.gate == "f1 >= parent"  # the default gate for classification
    assert result.candidate.annotations["update"]["holdout"] == {
        "source": str(holdout),
        "rows": 400,
        "dataset": "churn-holdout:1",
    }
    # The holdout file is kept as it was (its child is checked on it).
    assert repo.resolve("churn-holdout:1").artifact["content_id"] == content_id(holdout)
    assert result.candidate.annotations["update"]["datasets"] == [
        str(data.cls_new),
        str(data.cls_train.resolve()),
        str(holdout),
    ]
    assert [d.content_id for d in result.candidate.datasets] == [
        content_id(data.cls_new),
        content_id(data.cls_train),
        content_id(holdout),
    ]
    # All new rows train: the holdout is separate.
    assert rows_per_tree(repo.load(result.candidate)) == {1500.0 + 1500.0}


# -- (3) a gate that rejects -------------------------------------------------------------


def test_rejected_candidate_is_kept_on_candidates_and_alias_stays(
    repo: modelkeep.Repo, data: Data, monkeypatch: pytest.MonkeyPatch
) -> None:
    sgd_parent(repo, data)
    result = repo.update(
        "churn@production",
        data=data.cls_new,
        target=TARGET,
        strategy="incremental",
        gate="f1 > parent + 1",
        promote="production",
    )
    cand = result.candidate
    assert not result.passed
    assert result.promoted is None
    assert (cand.rev, cand.branch, cand.parents) == ("churn:2", "candidates", (1,))
    assert (cand.kind, cand.status) == ("update.incremental", "rejected")
    f1 = result.candidate_metrics["f1"]
    bound = result.parent_metrics["f1"] + 1
    assert result.reason == f"f1 {f1:.4g} > {bound:.4g}: no"
    assert cand.annotations["update"]["verdict"] == "rejected"
    assert cand.annotations["update"]["reason"] == result.reason

    # The alias and main do not move; the branch exists and holds the candidate.
    assert repo.resolve("churn@production").rev == "churn:1"
    assert repo.resolve("churn").rev == "churn:1"
    branches = {r.name: r.version for r in repo.refs("churn", "branch")}
    assert branches == {"main": 1, "candidates": 2}
    assert [v.rev for v in repo.log("churn", branch="main")] == ["churn:1"]
    assert isinstance(repo.load("churn:2"), SGDClassifier)  # nothing lost

    # A second rejection goes on the existing branch, still a child of the parent.
    again = repo.update("churn@production", data=data.cls_new, target=TARGET, gate="f1 > 1")
    assert (again.candidate.rev, again.candidate.branch) == ("churn:3", "candidates")
    assert again.candidate.parents == (1,)
    assert repo.resolve("churn@production").rev == "churn:1"

    monkeypatch.setenv("COLUMNS", "240")
    run = CliRunner().invoke(app, ["--repo", str(repo.root), "log", "churn"])
    assert run.exit_code == 0, run.output
    lines = {line.split()[0]: line for line in run.stdout.splitlines() if line.strip()}
    assert "incremental update (rejected)" in lines["churn:2"]
    assert "candidates" in lines["churn:2"]
    assert "rejected" not in lines["churn:1"]
    assert "production" in lines["churn:1"]


# -- (4) regression --------------------------------------------------------------------


def test_regression_incremental_update_with_rmse_gate(repo: modelkeep.Repo, data: Data) -> None:
    x, y = xy(data.reg_train)
    parent_model = SGDRegressor(random_state=0)
    parent_model.partial_fit(x, y)  # one pass over 200 rows: plenty of room to improve
    repo.commit("price", parent_model, "warm-up", data=[str(data.reg_train)], target=TARGET)
    result = repo.update(
        "price", data=data.reg_new, target=TARGET, strategy="incremental", gate="rmse < parent"
    )
    cand = result.candidate
    assert result.passed
    assert (cand.rev, cand.branch, cand.kind) == ("price:2", "main", "update.incremental")
    assert set(result.candidate_metrics) == {"rmse", "mae", "r2"}
    x_train, x_hold, y_train, y_hold = split(data.reg_new)
    expected = copy.deepcopy(parent_model)
    expected.partial_fit(x_train, y_train)
    rmse_parent = mean_squared_error(y_hold, parent_model.predict(x_hold)) ** 0.5
    rmse_cand = mean_squared_error(y_hold, expected.predict(x_hold)) ** 0.5
    assert rmse_cand < rmse_parent
    assert result.parent_metrics["rmse"] == pytest.approx(rmse_parent)
    assert result.candidate_metrics["rmse"] == pytest.approx(rmse_cand)
    assert result.reason == f"rmse {rmse_cand:.4g} < {rmse_parent:.4g}: yes"
    np.testing.assert_allclose(repo.load("price").predict(x_hold), expected.predict(x_hold))
    assert [d.content_id for d in cand.datasets] == [content_id(data.reg_new)]

    # No gate given: regression's default, and it runs from the new head.
    default = repo.update("price", data=data.reg_new, target=TARGET)
    assert default.gate == "rmse <= parent"
    assert default.parent.rev == "price:2"
    assert default.candidate.parents == (2,)


# -- (5) custom trainers ------------------------------------------------------------------


def test_custom_trainer_gets_parent_data_and_params(repo: modelkeep.Repo, data: Data) -> None:
    parent_model = sgd_parent(repo, data)
    trainers.CALLS.clear()
    result = repo.update(
        "churn@production",
        data=data.cls_new,
        target=TARGET,
        strategy="custom",
        trainer="trainers:warm_start_twice",
        params={"passes": 3},
        gate="accuracy >= parent - 0.05",
    )
    assert result.passed
    assert (result.candidate.kind, result.candidate.rev) == ("update.custom", "churn:2")
    assert result.candidate.params == {"passes": 3, "strategy": "custom"}
    [(given, rows, params)] = trainers.CALLS
    assert type(given) is SGDClassifier
    np.testing.assert_array_equal(given.coef_, parent_model.coef_)  # the parent, loaded
    assert rows == 1200
    assert params == {"passes": 3}
    x_train, _, y_train, _ = split(data.cls_new)
    expected = copy.deepcopy(parent_model)
    for _ in range(3):
        expected.partial_fit(x_train, y_train)
    np.testing.assert_allclose(repo.load("churn:2").coef_, expected.coef_)
    assert result.candidate.annotations["update"]["datasets"] == [str(data.cls_new)]


def test_trainer_that_raises_commits_nothing(repo: modelkeep.Repo, data: Data) -> None:
    sgd_parent(repo, data)
    before = snapshot(repo)
    with pytest.raises(TrainerError) as info:
        repo.update(
            "churn@production",
            data=data.cls_new,
            target=TARGET,
            strategy="custom",
            trainer="trainers:explode_in_trainer",
        )
    message = str(info.value)
    assert "RuntimeError: trainer bug: cannot handle 1200 rows" in message
    assert "nothing was committed" in message
    trace = info.value.trace
    assert "explode_in_trainer" in trace
    assert "_broken_helper" in trace
    assert "trainers.py" in trace
    assert trace.rstrip().endswith("RuntimeError: trainer bug: cannot handle 1200 rows")
    assert snapshot(repo) == before

    with pytest.raises(TrainerError, match="returned None"):
        repo.update(
            "churn@production",
            data=data.cls_new,
            target=TARGET,
            strategy="custom",
            trainer=lambda parent, data, params: None,
        )
    assert snapshot(repo) == before


# -- (6) bad input: an error that says what is wrong, and nothing stored ------------------


@pytest.fixture(scope="module")
def bad_repo(tmp_path_factory: pytest.TempPathFactory, data: Data) -> Iterator[modelkeep.Repo]:
    """churn (SGD, at @production) and forest (random forest); shared: nothing may change."""
    with modelkeep.Repo.init(tmp_path_factory.mktemp("bad") / "repo") as repo:
        sgd_parent(repo, data)
        x, y = xy(data.cls_train)
        forest = RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(x, y)
        repo.commit("forest", forest, "f", data=["train:1"], input_example=x.head(), target=TARGET)
        yield repo


BAD: list[tuple[str, dict[str, Any], type[Exception], list[str]]] = [
    (
        "columns do not match the signature",
        {"data": "wrong_columns"},
        SignatureError,
        ["charges", "calls", "charge"],
    ),
    ("header-only CSV", {"data": "header_only"}, DataFormatError, ["empty.csv", "no rows"]),
    (
        "missing target column",
        {"target": "churned"},
        DataFormatError,
        ["'churned'", "tenure, charges, calls, usage, age, label"],
    ),
    ("gate does not parse", {"gate": "f1 >= parent -"}, GateRuleError, ["cannot parse"]),
    (
        "gate names an unknown metric",
        {"gate": "rmse < parent"},
        GateRuleError,
        ["unknown metric 'rmse'", "accuracy, auc, f1, precision, recall"],
    ),
    ("unknown strategy", {"strategy": "magic"}, UsageError, ["magic", "batch", "incremental"]),
    ("custom without trainer", {"strategy": "custom"}, UsageError, ["trainer='module:function'"]),
    (
        "trainer that cannot be imported",
        {"strategy": "custom", "trainer": "trainers:no_such_trainer"},
        ImportError,
        ["trainers:no_such_trainer"],
    ),
    (
        "incremental on a random forest",
        {"rev": "forest", "strategy": "incremental"},
        NotIncrementalError,
        ["RandomForestClassifier", "strategy='batch'"],
    ),
    ("data file that does not exist", {"data": "nope.csv"}, DataFormatError, ["nope.csv"]),
    ("a dataset is not a model", {"rev": "train:1"}, UsageError, ["train:1"]),
]


@pytest.mark.parametrize(("case", "options", "error", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_leaves_no_version(
    bad_repo: modelkeep.Repo,
    data: Data,
    case: str,
    options: dict[str, Any],
    error: type[Exception],
    words: list[str],
) -> None:
    before = snapshot(bad_repo)
    opts: dict[str, Any] = {"data": data.cls_new, "target": TARGET, "gate": "f1 >= parent"}
    opts.update(options)
    if isinstance(opts["data"], str):
        opts["data"] = getattr(data, opts["data"], opts["data"])
    rev = opts.pop("rev", "churn@production")
    with pytest.raises(error) as info:
        bad_repo.update(rev, **opts)
    message = str(info.value)
    for word in words:
        assert word in message, f"{case}: {word!r} not in {message!r}"
    assert "\n" not in message
    assert snapshot(bad_repo) == before


def test_batch_refuses_a_training_file_that_changed(
    repo: modelkeep.Repo, data: Data, tmp_path: Path
) -> None:
    training = tmp_path / "train-copy.csv"
    training.write_bytes(data.cls_train.read_bytes())
    forest_parent(repo, data, training)
    frame = pd.read_csv(training)
    frame.loc[0, "tenure"] += 1.0
    frame.to_csv(training, index=False)
    before = snapshot(repo)
    with pytest.raises(UsageError) as info:
        repo.update("churn@production", data=data.cls_new, target=TARGET, strategy="batch")
    message = str(info.value)
    assert str(training.resolve()) in message
    assert "changed" in message
    assert "train='FILE'" in message  # what to do about it, as the Python API says it
    training.unlink()
    with pytest.raises(UsageError, match="gone or has changed"):
        repo.update("churn@production", data=data.cls_new, target=TARGET, strategy="batch")
    assert snapshot(repo) == before


# -- known bugs ---------------------------------------------------------------------------


def test_bad_promote_alias_leaves_no_version(repo: modelkeep.Repo, data: Data) -> None:
    sgd_parent(repo, data)
    before = snapshot(repo)
    with pytest.raises(InvalidNameError):
        repo.update(
            "churn@production",
            data=data.cls_new,
            target=TARGET,
            gate="f1 >= parent - 1",
            promote="bad alias!",
        )
    assert snapshot(repo) == before


def test_string_class_labels(repo: modelkeep.Repo, data: Data, tmp_path: Path) -> None:
    x, y = xy(data.cls_train)
    labels = np.where(y == 1, "yes", "no")
    model = SGDClassifier(loss="log_loss", random_state=0).fit(x, labels)
    repo.commit("churn", model, input_example=x.head())
    new = tmp_path / "new.csv"
    nx, ny = xy(data.cls_new)
    nx.assign(**{TARGET: np.where(ny == 1, "yes", "no")}).to_csv(new, index=False)
    result = repo.update("churn", data=new, target=TARGET, gate="accuracy >= parent - 0.05")
    assert result.passed


def test_auc_gate_on_model_without_probabilities(repo: modelkeep.Repo, data: Data) -> None:
    x, y = xy(data.cls_train)
    repo.commit("churn", SGDClassifier(random_state=0).fit(x, y), input_example=x.head())
    before = snapshot(repo)
    with pytest.raises(GateRuleError, match="auc"):
        repo.update("churn", data=data.cls_new, target=TARGET, gate="auc > 0.5")
    assert snapshot(repo) == before


# -- (7) the command line -----------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELKEEP_")}
    env.update(NO_COLOR="1", COLUMNS="200", **extra)
    return env


def test_cli_update_prints_before_after_table(repo: modelkeep.Repo, data: Data) -> None:
    """The real `modelkeep` command, as a user would type it."""
    sgd_parent(repo, data)
    proc = subprocess.run(
        [
            "modelkeep",
            "update",
            "churn@production",
            "--data",
            str(data.cls_new),
            "--target",
            TARGET,
            "--strategy",
            "incremental",
            "--gate",
            "f1 >= parent - 0.05",
            "--promote",
            "production",
        ],
        cwd=repo.root,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0] == "incremental update of churn:1 → churn:2 on main (PASSED)"
    header = lines[1].split()
    assert header == ["metric", "churn:1", "churn:2", "change"]
    cand = repo.resolve("churn:2")
    parent_scores = cand.annotations["update"]["metrics"]["parent"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:7]}
    assert set(rows) == {"accuracy", "f1", "precision", "recall", "auc"}
    for name, (before, after, change) in rows.items():
        assert float(before) == pytest.approx(parent_scores[name], abs=5e-5)
        assert float(after) == pytest.approx(cand.metrics[name], abs=5e-5)
        assert float(change) == pytest.approx(cand.metrics[name] - parent_scores[name], abs=5e-5)
    assert f"gate: f1 >= parent - 0.05  →  {cand.annotations['update']['reason']}" in lines
    assert lines[-1] == "promoted: churn@production → churn:2"
    assert repo.resolve("churn@production").rev == "churn:2"


def test_cli_update_json_and_rejection(repo: modelkeep.Repo, data: Data) -> None:
    sgd_parent(repo, data)
    runner = CliRunner()
    base = ["--repo", str(repo.root), "update", "churn@production", "--data", str(data.cls_new)]
    base += ["--target", TARGET]

    run = runner.invoke(app, [*base, "--gate", "f1 > parent + 1", "--promote", "production"])
    assert run.exit_code == 1, run.output
    assert "incremental update of churn:1 → churn:2 on candidates (REJECTED)" in run.stdout
    assert "kept on branch candidates with status rejected; the alias did not move" in run.stdout
    assert repo.resolve("churn@production").rev == "churn:1"

    run = runner.invoke(
        app, [*base, "--gate", "f1 >= parent - 0.05", "--promote", "production", "--json"]
    )
    assert run.exit_code == 0, run.output
    doc = json.loads(run.stdout)
    assert doc["passed"] is True
    assert doc["parent"] == "churn:1"
    assert doc["candidate"]["rev"] == "churn:3"
    assert doc["candidate"]["parents"] == [1]
    assert doc["promoted"] == "production"
    assert doc["gate"] == "f1 >= parent - 0.05"
    stored = repo.resolve("churn:3").annotations["update"]["metrics"]
    assert doc["parent_metrics"] == stored["parent"]
    assert doc["candidate_metrics"] == stored["candidate"]
    assert all(isinstance(v, float) for v in doc["candidate_metrics"].values())
    assert repo.resolve("churn@production").rev == "churn:3"

    before = snapshot(repo)
    run = runner.invoke(app, [*base, "--gate", "f2 > parent"])
    assert run.exit_code == 2
    assert run.stdout == ""
    assert run.stderr.count("\n") == 1
    assert run.stderr.startswith("error: gate rule 'f2 > parent', column 1: unknown metric 'f2'")
    assert snapshot(repo) == before


def test_cli_trainer_traceback_then_one_line_error(repo: modelkeep.Repo, data: Data) -> None:
    sgd_parent(repo, data)
    before = snapshot(repo)
    proc = subprocess.run(
        [
            "modelkeep",
            "--repo",
            str(repo.root),
            "update",
            "churn@production",
            "--data",
            str(data.cls_new),
            "--target",
            TARGET,
            "--strategy",
            "custom",
            "--trainer",
            "trainers:explode_in_trainer",
        ],
        env=_env(PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    err = proc.stderr.rstrip().splitlines()
    assert err[0] == "Traceback (most recent call last):"
    text = "\n".join(err)
    assert "in explode_in_trainer" in text
    assert "in _broken_helper" in text
    assert err[-2] == "RuntimeError: trainer bug: cannot handle 1200 rows"
    assert err[-1].startswith("error: the trainer raised RuntimeError: trainer bug")
    assert err[-1].endswith("nothing was committed")
    assert snapshot(repo) == before
