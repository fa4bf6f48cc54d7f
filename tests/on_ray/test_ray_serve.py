"""modelkeep on Ray Serve: hot swap across replicas under load, a broken version never
served, a replica killed under load, windows of all replicas merged into one window of
the application (equal to one local server's), policies judged once, and the CLI.

Real parts: a local Ray (one per session, see conftest.py), real HTTP through Ray
Serve's proxy on 127.0.0.1, real SQLite repositories the replicas open by path.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from ray_helpers import App, Cluster, Load, wait_until
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

import modelkeep
from modelkeep.serve.run import serve_in_thread

COLUMNS = ["a", "b", "c", "d"]


def churn_repo(root: Path) -> modelkeep.Repo:
    """churn:1..3, each with a reference profile of its training data (so windows
    measure drift); churn@production → churn:1."""
    root.mkdir(parents=True, exist_ok=True)
    x, y = make_classification(2000, 4, n_informative=3, n_redundant=0, random_state=0)
    frame = pd.DataFrame(x, columns=COLUMNS)
    frame["label"] = y
    frame.to_csv(root / "train.csv", index=False)
    repo = modelkeep.Repo.init(root / "repo")
    for i, c in enumerate((1.0, 0.01, 0.0001), 1):
        model = LogisticRegression(C=c).fit(frame[COLUMNS], frame["label"])
        repo.commit(
            "churn",
            model,
            f"version {i}",
            input_example=frame[COLUMNS].head(),
            data=[str(root / "train.csv")],
            target="label",
        )
    repo.set_alias("churn@production", "churn:1")
    return repo


def targets_between(moves: list[tuple[float, int]], start: float, end: float) -> set[int]:
    """Versions the alias pointed at some time in [start, end] (moves: (time, target))."""
    live = set()
    for i, (t, target) in enumerate(moves):
        until = moves[i + 1][0] if i + 1 < len(moves) else math.inf
        if t <= end and until >= start:
            live.add(target)
    return live


def test_ten_alias_moves_under_four_clients_fail_no_request(tmp_path: Path, deploy: Any) -> None:
    repo = churn_repo(tmp_path)
    app: App = deploy(repo, replicas=2)
    wait_until(lambda: app.serving() and set(app.serving().values()) == {1}, 30, "2 replicas")
    assert len(app.serving()) == 2
    moves: list[tuple[float, int]] = [(0.0, 1)]
    done: list[float] = [0.0]  # when every replica served each move's target
    current = 1
    with Load(app.url, clients=4) as load:
        time.sleep(0.5)
        for i in range(10):
            target = [2, 3, 1][i % 3] if [2, 3, 1][i % 3] != current else 2
            repo.set_alias("churn@production", f"churn:{target}", f"move {i}")
            moves.append((time.monotonic(), target))
            wait_until(
                lambda t=target: set(app.serving().values()) == {t},
                10,
                f"move {i} to churn:{target}",
            )
            done.append(time.monotonic())
            current = target
            time.sleep(0.3)
        time.sleep(0.3)
    answers = load.answers
    assert len(answers) > 100, "the clients hardly ran"
    assert load.failures() == [], load.failures()[:5]
    for a in answers:
        number = int(str(a.version).split(":")[1])
        live = targets_between(moves, a.start, a.end)
        # A request that started while a move was still being applied may get the
        # version before it: the replica had not switched yet.
        for k in range(1, len(moves)):
            if moves[k][0] <= a.start < done[k]:
                live.add(moves[k - 1][1])
        assert number in live, f"{a.version} answered [{a.start:.3f}, {a.end:.3f}]: {moves}"
    assert {int(str(a.version).split(":")[1]) for a in answers} == {1, 2, 3}
    # Who moved what is in the event log; each replica says what it serves.
    moved = [e for e in repo.events("churn") if e.ref_name == "production" and "move" in e.message]
    assert len(moved) == 10
    assert all(e.actor for e in moved)
    replicas = [r for r in repo.replicas("churn") if r.server == f"ray:{app.name}"]
    assert len(replicas) == 2
    assert {r.version for r in replicas} == {current}
    assert all(r.state == "serving" and r.error is None for r in replicas)


def test_a_version_that_cannot_load_is_never_served(
    tmp_path: Path, deploy: Any, cluster: Cluster
) -> None:
    import brittle

    repo = churn_repo(tmp_path)
    x, y = make_classification(200, 4, n_informative=3, n_redundant=0, random_state=1)
    frame = pd.DataFrame(x, columns=COLUMNS)
    repo.commit("churn", brittle.Brittle().fit(frame, y), "brittle", input_example=frame.head())
    app: App = deploy(repo, replicas=2)
    wait_until(lambda: len(app.serving()) == 2, 30, "2 replicas")
    marker = Path(os.environ[brittle.MARKER_ENV])
    marker.touch()  # from now on churn:4's warm-up raises, in every replica
    try:
        with Load(app.url, clients=2) as load:
            repo.promote("churn:4", "production")
            wait_until(
                lambda: all(
                    r.error and "churn:4" in r.error
                    for r in repo.replicas("churn")
                    if r.server == f"ray:{app.name}" and r.state != "stopped"
                ),
                15,
                "both replicas report the failed load",
            )
            time.sleep(1.0)  # several polls later: still the old version
        assert load.failures() == []
        assert {a.version for a in load.answers} == {"churn:1"}
        errors = {r.error for r in repo.replicas("churn") if r.server == f"ray:{app.name}"}
        assert all("broken on purpose" in str(e) for e in errors), errors
        # The text listing says the same.
        out = subprocess.run(
            [sys.executable, "-m", "modelkeep", "--repo", str(repo.root), "deployments"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out.count(f"ray:{app.name}") == 2, out
        assert "churn:4" in out
        assert "churn:1" in out
        # Rolling back is one command, and takes on every replica.
        repo.rollback("churn@production", "2")
        wait_until(lambda: set(app.serving().values()) == {2}, 10, "rollback to churn:2")
        assert (
            httpx.post(f"{app.url}/predict", json={"inputs": [[0, 0, 0, 0]]}).headers[
                "X-Model-Version"
            ]
            == "churn:2"
        )
    finally:
        marker.unlink(missing_ok=True)


def test_a_broken_revision_is_refused_before_anything_is_deployed(
    tmp_path: Path, cluster: Cluster
) -> None:
    from ray import serve

    from modelkeep.errors import ModelkeepError
    from modelkeep.serve import on_ray

    repo = churn_repo(tmp_path)
    before = set(serve.status().applications)
    with pytest.raises(ModelkeepError, match="staging"):
        on_ray.deploy(repo.root, "churn@staging", name="never", port=cluster.port)
    assert set(serve.status().applications) == before


def test_replicas_that_fail_to_start_are_reported_in_one_line_and_taken_down(
    tmp_path: Path, cluster: Cluster
) -> None:
    import brittle
    from ray import serve

    from modelkeep.errors import ModelkeepError
    from modelkeep.serve import on_ray

    repo = churn_repo(tmp_path)
    x, y = make_classification(200, 4, n_informative=3, n_redundant=0, random_state=1)
    frame = pd.DataFrame(x, columns=COLUMNS)
    repo.commit("churn", brittle.Brittle().fit(frame, y), "brittle", input_example=frame.head())
    repo.set_alias("churn@production", "churn:4")
    # Loads here (the driver's check passes) and fails in every replica.
    (cluster.temp / "brittle-broken-in-ray").touch()
    try:
        with pytest.raises(ModelkeepError) as caught:
            on_ray.deploy(
                repo.root,
                "churn@production",
                name="doomed",
                route="/doomed",
                port=cluster.port,
                replica_cpus=0.5,
            )
    finally:
        (cluster.temp / "brittle-broken-in-ray").unlink()
    message = str(caught.value)
    assert "doomed" in message
    assert "broken on purpose" in message
    assert "\n" not in message
    assert "doomed" not in serve.status().applications


def test_a_replica_killed_under_load_is_replaced(tmp_path: Path, deploy: Any) -> None:
    repo = churn_repo(tmp_path)
    app: App = deploy(repo, replicas=2)
    wait_until(lambda: len(app.serving()) == 2, 30, "2 replicas")
    victim = next(r for r in repo.replicas("churn") if r.server == f"ray:{app.name}")
    with Load(app.url, clients=4) as load:
        time.sleep(1.0)
        killed_at = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        # Ray starts a new replica, which loads churn:1 and reports itself.
        took = wait_until(
            lambda: len(set(app.serving()) - {victim.replica}) >= 2,
            60,
            "a new replica",
            step=0.2,
        )
        time.sleep(1.0)
    failed = load.failures()
    after = [a for a in load.answers if a.start > killed_at + took]
    print(
        f"\nreplica killed under load: {len(load.answers)} requests, {len(failed)} failed "
        f"(those in flight on it), replaced in {took:.1f} s"
    )
    # Service went on: every request sent once the new replica served succeeded, and
    # the failures are only the few in flight on the killed replica (4 clients).
    assert after
    assert all(a.status == 200 for a in after)
    assert len(failed) <= 8, [a.error for a in failed][:5]
    assert all(a.start <= killed_at + took for a in failed)
    stale = [r for r in repo.replicas("churn") if r.replica == victim.replica]
    assert stale, "the killed replica was never listed"
    assert stale[0].state == "serving", "the killed one never said goodbye"


def _send(
    url: str, batches: list[pd.DataFrame], labels: list[list[int]], clients: int, token: str
) -> None:
    """POST every batch and its labels (with ``token``, a repository token of write
    scope); ``clients`` threads, a connection per request so the proxy spreads them."""
    failures: list[str] = []

    def run(k: int) -> None:
        with httpx.Client(timeout=10) as http:
            for i in range(k, len(batches), clients):
                r = http.post(f"{url}/predict", json={"inputs": batches[i].to_numpy().tolist()})
                if r.status_code != 200:
                    failures.append(r.text)
                    continue
                f = http.post(
                    f"{url}/v2/models/churn/feedback",
                    json={"id": r.json()["id"], "value": labels[i]},
                    headers={"Authorization": f"Bearer {token}"},
                )
                if f.status_code != 200:
                    failures.append(f.text)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def _same(a: Any, b: Any, where: str = "") -> None:
    """Equal JSON, floats to 1e-9 (sums taken in another order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert set(a) == set(b), f"{where}: {sorted(set(a) ^ set(b))}"
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), where
    else:
        assert a == b, where


