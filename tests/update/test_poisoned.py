"""Data that contradicts the model must not slip through the gate.

A batch with flipped labels gives a holdout cut from the same poisoned rows: the
parent scores far below its recorded metrics on it, and a relative rule such as
``accuracy >= parent - 0.01`` compares the candidate with that meaningless baseline
and passes. The update must see the contradiction and refuse to promote without an
explicit override. And a candidate must also hold up on the parent's validation data
(the holdout of the update that made the parent), not only on the new holdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from typer.testing import CliRunner

import modelkeep
from modelkeep.cli.app import app
from modelkeep.errors import UsageError
from modelkeep.evaluation import CLASSIFICATION, REGRESSION
from modelkeep.update import Gate
from modelkeep.update.gate import CONTRADICTION_DROP, CONTRADICTION_RATIO, contradictions

if TYPE_CHECKING:
    from collections.abc import Iterator

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

FEATURES = ["a", "b", "c"]
TARGET = "label"
GATE = "accuracy >= parent - 0.01"


def table(rows: int, seed: int, *, c_weight: float = 0.0, flip: bool = False) -> pd.DataFrame:
    """Nearly separable rows: label = a + b (+ c_weight * c) + noise > 0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(FEATURES)))
    noise = rng.normal(scale=0.3, size=rows)
    y = (x[:, 0] + x[:, 1] + c_weight * x[:, 2] + noise > 0).astype(int)
    if flip:
        y = 1 - y
    return pd.DataFrame(x, columns=FEATURES).assign(**{TARGET: y})


def write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[modelkeep.Repo]:
    with modelkeep.Repo.init(tmp_path / "repo") as r:
        yield r


def parent(repo: modelkeep.Repo, tmp_path: Path) -> tuple[LogisticRegression, float]:
    """churn:1 at churn@production: a LogisticRegression with its accuracy recorded."""
    train = table(1000, 0)
    check = table(500, 2)
    model = LogisticRegression().fit(train[FEATURES], train[TARGET])
    accuracy = float(model.score(check[FEATURES], check[TARGET]))
    assert 0.9 < accuracy < 0.95
    repo.commit(
        "churn",
        model,
        "baseline",
        data=[str(write(train, tmp_path / "train.csv"))],
        target=TARGET,
        input_example=train[FEATURES].head(),
        metrics={"accuracy": accuracy},
    )
    repo.promote("churn:1", "production")
    return model, accuracy


# -- flipped labels --------------------------------------------------------------------


def test_flipped_labels_are_not_promoted(repo: modelkeep.Repo, tmp_path: Path) -> None:
    _, recorded = parent(repo, tmp_path)
    flipped = write(table(1000, 1, flip=True), tmp_path / "flipped.csv")
    result = repo.update(
        "churn@production",
        data=flipped,
        target=TARGET,
        strategy="batch",
        gate=GATE,
        promote="production",
    )
    # The parent collapses on the poisoned holdout; the rule alone would have passed.
    measured = result.parent_metrics["accuracy"]
    assert measured < 0.2
    assert (
        Gate(GATE, CLASSIFICATION).evaluate(result.candidate_metrics, result.parent_metrics).passed
    )

    assert not result.passed
    assert result.promoted is None
    assert repo.resolve("churn@production").rev == "churn:1"
    cand = result.candidate
    assert (cand.rev, cand.branch, cand.status) == ("churn:2", "candidates", "rejected")
    assert cand.message == "batch update of churn:1: contradicted by the new data"
    assert result.contradiction == (f"accuracy recorded {recorded:.4g}, measured {measured:.4g}",)
    assert not result.accepted_contradiction
    assert "the new data contradicts churn:1" in result.reason
    assert f"accuracy recorded {recorded:.4g}, measured {measured:.4g}" in result.reason
    assert "accept_contradicting_data=True" in result.reason
    assert "\n" not in result.reason
    update = cand.annotations["update"]
    assert update["verdict"] == "rejected"
    assert update["reason"] == result.reason
    assert update["contradiction"] == {
        "metrics": list(result.contradiction),
        "drop": CONTRADICTION_DROP,
        "ratio": CONTRADICTION_RATIO,
        "accepted": False,
    }
    assert result.to_dict()["contradiction"] == list(result.contradiction)

    # The explicit override lets the gate decide: it passes, and the alias moves.
    forced = repo.update(
        "churn@production",
        data=flipped,
        target=TARGET,
        strategy="batch",
        gate=GATE,
        promote="production",
        accept_contradicting_data=True,
    )
    assert forced.passed
    assert forced.accepted_contradiction
    assert forced.promoted == "production"
    assert (forced.candidate.rev, forced.candidate.branch) == ("churn:3", "main")
    assert repo.resolve("churn@production").rev == "churn:3"
    assert "accepted by explicit override" in forced.reason
    assert forced.candidate.annotations["update"]["contradiction"]["accepted"] is True


