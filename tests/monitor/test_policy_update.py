"""Policies in YAML, and the ``update`` action: drift in live traffic triggers an
incremental update on the labelled traffic, gated, promoted, hot-swapped — with the
whole story in the event log and the candidate's lineage."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import SGDClassifier

import modelkeep
from modelkeep.serve.run import serve_in_thread

# Feedback moves production (through policies): servers take labels only with a token.
TOKEN = "policy-update-test-feedback-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

if TYPE_CHECKING:
    from pathlib import Path

COLUMNS = ["a", "b", "c", "d"]
POLICY_YAML = """
rules:
  - name: features drift
    metric: drift_share
    above: 0.3
    windows: 2
    action: update
    strategy: incremental
    gate: accuracy >= parent + 0.05
    min_rows: 200
    cooldown: 1h
"""


def _data(n: int, shift: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(shift, 1.0, (n, 4)), columns=COLUMNS)
    # The concept moves with the inputs: the boundary sits at the new centre.
    frame["label"] = (frame["a"] + frame["b"] > 2 * shift).astype(int)
    return frame


@pytest.fixture
def repo_root(tmp_path: Path) -> Path:
    train = _data(2000, 0.0, 0)
    train.to_csv(tmp_path / "train.csv", index=False)
    model = SGDClassifier(random_state=0).fit(train[COLUMNS], train["label"])
    repo = modelkeep.Repo.init(tmp_path / "repo")
    repo.commit(
        "churn",
        model,
        "first",
        input_example=train[COLUMNS].head(),
        data=[str(tmp_path / "train.csv")],
        target="label",
    )
    repo.promote("churn:1", "production")
    repo.set_policy("churn", POLICY_YAML, fmt="yaml")
    return tmp_path


def test_drift_triggers_a_gated_update_that_is_promoted(repo_root: Path) -> None:
    repo = modelkeep.Repo(repo_root / "repo")
    shifted = _data(3000, 3.0, 1)
    failures: list[str] = []
    with (
        serve_in_thread(
            repo_root / "repo",
            "churn@production",
            interval=0.1,
            window_rows=100,
            feedback_token=TOKEN,
        ) as (base, follower),
        httpx.Client(base_url=base, timeout=30, headers=AUTH) as client,
    ):
        deadline = time.monotonic() + 60
        start = 0
        while repo.resolve("churn@production").number == 1 and time.monotonic() < deadline:
            batch = shifted.iloc[start % 3000 : start % 3000 + 50]
            start += 50
            r = client.post("/predict", json={"inputs": batch[COLUMNS].to_numpy().tolist()})
            if r.status_code != 200:
                failures.append(r.text)
                continue
            f = client.post(
                "/v2/models/churn/feedback",
                json={"id": r.json()["id"], "value": batch["label"].tolist()},
            )
            if f.status_code != 200:
                failures.append(f.text)
            time.sleep(0.02)
        production = repo.resolve("churn@production")
        # The server hot-swaps to the new version without a failed request.
        while time.monotonic() < deadline:
            r = client.post("/predict", json={"inputs": shifted[COLUMNS].head(2).values.tolist()})
            if r.headers["X-Model-Version"] == production.rev:
                break
            time.sleep(0.1)
        assert r.headers["X-Model-Version"] == production.rev
        actions = list(follower.actions)
    assert failures == []
    assert production.number == 2
    assert production.kind == "update.incremental"
    lineage = production.annotations["update"]
    assert lineage["verdict"] == "passed"
    assert lineage["datasets"][0] == "churn-feedback:1"
    feedback = repo.resolve("churn-feedback:1")
    assert feedback.format == "dataset"
    # The event log tells the story: the alert with its windows, then the update.
    alert = next(e for e in repo.events("churn") if e.action == "monitor.alert")
    assert alert.details["action"] == "update"
    assert len(alert.details["windows"]) == 2
    assert all(v > 0.3 for v in alert.details["values"])
    done = next(e for e in repo.events("churn") if e.action == "monitor.update")
    assert "churn:2 passed its gate and is now @production" in done.message
    assert done.details["windows"] == alert.details["windows"]
    assert [a["outcome"] for a in actions][-1].startswith("updated: churn:2")
    # The alias move itself names the policy.
    move = next(e for e in repo.history("churn@production") if e.after == 2)
    assert "update passed its gate" in move.message


def test_update_without_enough_labels_waits(repo_root: Path) -> None:
    from modelkeep.monitor.actions import update_from_feedback
    from modelkeep.monitor.policy import parse

    repo = modelkeep.Repo(repo_root / "repo")
    rule = parse(POLICY_YAML, fmt="yaml")[0]
    rows = _data(50, 3.0, 2)
    labelled = [(1, rows[COLUMNS].to_numpy(), rows["label"].to_numpy())]
    outcome, details = update_from_feedback(
        repo._e, "churn", "production", rule, labelled, COLUMNS, "test", "churn:1"
    )
    assert outcome == "no update: 50 labelled row(s), the rule needs 200"
    assert details == {}
    assert [v.number for v in repo.log("churn")] == [1]
    assert "churn-feedback" not in {m.name for m in repo.models()}


def test_yaml_and_toml_policies_read_the_same(tmp_path: Path) -> None:
    from modelkeep.monitor.policy import parse

    toml = """
