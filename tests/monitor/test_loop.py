"""The loop closes: a served version whose live quality drops is rolled back by policy.

A real server (uvicorn on 127.0.0.1, in a thread) follows churn@production; traffic
from the training distribution with true labels keeps it healthy; then labels that
show a quality drop arrive, and the policy rolls @production back within the
configured windows, with no failed request, and the event log says why.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

import modelkeep
from modelkeep.serve.run import serve_in_thread

# Feedback moves production (through policies): servers take labels only with a token.
TOKEN = "loop-test-feedback-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

if TYPE_CHECKING:
    from pathlib import Path

POLICY = """
[[rule]]
name = "quality drop"
metric = "f1"
below = "reference - 0.05"
windows = 2
action = "rollback"
cooldown = "0s"
"""
COLUMNS = ["a", "b", "c", "d"]


@pytest.fixture
def repo_root(tmp_path: Path) -> Path:
    x, y = make_classification(3000, 4, n_informative=3, n_redundant=0, random_state=0)
    frame = pd.DataFrame(x, columns=COLUMNS)
    frame["label"] = y
    train, test = frame[:2000], frame[2000:]
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    repo = modelkeep.Repo.init(tmp_path / "repo")
    for c in (1.0, 0.5):
        model = LogisticRegression(C=c).fit(train[COLUMNS], train["label"])
        f1 = f1_score(test["label"], model.predict(test[COLUMNS]))
        repo.commit(
            "churn",
            model,
            f"C={c}",
            input_example=test[COLUMNS].head(),
            data=[str(tmp_path / "train.csv")],
            target="label",
            metrics={"f1": f1},
        )
    repo.promote("churn:1", "production")
    repo.promote("churn:2", "production")
    repo.set_policy("churn", POLICY)
    return tmp_path


def _traffic(base: str, rows: pd.DataFrame, flip: bool, failures: list[str]) -> None:
    """Batches of 20 rows; the true labels (flipped when ``flip``) go back as feedback."""
    with httpx.Client(base_url=base, timeout=10, headers=AUTH) as client:
        for start in range(0, len(rows), 20):
            batch = rows.iloc[start : start + 20]
            r = client.post("/predict", json={"inputs": batch[COLUMNS].to_numpy().tolist()})
            if r.status_code != 200:
                failures.append(r.text)
                continue
            truth = batch["label"].to_numpy()
            if flip:
                truth = 1 - truth
            f = client.post(
                "/v2/models/churn/feedback", json={"id": r.json()["id"], "value": truth.tolist()}
            )
            if f.status_code != 200:
                failures.append(f.text)


def test_a_quality_drop_rolls_production_back(repo_root: Path) -> None:
    repo = modelkeep.Repo(repo_root / "repo")
    test = pd.read_csv(repo_root / "test.csv")
    failures: list[str] = []
    with serve_in_thread(
        repo_root / "repo",
        "churn@production",
        interval=0.1,
        window_rows=200,
        window_seconds=60.0,
        feedback_token=TOKEN,
    ) as (base, follower):
        # Healthy traffic: windows close, no rule fires.
        _traffic(base, test.iloc[:600], flip=False, failures=failures)
        time.sleep(0.5)
        assert repo.resolve("churn@production").number == 2
        assert follower.actions == []
        # Labels now disagree with the model: live f1 collapses.
        deadline = time.monotonic() + 30
        while repo.resolve("churn@production").number == 2 and time.monotonic() < deadline:
            _traffic(base, test.iloc[600:1000], flip=True, failures=failures)
            time.sleep(0.3)
        assert repo.resolve("churn@production").number == 1
        actions = list(follower.actions)
    assert failures == []
    assert len(actions) == 1
    assert actions[0]["rule"] == "quality drop"
    assert len(actions[0]["windows"]) == 2
    assert all(v < actions[0]["bound"] for v in actions[0]["values"])
    # The event log explains the move: the rollback names the rule and its evidence.
    rollback = next(e for e in repo.history("churn@production") if e.action == "rollback")
    assert "policy 'quality drop'" in rollback.message
    assert (rollback.before, rollback.after) == (2, 1)
    alert = next(e for e in repo.events("churn") if e.action == "monitor.alert")
    assert alert.details["windows"] == actions[0]["windows"]
    # Window reports were stored with the version, with live metrics.
    reports = repo.reports("churn:2")
    assert reports
    assert all(r["kind"] == "window" for r in reports)
    assert any("metrics" in r for r in reports)


def test_policy_files_are_validated(tmp_path: Path) -> None:
    repo = modelkeep.Repo.init(tmp_path)
    model = LogisticRegression().fit(np.eye(4), [0, 1, 0, 1])
    repo.commit("churn", model, "m")
    for bad, needle in (
        ("[[rule]]\nmetric = 'f1'\nbelow = 'reference - x'\n", "bound"),
        ("[[rule]]\nmetric = 'f1'\nbelow = 0.5\naction = 'explode'\n", "action"),
        ("[[rule]]\nbelow = 0.5\n", "metric"),
        ("[[rule]]\nmetric = 'f1'\nbelow = 0.5\nabove = 0.9\n", "exactly one"),
        ("rule = [", "TOML"),
        ("[[rule]]\nmetric = 'f1'\nbelow = 0.5\nwindows = 0\n", "windows"),
        ("[[rule]]\nmetric = 'f1'\nbelow = 0.5\nwhen = 1\n", "unknown key"),
    ):
        with pytest.raises(modelkeep.UsageError, match=needle):
            repo.set_policy("churn", bad)
    assert repo.policy("churn") is None
    assert not [e for e in repo.events("churn") if e.action == "policy.set"]