def test_the_override_still_needs_the_gate(repo: modelkeep.Repo, tmp_path: Path) -> None:
    parent(repo, tmp_path)
    flipped = write(table(1000, 1, flip=True), tmp_path / "flipped.csv")
    result = repo.update(
        "churn@production",
        data=flipped,
        target=TARGET,
        strategy="batch",
        gate="accuracy > parent + 0.5",
        promote="production",
        accept_contradicting_data=True,
    )
    assert not result.passed
    assert repo.resolve("churn@production").rev == "churn:1"


def test_the_threshold_can_be_moved(repo: modelkeep.Repo, tmp_path: Path) -> None:
    parent(repo, tmp_path)
    flipped = write(table(1000, 1, flip=True), tmp_path / "flipped.csv")
    lenient = repo.update(
        "churn@production",
        data=flipped,
        target=TARGET,
        strategy="batch",
        gate=GATE,
        contradiction_drop=1.0,
    )
    assert lenient.contradiction == ()
    assert lenient.passed
    for drop, ratio in ((-0.1, 2.0), (0.2, 0.5), (float("nan"), 2.0)):
        with pytest.raises(UsageError, match="contradiction_drop must be >= 0"):
            repo.update(
                "churn@production",
                data=flipped,
                target=TARGET,
                contradiction_drop=drop,
                contradiction_ratio=ratio,
            )


def test_honest_new_data_is_not_a_contradiction(repo: modelkeep.Repo, tmp_path: Path) -> None:
    parent(repo, tmp_path)
    fresh = write(table(1000, 1), tmp_path / "fresh.csv")
    result = repo.update("churn@production", data=fresh, target=TARGET, strategy="batch", gate=GATE)
    assert result.contradiction == ()
    assert result.passed
    assert "contradiction" not in result.candidate.annotations["update"]