[[rule]]
name = "features drift"
metric = "drift_share"
above = 0.3
windows = 2
action = "update"
strategy = "incremental"
gate = "accuracy >= parent + 0.05"
min_rows = 200
cooldown = "1h"
"""
    assert parse(toml, fmt="toml") == parse(POLICY_YAML, fmt="yaml") == parse(POLICY_YAML)
    repo = modelkeep.Repo.init(tmp_path)
    repo.commit("churn", SGDClassifier().fit(np.eye(4), [0, 1, 0, 1]), "m")
    repo.set_policy("churn", POLICY_YAML)
    assert repo.registry.policy("churn") == (POLICY_YAML, "yaml")
    assert repo.policy("churn") == parse(toml)
    # Switching format replaces the policy: the old one never shadows the new.
    repo.set_policy("churn", toml.replace("0.3", "0.4"))
    assert repo.registry.policy("churn") == (toml.replace("0.3", "0.4"), "toml")
    rules = repo.policy("churn")
    assert rules is not None
    assert rules[0].above == "0.4"


@pytest.mark.parametrize(
    ("text", "fmt", "needle"),
    [
        (
            "rules:\n  - metric: f1\n    below: 0.5\n    action: update\n    strategy: magic\n",
            "yaml",
            "strategy 'magic'",
        ),
        (
            "rules:\n  - metric: f1\n    below: 0.5\n    action: update\n    gate: f1 >>= 1\n",
            "yaml",
            "cannot parse gate rule",
        ),
        (
            "rules:\n  - metric: f1\n    below: 0.5\n    action: update\n    min_rows: 3\n",
            "yaml",
            "min_rows",
        ),
        (
            "rules:\n  - metric: f1\n    below: 0.5\n    action: update\n    promote: maybe\n",
            "yaml",
            "promote",
        ),
        (
            "rules:\n  - metric: f1\n    below: 0.5\n    gate: f1 >= parent\n",
            "yaml",
            'only apply to action = "update"',
        ),
        ("rules: [\n", "yaml", "not valid YAML"),
        ("- just\n- a list\n", "yaml", "mapping"),
        ("rules:\n  - metric: f1\n    below: 0.5\nextra: 1\n", "yaml", "top-level"),
        (
            "rules:\n  - {name: x, metric: f1, below: 0.5}\n"
            "  - {name: x, metric: f1, above: 0.9}\n",
            "yaml",
            "used twice",
        ),
        ("rules = [", None, "neither TOML"),
    ],
)
def test_bad_policies_are_refused_and_change_nothing(
    tmp_path: Path, text: str, fmt: str | None, needle: str
) -> None:
    repo = modelkeep.Repo.init(tmp_path)
    repo.commit("churn", SGDClassifier().fit(np.eye(4), [0, 1, 0, 1]), "m")
    with pytest.raises(modelkeep.UsageError, match=needle):
        repo.set_policy("churn", text, fmt=fmt)
    assert repo.policy("churn") is None
    assert not [e for e in repo.events("churn") if e.action == "policy.set"]
