"""Monitoring under trouble: windows are not lost at shutdown or when the registry
refuses a write, a rollback is never repeated on stale evidence, one unjudgeable rule
does not silence the others, and bad webhooks are refused up front."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import modelkeep
from modelkeep.errors import RegistryError
from modelkeep.monitor import actions
from modelkeep.monitor.policy import Evaluator, parse
from modelkeep.serve.run import serve_in_thread

if TYPE_CHECKING:
    from pathlib import Path

COLUMNS = ["a", "b", "c"]


def _repo(root: Path) -> modelkeep.Repo:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(1000, 3)), columns=COLUMNS)
    frame["label"] = (frame["a"] > 0).astype(int)
    frame.to_csv(root / "train.csv", index=False)
    repo = modelkeep.Repo.init(root / "repo")
    for c in (1.0, 0.1):
        model = LogisticRegression(C=c).fit(frame[COLUMNS], frame["label"])
        repo.commit(
            "churn",
            model,
            f"C={c}",
            input_example=frame[COLUMNS].head(),
            data=[str(root / "train.csv")],
            target="label",
        )
    repo.promote("churn:1", "production")
    repo.promote("churn:2", "production")
    return repo


def test_open_windows_are_stored_when_the_server_stops(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    rows = np.random.default_rng(1).normal(size=(20, 3)).tolist()
    with serve_in_thread(tmp_path / "repo", "churn@production", interval=0.1) as (base, _f):
        assert httpx.post(f"{base}/predict", json={"inputs": rows}).status_code == 200
        # 20 rows: far from a full window (500) or an old one (30 s).
    (window,) = repo.reports("churn:2")
    assert (window["kind"], window["rows"]) == ("window", 20)


def test_a_window_the_registry_refused_is_stored_at_the_next_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelkeep._engine import Engine
    from modelkeep.monitor.records import Records
    from modelkeep.serve.follower import Follower

    repo = _repo(tmp_path)
    # The first window write fails as a locked registry would (injected: a real lock
    # would make the test wait for SQLite's busy timeout).
    refused = []
    record = Records.record_report

    def refuses_once(self: Records, *args: Any, **kwargs: Any) -> int:
        if not refused:
            refused.append(1)
            raise RegistryError("database is locked")
        return record(self, *args, **kwargs)

    monkeypatch.setattr(Records, "record_report", refuses_once)
    engine = Engine.open(tmp_path / "repo")
    follower = Follower(lambda: engine, "churn", "production", 0.05, window_rows=10)
    follower.start()
    try:
        rows = np.random.default_rng(2).normal(size=(10, 3))
        for _ in range(2):
            loaded = follower.snapshot.primary()  # type: ignore[union-attr]
            x = loaded.rows(rows.tolist())
            follower.windows.add(2, x, loaded.predict(x))
            deadline = time.monotonic() + 10
            while len(repo.reports("churn:2")) < _ + 1:
                assert time.monotonic() < deadline, "window not stored"
                time.sleep(0.05)
    finally:
        follower.stop()
    assert len(refused) == 1
    assert [r["rows"] for r in repo.reports("churn:2")] == [10, 10]


def test_a_rollback_is_not_repeated_on_stale_evidence(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    engine = repo._e  # the jobs' own interface
    first = actions.rollback(engine, "churn", "production", "policy x", "churn:2")
    assert first == "rolled back churn:2 → churn:1"
    # A second server (or the daemon) judged churn:2 too: rolling back again would
    # undo the first rollback and put churn:2 back.
    again = actions.rollback(engine, "churn", "production", "policy x", "churn:2")
    assert again == "no rollback: @production is churn:1 now, no longer churn:2"
    assert repo.resolve("churn@production").number == 1
    rule = parse("[[rule]]\nmetric='f1'\nbelow=0.5\naction='update'\n")[0]
    outcome, _ = actions.update(
        engine, "churn", "production", rule, "x.csv", "label", "w", "churn:2"
    )
    assert outcome == "no update: @production is churn:1 now, no longer churn:2"


def test_a_rule_that_cannot_be_judged_does_not_silence_the_others() -> None:
    rules = parse(
        """
[[rule]]
name = "needs a reference"
metric = "f1"
below = "reference - 0.05"
[[rule]]
name = "drift"
metric = "drift_share"
above = 0.3
"""
    )
    fired = Evaluator(rules).window(1, {"f1": 0.1, "drift_share": 0.9}, reference={})
    assert [f.rule.name for f in fired] == ["drift"]


@pytest.mark.parametrize("url", ["http://[::1/hook", "ftp://host/x", "http://", "http://h:99999/"])
def test_malformed_webhooks_are_refused(url: str) -> None:
    with pytest.raises(modelkeep.UsageError, match="webhook"):
        parse(f"[[rule]]\nmetric='f1'\nbelow=0.5\nwebhook='{url}'\n")