def test_cli_refuses_contradicting_data_unless_told(
    repo: modelkeep.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent(repo, tmp_path)
    flipped = write(table(1000, 1, flip=True), tmp_path / "flipped.csv")
    monkeypatch.setenv("COLUMNS", "1000")
    runner = CliRunner()
    base = ["--repo", str(repo.root), "update", "churn@production", "--data", str(flipped)]
    base += ["--target", TARGET, "--strategy", "batch", "--gate", GATE]
    base += ["--promote", "production"]

    run = runner.invoke(app, base)
    assert run.exit_code == 1, run.output
    assert "churn:1 → churn:2 on candidates (REJECTED)" in run.stdout
    assert "the new data contradicts churn:1: accuracy recorded" in run.stdout
    assert "--accept-contradicting-data" in run.stdout
    assert repo.resolve("churn@production").rev == "churn:1"

    # --json says the same, and exits as the table does.
    run = runner.invoke(app, [*base, "--json"])
    assert run.exit_code == 1, run.output
    doc = json.loads(run.stdout)
    assert doc["passed"] is False
    assert doc["contradiction"][0].startswith("accuracy recorded")
    assert repo.resolve("churn@production").rev == "churn:1"

    run = runner.invoke(app, [*base, "--accept-contradicting-data"])
    assert run.exit_code == 0, run.output
    assert "promoted: churn@production → churn:4" in run.stdout
    assert repo.resolve("churn@production").rev == "churn:4"


# -- the parent's validation data -----------------------------------------------------


def test_candidate_that_regresses_on_the_parents_validation_data_is_rejected(
    repo: modelkeep.Repo, tmp_path: Path
) -> None:
    parent(repo, tmp_path)
    first = table(1000, 5)
    opts: dict[str, Any] = {
        "target": TARGET,
        "strategy": "custom",
        "trainer": "trainers:refit_on_new",
        "gate": GATE,
        "promote": "production",
    }
    # churn:2: an update of churn:1 (a plain commit: no validation data to check on).
    one = repo.update("churn@production", data=write(first, tmp_path / "one.csv"), **opts)
    assert one.passed
    assert one.validation is None
    assert one.holdout_dataset == "churn-holdout:1"
    # What was stored is exactly the holdout the update scored on.
    _, x_hold, _, y_hold = train_test_split(
        first[FEATURES], first[TARGET], test_size=0.2, random_state=0
    )
    stored = repo.load("churn-holdout:1")
    pd.testing.assert_frame_equal(
        stored, pd.concat([x_hold, y_hold], axis=1).reset_index(drop=True)
    )

    # churn:3: more of the same; checked on churn:2's validation data, and fine there.
    two = repo.update("churn@production", data=write(table(1000, 6), tmp_path / "two.csv"), **opts)
    assert two.passed
    assert two.validation is not None
    assert (two.validation.data, two.validation.rows) == ("churn-holdout:1", 200)
    assert two.validation.passed
    assert two.holdout_dataset == "churn-holdout:2"
    assert repo.resolve("churn@production").rev == "churn:3"

    # churn:4: the concept moved a little (c now matters). Refitted on it, the candidate
    # beats churn:3 on the new holdout — but it got worse on what churn:3 was validated on.
    moved = write(table(1000, 7, c_weight=0.8), tmp_path / "moved.csv")
    three = repo.update("churn@production", data=moved, **opts)
    assert three.contradiction == ()  # a moderate change, not a contradiction
    assert three.candidate_metrics["accuracy"] > three.parent_metrics["accuracy"] + 0.05
    assert three.validation is not None
    val = three.validation
    assert val.data == "churn-holdout:2"
    assert val.candidate_metrics["accuracy"] < val.parent_metrics["accuracy"] - 0.05
    assert not val.passed
    assert not three.passed
    assert three.promoted is None
    assert (three.candidate.branch, three.candidate.status) == ("candidates", "rejected")
    assert repo.resolve("churn@production").rev == "churn:3"
    assert "on churn:3's validation data churn-holdout:2: accuracy" in three.reason
    assert three.reason.endswith(": no")

    # Both evaluations are recomputed here on the stored rows, and recorded.
    validation_rows = repo.load("churn-holdout:2")
    x_val, y_val = validation_rows[FEATURES], validation_rows[TARGET]
    assert val.parent_metrics["accuracy"] == pytest.approx(repo.load("churn:3").score(x_val, y_val))
    assert val.candidate_metrics["accuracy"] == pytest.approx(
        repo.load("churn:4").score(x_val, y_val)
    )
    update = three.candidate.annotations["update"]
    assert update["validation"] == val.to_dict()
    assert update["holdout"]["dataset"] == "churn-holdout:3"


def test_cli_shows_both_evaluations(
    repo: modelkeep.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent(repo, tmp_path)
    monkeypatch.setenv("COLUMNS", "1000")
    runner = CliRunner()
    # "churn": the head of main, so the second update starts from the first's candidate.
    base = ["--repo", str(repo.root), "update", "churn", "--target", TARGET]
    base += ["--strategy", "custom", "--trainer", "trainers:refit_on_new", "--gate", GATE]
    one = write(table(1000, 5), tmp_path / "one.csv")
    run = runner.invoke(app, [*base, "--data", str(one)])
    assert run.exit_code == 0, run.output
    assert "validation data" not in run.stdout  # churn:1 has none
    moved = write(table(1000, 7, c_weight=0.8), tmp_path / "moved.csv")
    run = runner.invoke(app, [*base, "--data", str(moved)])
    assert run.exit_code == 1, run.output
    lines = run.stdout.splitlines()
    assert lines[0] == "custom update of churn:2 → churn:3 on candidates (REJECTED)"
    assert lines[1] == "on the new holdout (200 rows):"
    assert lines[2].split() == ["metric", "churn:2", "churn:3", "change"]
    heading = lines.index("on churn:2's validation data churn-holdout:1 (200 rows):")
    assert lines[heading + 1].split() == ["metric", "churn:2", "churn:3", "change"]
    val = repo.resolve("churn:3").annotations["update"]["validation"]
    row = lines[heading + 2].split()
    assert row[0] == "accuracy"
    assert float(row[1]) == pytest.approx(val["parent_metrics"]["accuracy"], abs=5e-5)
    assert float(row[2]) == pytest.approx(val["candidate_metrics"]["accuracy"], abs=5e-5)


# -- the contradiction rule itself ---------------------------------------------------------


@pytest.mark.parametrize(
    ("recorded", "measured", "found"),
    [
        ({"accuracy": 0.925}, {"accuracy": 0.075}, ["accuracy recorded 0.925, measured 0.075"]),
        ({"accuracy": 0.9}, {"accuracy": 0.7}, []),  # exactly the threshold: not more
        ({"accuracy": 0.9}, {"accuracy": 0.69}, ["accuracy recorded 0.9, measured 0.69"]),
        ({"f1": 0.8, "auc": 0.9}, {"f1": 0.75, "auc": 0.5}, ["auc recorded 0.9, measured 0.5"]),
        ({"r2": 0.9}, {"r2": -0.5}, ["r2 recorded 0.9, measured -0.5"]),
        ({"rmse": 1.0}, {"rmse": 2.0}, []),  # twice the error: the threshold, not more
        ({"rmse": 1.0, "mae": 1.0}, {"rmse": 2.5, "mae": 1.2}, ["rmse recorded 1, measured 2.5"]),
        ({"accuracy": 0.9}, {"f1": 0.1}, []),  # nothing recorded to compare with
        ({"mine": 0.9}, {"mine": 0.0}, []),  # a user's metric: direction unknown
        ({"accuracy": "n/a"}, {"accuracy": 0.1}, []),
        ({"accuracy": 0.5}, {"accuracy": 0.99}, []),  # better is never a contradiction
    ],
)
def test_contradictions(
    recorded: dict[str, Any], measured: dict[str, float], found: list[str]
) -> None:
    assert contradictions(recorded, measured) == found


def test_contradiction_thresholds_are_parameters() -> None:
    assert contradictions({"accuracy": 0.9}, {"accuracy": 0.85}, drop=0.01) != []
    assert contradictions({"rmse": 1.0}, {"rmse": 1.5}, ratio=1.2) != []
    assert contradictions({"rmse": 1.0}, {"rmse": 5.0}, ratio=10) == []
    # Every built-in metric has a direction, so every one is checked.
    assert contradictions(
        dict.fromkeys((*CLASSIFICATION, "r2"), 1.0) | {"rmse": 0.1, "mae": 0.1},
        dict.fromkeys((*CLASSIFICATION, "r2"), 0.0) | {"rmse": 1.0, "mae": 1.0},
    ) == [
        f"{name} recorded {was}, measured {now}"
        for name, was, now in [
            *((m, 1, 0) for m in CLASSIFICATION),
            ("r2", 1, 0),
            ("rmse", 0.1, 1),
            ("mae", 0.1, 1),
        ]
    ]
    assert set(REGRESSION) == {"rmse", "mae", "r2"}
