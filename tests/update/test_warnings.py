"""`update` says nothing in a library's words that the user cannot act on.

A model fitted on a bare array made scikit-learn warn "X has feature names, but ...
was fitted without feature names" at every prediction and every ``partial_fit`` the
update made (it always passes tables). A training run that does not converge is worth
knowing, and is said once, as a note of modelkeep's. A user's own trainer keeps its
voice. pytest turns any warning into an error here, so the API tests below fail on any
leak.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, SGDClassifier

import modelkeep

if TYPE_CHECKING:
    from collections.abc import Iterator

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

FEATURES = ["a", "b", "c"]
TARGET = "label"


def table(rows: int, seed: int, *, flip: bool = False, scale: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(FEATURES))) * scale
    y = (x[:, 0] + x[:, 1] + rng.normal(scale=0.3 * scale, size=rows) > 0).astype(int)
    return pd.DataFrame(x, columns=FEATURES).assign(**{TARGET: 1 - y if flip else y})


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[modelkeep.Repo]:
    with modelkeep.Repo.init(tmp_path / "repo") as r:
        yield r


def commit_array_model(repo: modelkeep.Repo, tmp_path: Path, model: Any) -> None:
    """churn:1 at @production: ``model`` fitted on a bare array, its accuracy recorded."""
    train = table(1000, 0)
    train.to_csv(tmp_path / "train.csv", index=False)
    model.fit(train[FEATURES].to_numpy(), train[TARGET].to_numpy())
    accuracy = model.score(train[FEATURES].to_numpy(), train[TARGET].to_numpy())
    repo.commit(
        "churn",
        model,
        "fitted on an array",
        data=[str(tmp_path / "train.csv")],
        target=TARGET,
        input_example=train[FEATURES].head(),
        metrics={"accuracy": accuracy},
    )
    repo.promote("churn:1", "production")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELKEEP_", "PYTHONWARN"))}
    env.update(NO_COLOR="1", COLUMNS="1000")
    return env


@pytest.mark.parametrize("flip", [False, True], ids=["fresh data", "flipped labels"])
def test_cli_update_of_an_array_fitted_model_prints_no_warning(
    repo: modelkeep.Repo, tmp_path: Path, flip: bool
) -> None:
    """The real command, with Python's default warning filters (what a user sees)."""
    commit_array_model(repo, tmp_path, LogisticRegression())
    table(1000, 1, flip=flip).to_csv(tmp_path / "new.csv", index=False)
    proc = subprocess.run(
        [
            "modelkeep",
            "update",
            "churn@production",
            "--data",
            str(tmp_path / "new.csv"),
            "--target",
            TARGET,
            "--strategy",
            "batch",
            "--gate",
            "accuracy >= parent - 0.01",
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
    assert "Warning" not in proc.stderr
    assert proc.stderr == ""
    assert proc.returncode == (1 if flip else 0), proc.stdout
    assert ("contradicts churn:1" in proc.stdout) is flip


def test_array_fitted_models_update_quietly(repo: modelkeep.Repo, tmp_path: Path) -> None:
    """Incremental (partial_fit) and batch (a fresh fit) alike; the candidate takes
    its input as the parent did."""
    commit_array_model(repo, tmp_path, SGDClassifier(loss="log_loss", random_state=0))
    new = tmp_path / "new.csv"
    table(1000, 1).to_csv(new, index=False)
    inc = repo.update("churn@production", data=new, target=TARGET, gate="f1 >= parent - 0.1")
    assert inc.passed
    batch = repo.update(
        "churn@production", data=new, target=TARGET, strategy="batch", gate="f1 >= parent - 0.1"
    )
    assert batch.passed
    for rev in ("churn:2", "churn:3"):
        candidate = repo.load(rev)
        assert not hasattr(candidate, "feature_names_in_")
        candidate.predict(table(5, 9)[FEATURES].to_numpy())  # no warning: fitted on arrays
    assert inc.notes == ()
    assert batch.notes == ()
    # churn:3's update is checked on churn:2's validation data: quietly too.
    later = repo.update("churn:3", data=new, target=TARGET, gate="f1 >= parent - 0.1")
    assert later.validation is not None


def test_no_convergence_is_a_note_said_once(repo: modelkeep.Repo, tmp_path: Path) -> None:
    with pytest.warns(ConvergenceWarning):
        commit_array_model(repo, tmp_path, LogisticRegression(max_iter=1))
    new = tmp_path / "new.csv"
    table(1000, 1, scale=100.0).to_csv(new, index=False)
    result = repo.update(
        "churn@production",
        data=new,
        target=TARGET,
        strategy="batch",
        gate="accuracy >= 0",
    )
    assert len(result.notes) == 1
    assert result.notes[0].startswith("training did not converge")
    assert result.candidate.annotations["update"]["notes"] == list(result.notes)
    assert result.to_dict()["notes"] == list(result.notes)


def test_a_trainers_own_warning_reaches_the_user(repo: modelkeep.Repo, tmp_path: Path) -> None:
    commit_array_model(repo, tmp_path, LogisticRegression())
    new = tmp_path / "new.csv"
    table(1000, 1).to_csv(new, index=False)
    with pytest.warns(UserWarning, match="trainer says: check your features"):
        result = repo.update(
            "churn@production",
            data=new,
            target=TARGET,
            strategy="custom",
            trainer="trainers:warn_then_refit",
            gate="accuracy >= 0",
        )
    assert result.notes == ()
