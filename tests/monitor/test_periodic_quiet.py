"""Monitoring says what happened, and only that.

- `monitor run` on a model fitted on bare arrays prints no library warning: the batch
  (a table with named columns) reaches the model as it was fitted (scikit-learn
  otherwise warns "X has feature names, but LogisticRegression was fitted without
  feature names" at every check — a warning about our plumbing, not the user's data).
- A policy's update that was refused because the new data contradicts the version
  (``UpdateResult.contradiction``) is reported as that, not as a failed gate.
"""

from __future__ import annotations

import json
import warnings
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

import modelkeep

if TYPE_CHECKING:
    from collections.abc import Callable

    from inprocess_cli import Result

FEATURES = ["a", "b", "c"]


def table(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(rows, 3)), columns=FEATURES)
    return x.assign(label=(x["a"] + 0.5 * x["b"] > 0).astype(np.int64))


@pytest.fixture(scope="module")
def arrays_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository whose model was fitted on a NumPy array (no feature names), with
    a reference profile from a CSV (which has them)."""
    from sklearn.linear_model import LogisticRegression

    base = tmp_path_factory.mktemp("quiet")
    train = table(400, 0)
    train.to_csv(base / "train.csv", index=False)
    # Rows of the training data: no drift, whatever the seed.
    train.sample(200, random_state=1).to_csv(base / "batch.csv", index=False)
    model = LogisticRegression().fit(train[FEATURES].to_numpy(), train["label"].to_numpy())
    assert not hasattr(model, "feature_names_in_")
    root = base / "repo"
    with modelkeep.Repo.init(root) as repo:
        repo.commit("churn", model, "on arrays", data=[base / "train.csv"], target="label")
    return root


@pytest.mark.parametrize("target", [[], ["--target", "label"]], ids=["inputs", "labelled"])
def test_monitor_run_prints_no_warning(
    arrays_model: Path, cli: Callable[..., Result], target: list[str]
) -> None:
    batch = arrays_model.parent / "batch.csv"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = cli(arrays_model, "monitor", "run", "churn", "--data", batch, "--json", *target)
    assert [str(w.message) for w in caught] == []
    assert res.code == 0, res.err  # no drift
    assert res.err == ""
    body = json.loads(res.out)
    assert body["drift"]["drifted"] is False
    if target:
        assert body["metrics"]["accuracy"] > 0.9


def test_contradicting_data_is_reported_as_such(tmp_path: Path) -> None:
    """A scheduled check whose policy updates the model on a batch with flipped labels:
    the update is refused for contradicting data, and the outcome says so, not that a
    gate failed (the gate never decided)."""
    from sklearn.linear_model import SGDClassifier

    from modelkeep.monitor.schedule import format_template

    train = table(600, 0)
    train.to_csv(tmp_path / "train.csv", index=False)
    model = SGDClassifier(random_state=0).fit(train[FEATURES], train["label"])
    with modelkeep.Repo.init(tmp_path / "repo") as repo:
        repo.commit(
            "churn",
            model,
            "baseline",
            data=[tmp_path / "train.csv"],
            target="label",
            input_example=train[FEATURES].head(),
            metrics={"accuracy": 0.95},
        )
        repo.promote("churn:1", "production")
        repo.set_policy(
            "churn",
            """
rules:
  - name: quality
    metric: accuracy
    below: 0.5
    windows: 1
    action: update
    strategy: incremental
    min_rows: 10
    cooldown: 0s
""",
            fmt="yaml",
        )
        schedule = repo.schedule(
            "churn@production", "1h", str(tmp_path / "batch-{datetime}.csv"), target="label"
        )
        slot = int(schedule.next_due.timestamp())
        flipped = table(300, 2).assign(label=lambda f: 1 - f["label"])  # a broken join
        flipped.to_csv(format_template(schedule.data, slot), index=False)
        (run,) = repo.run_due(now=schedule.next_due + timedelta(seconds=1))
        assert run.ok, run.error
        (action,) = run.actions
        assert action.startswith("quality → update refused: the new data contradicts churn:1 (")
        assert "accuracy recorded 0.95, measured" in action
        assert "failed its gate" not in action
        assert "@production did not move" in action
        assert repo.resolve("churn@production").number == 1
        (alert,) = [e for e in repo.events("churn") if e.action == "monitor.alert"]
        assert alert.details["update"]["contradiction"][0].startswith("accuracy recorded 0.95")