@pytest.mark.slow
def test_windows_of_all_replicas_merge_into_the_window_of_one_server(
    tmp_path: Path, deploy: Any
) -> None:
    repo = churn_repo(tmp_path)
    # Alerts on every window: fired once per window of the application, not per replica.
    repo.set_policy(
        "churn",
        '[[rule]]\nname = "always"\nmetric = "accuracy"\nbelow = 2\nwindows = 1\n'
        'action = "alert"\ncooldown = "1s"\n',
    )
    frame = pd.read_csv(tmp_path / "train.csv")
    batches = [frame.iloc[i * 5 : i * 5 + 5][COLUMNS] for i in range(60)]
    labels = [frame.iloc[i * 5 : i * 5 + 5]["label"].tolist() for i in range(60)]
    seconds = 6.0
    # Labels with a token each replica verifies against the registry it follows.
    _, token = repo.tokens.create("labeller", "write", "churn")
    app: App = deploy(repo, replicas=2, window_seconds=seconds, window_rows=10**6)
    wait_until(lambda: len(app.serving()) == 2, 30, "2 replicas")
    # All traffic inside one slot of wall-clock time: start just after a slot begins.
    wait_until(lambda: time.time() % seconds < 0.2, seconds + 1, "a slot start", step=0.01)
    _send(app.url, batches, labels, clients=4, token=token)
    sent_in = time.time() - (time.time() // seconds) * seconds
    assert sent_in < seconds, "the traffic spilled over two slots: the machine is too slow"

    def merged() -> list[dict[str, Any]]:
        return [r for r in repo.reports("churn:1", limit=100) if r["kind"] == "window"]

    wait_until(lambda: merged(), 3 * seconds + 20, "the merged window", step=0.2)
    (ray_window,) = merged()
    assert ray_window["workers"] == 2, "one replica took all the traffic"
    assert not [r for r in repo.reports("churn:1", limit=100) if r["kind"] == "window-part"]
    # The leader stores the window, then judges it: the alert follows the report.
    wait_until(lambda: repo.events("churn", action="monitor.alert"), 20, "the alert", step=0.2)
    time.sleep(2.0)  # a second alert (one per replica) would have come by now
    alerts = repo.events("churn", action="monitor.alert")
    assert len(alerts) == 1, [e.message for e in alerts]

    # The same rows and labels through one local server, in one window.
    local = churn_repo(tmp_path / "local")
    with serve_in_thread(
        local.root,
        "churn@production",
        interval=0.1,
        window_rows=10**6,
        window_seconds=3600,
    ) as (base, _):
        _send(base, batches, labels, clients=1, token=local.tokens.create("l", "write")[1])
    (local_window,) = [r for r in local.reports("churn:1", limit=100) if r["kind"] == "window"]
    for key in ("rows", "requests", "errors", "labelled", "metrics", "drift"):
        _same(ray_window[key], local_window[key], key)
    ours, theirs = ray_window["summary"], local_window["summary"]
    for key in ("rows", "requests", "errors", "confusion", "residuals"):
        _same(ours[key], theirs[key], key)
    _same(ray_window["profile"], local_window["profile"], "profile")
    # /metrics of the application adds up both replicas' counters.
    text = httpx.get(f"{app.url}/metrics").text
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("modelkeep_requests_total{") and 'endpoint="predict"' in line
    )
    assert counted == len(batches)


