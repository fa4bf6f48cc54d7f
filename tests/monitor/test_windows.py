"""Live monitoring windows: mergeable summaries (exactly, across workers), their
export in /metrics, and a real two-worker server whose windows are merged."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

import modelkeep
from modelkeep.evaluation import scores
from modelkeep.monitor.window import WindowSummary
from modelkeep.serve.run import serve_in_thread

# Feedback moves production (through policies): servers take labels only with a token.
TOKEN = "windows-test-feedback-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

if TYPE_CHECKING:
    from pathlib import Path

COLUMNS = ["a", "b", "c", "d"]


def _repo(root: Path) -> modelkeep.Repo:
    """churn@production → churn:1, with a reference profile of its training data."""
    x, y = make_classification(2000, 4, n_informative=3, n_redundant=0, random_state=0)
    frame = pd.DataFrame(x, columns=COLUMNS)
    frame["label"] = y
    frame.to_csv(root / "train.csv", index=False)
    repo = modelkeep.Repo.init(root / "repo")
    model = LogisticRegression().fit(frame[COLUMNS], frame["label"])
    repo.commit(
        "churn",
        model,
        "first",
        input_example=frame[COLUMNS].head(),
        data=[str(root / "train.csv")],
        target="label",
    )
    repo.promote("churn:1", "production")
    return repo


def _summary(x: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, regression: bool, worker: str):
    return WindowSummary.of(
        1,
        100.0,
        130.0,
        inputs=pd.DataFrame(x, columns=COLUMNS),
        predictions=y_pred,
        requests=len(x),
        errors=1,
        latencies=list(np.linspace(0.001, 0.01, len(x))),
        y_true=list(y_true),
        y_pred=list(y_pred),
        regression=regression,
        worker=worker,
    )


@pytest.mark.parametrize("regression", [False, True])
def test_worker_summaries_merge_into_the_summary_of_all_traffic(regression: bool) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 4))
    if regression:
        y_true, y_pred = rng.normal(size=1000), rng.normal(size=1000)
    else:
        y_true, y_pred = rng.integers(0, 2, 1000), rng.integers(0, 2, 1000)
    whole = _summary(x, y_true, y_pred, regression, "w0")
    cut = 377
    merged = _summary(x[:cut], y_true[:cut], y_pred[:cut], regression, "w1").merge(
        _summary(x[cut:], y_true[cut:], y_pred[cut:], regression, "w2")
    )
    assert merged.workers == ("w1", "w2")
    assert (merged.rows, merged.requests, merged.errors) == (1000, 1000, 2)
    assert merged.labelled == whole.labelled == 1000
    assert merged.confusion == whole.confusion
    assert merged.latency.count == whole.latency.count
    assert merged.profile is not None
    assert whole.profile is not None
    for name in COLUMNS:
        a, b = merged.profile.features[name], whole.profile.features[name]
        assert a.to_json()["count"] == b.to_json()["count"]
        assert a.buckets() == b.buckets()
    task = "regression" if regression else "classification"
    expected = scores(y_true, y_pred, task)
    got = merged.metrics(task)
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, rel=1e-9, abs=1e-12)
    # Through JSON (how parts travel between workers) nothing changes.
    again = WindowSummary.from_json(
        merged.to_json(), merged.profile.to_json() if merged.profile else None
    )
    assert again.to_json() == merged.to_json()
    assert again.metrics(task) == got


def test_windows_of_different_versions_do_not_merge() -> None:
    a = WindowSummary(1, 0.0, 1.0)
    with pytest.raises(ValueError, match="versions 1 and 2"):
        a.merge(WindowSummary(2, 0.0, 1.0))


def _metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_window_figures_are_exported_in_metrics(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    rows = pd.read_csv(tmp_path / "train.csv").iloc[:200]
    with (
        serve_in_thread(
            tmp_path / "repo",
            "churn@production",
            interval=0.1,
            window_rows=100,
            feedback_token=TOKEN,
        ) as (base, _follower),
        httpx.Client(base_url=base, timeout=10, headers=AUTH) as client,
    ):
        for start in (0, 100):
            batch = rows.iloc[start : start + 100]
            r = client.post("/predict", json={"inputs": batch[COLUMNS].to_numpy().tolist()})
            assert r.status_code == 200
            f = client.post(
                "/v2/models/churn/feedback",
                json={"id": r.json()["id"], "value": batch["label"].tolist()},
            )
            assert f.json() == {"joined": 100, "unknown_ids": 0}
            # Windows close on the follower's next poll: wait for this one's report.
            deadline = time.monotonic() + 10
            while len(repo.reports("churn:1")) < start // 100 + 1:
                assert time.monotonic() < deadline, "no window report"
                time.sleep(0.05)
        text = client.get("/metrics").text
    reports = repo.reports("churn:1")
    assert [r["rows"] for r in reports] == [100, 100]
    latest = reports[0]
    # A window keeps its data's profile (tens of KB) when it drifts, else once per
    # PROFILE_EVERY: the first window has it, the second (same data, soon after) not.
    assert reports[1]["profile"] is not None
    assert ("profile" in latest) == latest["drift"]["drifted"]
    page = repo.report_html("churn@production")
    assert f"Distributions from report #{reports[1]['id']}" in page or latest["drift"]["drifted"]
    assert _metric(text, "modelkeep_window_rows", version="churn:1") == 100
    assert _metric(text, "modelkeep_window_labelled", version="churn:1") == latest["labelled"]
    assert (
        _metric(text, "modelkeep_window_drift_share", version="churn:1")
        == (latest["drift"]["share"])
    )
    assert _metric(text, "modelkeep_window_metric", version="churn:1", metric="f1") == (
        pytest.approx(latest["metrics"]["f1"])
    )
    stat = next(f["statistic"] for f in latest["drift"]["features"] if f["name"] == "a")
    assert _metric(
        text, "modelkeep_window_feature_drift", version="churn:1", feature="a"
    ) == pytest.approx(stat)
    assert _metric(text, "modelkeep_window_latency_ms", version="churn:1", quantile="p99")


def test_live_columns_keep_their_names_whatever_their_order(tmp_path: Path) -> None:
    """Stored profiles list features sorted by name; the served rows come in the
    signature's order (here z, a, m): a window must not swap them."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {"z": rng.normal(100, 1, 3000), "a": rng.normal(0, 1, 3000), "m": rng.normal(-50, 5, 3000)}
    )
    frame["label"] = (frame["a"] > 0).astype(int)
    frame.to_csv(tmp_path / "train.csv", index=False)
    repo = modelkeep.Repo.init(tmp_path / "repo")
    features = ["z", "a", "m"]
    model = LogisticRegression().fit(frame[features], frame["label"])
    repo.commit(
        "churn",
        model,
        "z, a, m",
        input_example=frame[features].head(),
        data=[str(tmp_path / "train.csv")],
        target="label",
    )
    repo.promote("churn:1", "production")
    live = frame.iloc[:300]
    with serve_in_thread(tmp_path / "repo", "churn@production", interval=0.1, window_rows=300) as (
        base,
        _follower,
    ):
        r = httpx.post(f"{base}/predict", json={"inputs": live[features].to_numpy().tolist()})
        assert r.status_code == 200
        deadline = time.monotonic() + 10
        while not repo.reports("churn:1"):
            assert time.monotonic() < deadline, "no window report"
            time.sleep(0.05)
    (report,) = repo.reports("churn:1")
    assert report["drift"]["drifted_features"] == []
    assert report["profile"]["features"]["z"]["count"] == 300
    assert report["summary"]["rows"] == 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_workers_windows_merge_into_one_per_slot(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    token_file = tmp_path / "feedback-token"
    token_file.write_text(TOKEN + "\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelkeep",
            "serve",
            "churn@production",
            "--workers",
            "2",
            "--port",
            str(port),
            "--window-seconds",
            "1",
            "--feedback-token-file",
            str(token_file),
        ],
        cwd=tmp_path / "repo",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if httpx.get(f"{base}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.2)
        rows = pd.read_csv(tmp_path / "train.csv")
        failures: list[str] = []
        sent = {"rows": 0, "labels": 0, "requests": 0}
        lock = threading.Lock()

        def client(offset: int) -> None:
            # A new connection per request, so the kernel spreads them over both workers.
            for i in range(15):
                batch = rows.iloc[offset + 10 * i : offset + 10 * i + 10]
                r = httpx.post(
                    f"{base}/predict",
                    json={"inputs": batch[COLUMNS].to_numpy().tolist()},
                    headers={"Connection": "close"},
                )
                if r.status_code != 200:
                    failures.append(r.text)
                    continue
                f = httpx.post(
                    f"{base}/v2/models/churn/feedback",
                    json={"id": r.json()["id"], "value": batch["label"].tolist()},
                    headers={"Connection": "close", **AUTH},
                )
                if f.status_code != 200:
                    failures.append(f.text)
                with lock:
                    sent["rows"] += len(batch)
                    sent["labels"] += len(batch)
                    sent["requests"] += 1
                time.sleep(0.01)

        threads = [threading.Thread(target=client, args=(150 * k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []

        def merged() -> list[dict]:
            return [r for r in repo.reports("churn:1", limit=1000) if r["kind"] == "window"]

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            windows = merged()
            if sum(w["labelled"] for w in windows) >= sent["labels"]:
                break
            time.sleep(0.5)
        windows = merged()
        parts = [r for r in repo.reports("churn:1", limit=1000) if r["kind"] == "window-part"]
        metrics_text = httpx.get(f"{base}/metrics", headers={"Connection": "close"}).text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            if proc.stderr is not None:
                proc.stderr.close()
    # Every row and every label is in exactly one merged window, whichever worker
    # answered the prediction or received its label.
    assert sum(w["rows"] for w in windows) == sent["rows"]
    assert sum(w["labelled"] for w in windows) == sent["labels"]
    assert len({w["slot"] for w in windows}) == len(windows)
    # The parts were replaced by the windows that merge them.
    assert parts == []
    assert len({w for x in windows for w in x["summary"]["workers"]}) == 2
    assert any(w["workers"] == 2 for w in windows)
    assert all("drift" in w for w in windows if w["rows"])
    assert all("metrics" in w for w in windows if w["labelled"])
    # /metrics adds up the workers' counters.
    total = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith("modelkeep_requests_total{") and 'endpoint="predict"' in line
    )
    assert total == sent["requests"]
