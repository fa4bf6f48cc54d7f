"""Policies that could never fire are refused, with the metrics that exist; the help's
example is shown as written and attaches as it is."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

import modelkeep
from repo_state import snapshot


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("policies")
    repo = modelkeep.Repo.init(root)
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(100, 2)), columns=["a", "b"])
    repo.commit(
        "churn", LogisticRegression().fit(x, x["a"] > 0), "classifier", input_example=x.head()
    )
    repo.commit("price", LinearRegression().fit(x, x["a"] * 2), "regressor", input_example=x.head())
    (root / "plain.bin").write_bytes(b"not a model")
    repo.commit("blob", root / "plain.bin", "no task")
    return root


def _policy(root: Path, text: str, name: str = "policy.toml") -> Path:
    path = root / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize(
    ("model", "metric", "valid"),
    [
        ("churn", "f1_scor", "accuracy, auc, drift_share, f1, precision, recall"),
        ("churn", "rmse", "accuracy, auc, drift_share, f1, precision, recall"),
        ("price", "f1", "drift_share, mae, r2, rmse"),
        ("churn", "drift", "drift_share"),
    ],
)
def test_a_rule_on_a_metric_never_measured_is_refused_with_the_valid_ones(
    cli: Any, root: Path, model: str, metric: str, valid: str
) -> None:
    path = _policy(root, f'[[rule]]\nmetric = "{metric}"\nbelow = 0.5\n')
    before = snapshot(root)
    res = cli(root, "monitor", "policy", model, path)
    message = res.one_line_error()
    assert res.code == 2
    assert f"metric {metric!r} is never measured" in message
    assert valid in message
    assert snapshot(root) == before


@pytest.mark.parametrize(
    ("model", "metric"),
    [("churn", "f1"), ("price", "rmse"), ("blob", "drift_share"), ("blob", "accuracy")],
)
def test_metrics_the_task_measures_are_accepted(
    cli: Any, root: Path, model: str, metric: str
) -> None:
    path = _policy(root, f'[[rule]]\nmetric = "{metric}"\nabove = 0.5\n')
    res = cli(root, "monitor", "policy", model, path)
    assert res.code == 0, res.err


def test_the_python_api_validates_metric_names_too(root: Path) -> None:
    repo = modelkeep.Repo(root)
    with pytest.raises(modelkeep.UsageError, match="use one of drift_share, mae, r2, rmse"):
        repo.set_policy("price", "rules:\n  - metric: accuracy\n    below: 0.9\n", fmt="yaml")


def test_a_missing_policy_file_is_not_found_and_a_folder_is_bad_input(cli: Any, root: Path) -> None:
    missing = cli(root, "monitor", "policy", "churn", root / "nope.toml")
    assert missing.code == 3
    assert "no such policy file" in missing.one_line_error()
    folder = cli(root, "monitor", "policy", "churn", root)
    assert folder.code == 2
    assert "is a folder" in folder.one_line_error()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "rules:\n  - metric: f1\n    below: 0.5\n    windows: " + "9" * 5000 + "\n",
            "more digits than a policy needs",
        ),
        ("rules:\n  - metric: f1\n    below: " + "9" * 5000 + "\n", "more digits"),
        ("rules:\n  - metric: f1\n    below: 0.5\n    cooldown: 99999999999d\n", "cooldown"),
        ('rules:\n  - metric: f1\n    below: "reference - \u0660.1"\n', "must be a number"),
        (
            "rules:\n  - metric: f1\n    below: 0.5\n    name: " + "x" * 5000 + "\n",
            "name must be text",
        ),
        (
            "rules:\n  - metric: f1\n    below: 0.5\n    action: update\n    min_rows: "
            + "9" * 30
            + "\n",
            "min_rows must be a whole number",
        ),
    ],
)
def test_numbers_in_policies_are_bounded(cli: Any, root: Path, text: str, fragment: str) -> None:
    path = _policy(root, text, "policy.yaml")
    before = snapshot(root)
    res = cli(root, "monitor", "policy", "churn", path)
    assert res.code == 2
    message = res.one_line_error()
    assert fragment in message
    assert len(message) < 400
    assert snapshot(root) == before


def test_the_help_shows_its_example_as_written_and_it_attaches(cli: Any, root: Path) -> None:
    help_text = cli(root, "monitor", "policy", "--help").out
    block = [line for line in help_text.splitlines() if line.startswith("      ")]
    example = textwrap.dedent("\n".join(block))
    # Each key on its own line, its comment after it: not run together by rewrapping.
    for key in (
        "name",
        "metric",
        "below",
        "windows",
        "action",
        "cooldown",
        "webhook",
        "above",
        "strategy",
        "gate",
    ):
        assert re.search(rf"^{key} = ", example, re.M), f"{key} is not on a line of its own"
    assert example.count("[[rule]]") == 2
    res = cli(root, "monitor", "policy", "churn", _policy(root, example), "--json")
    assert res.code == 0, res.err
    assert [rule["name"] for rule in __import__("json").loads(res.out)] == [
        "quality drop",
        "features drift",
    ]


@pytest.mark.local_engine  # policy files lived in a folder's .modelkeep/policies
def test_policy_files_of_an_older_release_are_imported_once(tmp_path: Path) -> None:
    """Policies were files under .modelkeep/policies: opening the repository moves them
    into the registry (every process then reads the same), and keeps the files aside."""
    root = tmp_path / "repo"
    with modelkeep.Repo.init(root) as repo:
        rng = np.random.default_rng(0)
        x = pd.DataFrame(rng.normal(size=(50, 2)), columns=["a", "b"])
        repo.commit("churn", LogisticRegression().fit(x, x["a"] > 0), "m")
    folder = root / ".modelkeep" / "policies"
    folder.mkdir()
    (folder / "churn.yaml").write_text("rules:\n  - metric: f1\n    below: 0.5\n")
    (folder / "gone.toml").write_text('[[rule]]\nmetric = "f1"\nbelow = 0.5\n')  # no model
    with modelkeep.Repo(root) as repo:
        assert [r.metric for r in repo.policy("churn") or []] == ["f1"]
        assert repo.registry.policy("churn") == (
            "rules:\n  - metric: f1\n    below: 0.5\n",
            "yaml",
        )
        imported = [e for e in repo.events("churn") if e.action == "policy.set"]
        assert len(imported) == 1
    assert not folder.exists()
    assert sorted(p.name for p in (root / ".modelkeep" / "policies.imported").iterdir()) == [
        "churn.yaml",
        "gone.toml",
    ]
    with modelkeep.Repo(root) as repo:  # once: nothing more to import
        assert len([e for e in repo.events("churn") if e.action == "policy.set"]) == 1