def test_rollouts_read_from_the_registry_apply_on_ray(tmp_path: Path, deploy: Any) -> None:
    repo = churn_repo(tmp_path)
    app: App = deploy(repo, replicas=2)
    wait_until(lambda: len(app.serving()) == 2, 30, "2 replicas")
    repo.deploy("churn", to="production", strategy="canary", candidate="churn:3", percent=50)
    wait_until(
        lambda: (
            {
                tuple(sorted(r.versions))
                for r in repo.replicas("churn")
                if r.server == f"ray:{app.name}" and r.state != "stopped"
            }
            == {(1, 3)}
        ),
        10,
        "both replicas load the canary",
    )
    seen = {
        httpx.post(
            f"{app.url}/predict",
            json={"inputs": [[0.1, 0.2, 0.3, 0.4]]},
            headers={"X-Request-Key": f"user-{i}"},
        ).headers["X-Model-Version"]
        for i in range(60)
    }
    assert seen == {"churn:1", "churn:3"}


def test_the_cli_deploys_on_a_joined_cluster(tmp_path: Path, cluster: Cluster) -> None:
    from ray import serve

    repo = churn_repo(tmp_path)
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelkeep",
            "--repo",
            str(repo.root),
            "serve",
            "churn@production",
            "--ray",
            "--autoscaling",
            '{"min_replicas": -1}',
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert "autoscaling" in bad.stderr
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelkeep",
            "--repo",
            str(repo.root),
            "serve",
            "churn@production",
            "--ray",
            "--address",
            cluster.address,
            "--detach",
            "--replicas",
            "1",
            "--replica-cpus",
            "0.5",
            "--app",
            "cli",
            "--route",
            "/cli",
            "--port",
            str(cluster.port),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    try:
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"http://127.0.0.1:{cluster.port}/cli" in proc.stdout
        r = httpx.post(
            f"http://127.0.0.1:{cluster.port}/cli/predict", json={"inputs": [[0.1, 0.2, 0.3, 0.4]]}
        )
        assert r.status_code == 200
        assert r.headers["X-Model-Version"] == "churn:1"
        # The same HTTP surface as the local server: OIP metadata, 4xx for bad input.
        meta = httpx.get(f"http://127.0.0.1:{cluster.port}/cli/v2/models/churn").json()
        assert meta["name"] == "churn"
        bad_body = httpx.post(
            f"http://127.0.0.1:{cluster.port}/cli/predict", json={"inputs": [[1, 2]]}
        )
        assert bad_body.status_code == 400, bad_body.text
        listed = json.loads(
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "modelkeep",
                    "--repo",
                    str(repo.root),
                    "deployments",
                    "--json",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        assert [r["server"] for r in listed["replicas"]] == ["ray:cli"]
    finally:
        serve.delete("cli")
    gone = [r for r in repo.replicas("churn") if r.server == "ray:cli"]
    assert [r.state for r in gone] == ["stopped"]
