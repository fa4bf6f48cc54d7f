"""Rollouts: the routing table (unit), deployments through ``Repo`` against a live server
(blue-green, canary, stepped canary, shadow), and the ``deploy``/``deployments`` commands."""

from __future__ import annotations

import functools
import json
import re
import shlex
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from typer.testing import CliRunner

import modelkeep
from modelkeep.cli.app import app as cli_app
from modelkeep.deploy import RoutingTable, canary_percent
from modelkeep.deploy.rollouts import Rollouts
from modelkeep.errors import ConflictError, ModelkeepError, UsageError
from modelkeep.registry.records import Deployment

VERSION_HEADER = "X-Model-Version"
KEYS = [f"customer-{i}" for i in range(10_000)]


# -- the routing table ----------------------------------------------------------------


def canary(percent: float) -> RoutingTable:
    return RoutingTable("churn", "production", 2, 3, "canary", percent, deployment=1)


def test_single_routes_everything_to_the_primary():
    table = RoutingTable("churn", "production", 2, previous=1)
    assert table.route() == (2, None)
    assert {table.route(k) for k in KEYS[:500]} == {(2, None)}
    assert table.loaded() == [2, 1]
    # A candidate without a canary/shadow mode is not routed to.
    assert RoutingTable("churn", "production", 2, 3).route("k") == (2, None)


def test_shadow_answers_from_the_primary_and_copies_to_the_candidate():
    table = RoutingTable("churn", "production", 2, 3, "shadow", deployment=7, previous=2)
    assert table.route() == (2, 3)
    assert {table.route(k) for k in KEYS[:500]} == {(2, 3)}
    assert table.loaded() == [2, 3]


def test_canary_share_with_keys_is_within_3_percent():
    for percent in (10.0, 30.0, 75.0):
        table = canary(percent)
        share = sum(table.route(k)[0] == 3 for k in KEYS) / len(KEYS)
        assert abs(share - percent / 100) <= 0.03, (percent, share)
        assert {table.route(k)[1] for k in KEYS[:100]} == {None}


def test_canary_share_without_keys_is_within_3_percent():
    table = canary(30.0)
    share = sum(table.route(None)[0] == 3 for _ in range(10_000)) / 10_000
    assert abs(share - 0.30) <= 0.03


def test_canary_is_sticky_per_key():
    table = canary(30.0)
    first = {k: table.route(k) for k in KEYS[:2000]}
    for _ in range(3):
        assert {k: table.route(k) for k in KEYS[:2000]} == first
    # Another server with the same table routes the same way.
    assert {k: canary(30.0).route(k) for k in KEYS[:2000]} == first
    assert {v for v, _ in first.values()} == {2, 3}


def test_growing_canary_keeps_its_keys_on_the_candidate():
    on = {p: {k for k in KEYS[:3000] if canary(p).route(k)[0] == 3} for p in (10, 50, 90)}
    assert on[10] <= on[50] <= on[90]


def test_canary_edges_zero_and_hundred_percent():
    assert {canary(0.0).route(k)[0] for k in KEYS[:2000]} == {2}
    assert {canary(0.0).route(None)[0] for _ in range(2000)} == {2}
    assert {canary(100.0).route(k)[0] for k in KEYS[:2000]} == {3}
    assert {canary(100.0).route(None)[0] for _ in range(2000)} == {3}


def deployment(percent=10.0, steps=(), interval=None, created=None) -> Deployment:
    created = created or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    return Deployment(
        id=1,
        model="churn",
        alias="production",
        strategy="canary",
        primary=2,
        candidate=3,
        percent=percent,
        steps=tuple(steps),
        interval_seconds=interval,
        status="active",
        actor="ada",
        created_at=created,
        updated_at=created,
        stats={},
    )


def test_canary_percent_advances_with_its_steps():
    t0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    dep = deployment(10.0, (10.0, 50.0, 100.0), 600.0, t0)
    at = {
        s: canary_percent(dep, t0 + timedelta(seconds=s)) for s in (0, 599, 600, 1199, 1200, 10**6)
    }
    assert at == {0: 10.0, 599: 10.0, 600: 50.0, 1199: 50.0, 1200: 100.0, 10**6: 100.0}


def test_canary_percent_without_steps_is_fixed():
    t0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert canary_percent(deployment(30.0, created=t0), t0 + timedelta(days=3)) == 30.0
    # Steps without an interval do not advance.
    assert canary_percent(deployment(30.0, (10.0, 100.0), None, t0), t0 + timedelta(days=3)) == 30.0


# -- through Repo, against a live server ------------------------------------------------


def actions(repo) -> list[str]:
    return [e.action for e in reversed(repo.history("churn"))]


def wait_mode(served, mode: str, waiter) -> None:
    waiter(lambda: served.follower.snapshot.table.mode == mode, 2, what=f"mode {mode}")


def test_blue_green_switches_at_once_and_keeps_the_old_version(fresh_churn, waiter):
    repo, served = fresh_churn()
    dep = repo.deploy("churn", strategy="blue-green", candidate="churn:3", message="bg test")
    assert (dep.strategy, dep.status, dep.primary, dep.candidate) == (
        "blue-green",
        "completed",
        2,
        3,
    )
    assert dep.actor
    assert repo.resolve("churn@production").number == 3
    [listed] = repo.deployments("churn")
    assert (listed.id, listed.status) == (dep.id, "completed")
    assert actions(repo)[-2:] == ["deploy.blue-green", "promote"]
    promote = repo.history("churn@production")[0]
    assert (promote.action, promote.before, promote.after) == ("promote", 2, 3)
    # The server switches, and keeps churn:2 loaded for an instant rollback.
    assert served.wait_serving("churn:3") < 1.0
    waiter(lambda: 2 in served.follower.snapshot.models, 1, what="churn:2 kept")
    assert served.http.get("/v2/models/churn/versions/2/ready").status_code == 200
    repo.rollback("churn@production")
    assert served.wait_serving("churn:2") < 1.0


def test_canary_sends_its_share_to_the_candidate_sticky_per_key(fresh_churn, waiter):
    repo, served = fresh_churn()
    dep = repo.deploy("churn", strategy="canary", candidate="churn:3", percent=30)
    assert (dep.strategy, dep.status, dep.percent) == ("canary", "active", 30.0)
    assert repo.resolve("churn@production").number == 2  # the alias does not move yet
    wait_mode(served, "canary", waiter)
    table = repo.routing("churn", "production")
    assert (table.primary, table.candidate, table.percent) == (2, 3, 30.0)
    keys = KEYS[:150]
    first = {k: served.version(k) for k in keys}
    assert {k: served.version(k) for k in keys} == first  # sticky
    assert first == {k: f"churn:{table.route(k)[0]}" for k in keys}
    share = sum(v == "churn:3" for v in first.values()) / len(keys)
    assert 0.18 <= share <= 0.42, share
    # The candidate can also be pinned while it is loaded.
    assert served.http.get("/v2/models/churn/versions/3/ready").status_code == 200

    done = repo.end_deployment("churn", promote=True)
    assert (done.id, done.status) == (dep.id, "promoted")
    assert repo.resolve("churn@production").number == 3
    assert served.wait_serving("churn:3") < 1.0
    wait_mode(served, "single", waiter)
    assert {served.version(k) for k in keys[:40]} == {"churn:3"}
    assert actions(repo)[-3:] == ["deploy.canary", "promote", "deploy.promoted"]


def test_aborted_canary_leaves_the_alias(fresh_churn, waiter):
    repo, served = fresh_churn()
    repo.deploy("churn", strategy="canary", candidate="churn:3", percent=50)
    wait_mode(served, "canary", waiter)
    assert {served.version(k) for k in KEYS[:40]} == {"churn:2", "churn:3"}
    done = repo.end_deployment("churn", promote=False, message="not convinced")
    assert done.status == "aborted"
    assert repo.resolve("churn@production").number == 2
    wait_mode(served, "single", waiter)
    assert {served.version(k) for k in KEYS[:40]} == {"churn:2"}
    assert actions(repo)[-1] == "deploy.aborted"
    assert repo.history("churn")[0].message == "not convinced"
    with pytest.raises(ModelkeepError, match="no active deployment"):
        repo.end_deployment("churn", promote=True)


def test_a_second_deployment_while_one_is_active_is_refused(fresh_churn):
    repo, _ = fresh_churn(serve=False)
    first = repo.deploy("churn", strategy="canary", candidate="churn:3", percent=10)
    for strategy in ("shadow", "canary", "blue-green"):
        with pytest.raises(ConflictError, match="active"):
            repo.deploy("churn", strategy=strategy, candidate="churn:3")
    assert [d.id for d in repo.deployments("churn")] == [first.id]
    assert repo.resolve("churn@production").number == 2
    # Once it ends, a new one may start.
    repo.end_deployment("churn", promote=False)
    assert repo.deploy("churn", strategy="shadow", candidate="churn:3").status == "active"


def test_promoting_a_rollout_is_one_transaction(fresh_churn):
    """The alias moves with the rollout's end or not at all: when the end loses a race
    (another process ended it, or moved the alias), the alias stays where it was."""
    repo, _ = fresh_churn(serve=False)
    dep = repo.deploy("churn", strategy="canary", candidate="churn:3", percent=10)
    events = len(repo.events())
    # Another process aborted it meanwhile: the status compare-and-swap fails.
    with pytest.raises(ConflictError, match="not aborted"):
        repo.registry.end_deployment(
            dep.id,
            status="promoted",
            actor="test",
            message="",
            expected_status="aborted",
            promote=(2, "racing"),
        )
    assert repo.resolve("churn@production").number == 2
    # Another process moved the alias meanwhile: the alias compare-and-swap fails.
    with pytest.raises(ConflictError, match="points at 2, not 1"):
        repo.registry.end_deployment(
            dep.id, status="promoted", actor="test", message="", promote=(1, "stale")
        )
    assert repo.resolve("churn@production").number == 2
    assert repo.deployments("churn")[0].status == "active"
    assert len(repo.events()) == events  # nothing logged for what did not happen
    done = repo.end_deployment("churn", promote=True)
    assert done.status == "promoted"
    assert repo.resolve("churn@production").number == 3
    actions = [e.action for e in repo.events()[:2]]
    assert sorted(actions) == ["deploy.promoted", "promote"]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"strategy": "rainbow", "candidate": "churn:3"}, "unknown strategy"),
        ({"strategy": "canary"}, "candidate"),
        ({"strategy": "canary", "candidate": "churn:1"}, "already serves"),
        ({"strategy": "canary", "candidate": "churn:3", "percent": 0}, "percent"),
        ({"strategy": "canary", "candidate": "churn:3", "percent": 120}, "percent"),
        ({"strategy": "canary", "candidate": "churn:3", "steps": (50, 10), "interval": 1}, "steps"),
        ({"strategy": "canary", "candidate": "churn:3", "steps": (10, 100)}, "interval"),
    ],
)
def test_bad_deployments_are_refused_and_not_recorded(churn_repo, options, match):
    repo = churn_repo  # churn@production → churn:1 (no server in this module uses it)
    with pytest.raises(ModelkeepError, match=match):
        repo.deploy("churn", **options)
    assert repo.deployments("churn") == []


def test_canary_steps_advance_and_promote_through_routing(fresh_churn):
    repo, _ = fresh_churn(serve=False)
    dep = repo.deploy(
        "churn", strategy="canary", candidate="churn:3", steps=(50, 100), interval=0.5
    )
    table = repo.routing("churn", "production")
    assert (table.mode, table.percent, table.deployment) == ("canary", 50.0, dep.id)
    time.sleep(0.6)
    table = repo.routing("churn", "production")
    assert (table.mode, table.primary, table.candidate) == ("single", 3, None)
    assert repo.resolve("churn@production").number == 3
    [done] = repo.deployments("churn")
    assert done.status == "promoted"
    assert f"canary #{dep.id} reached 100 %" in repo.history("churn")[0].message


def test_a_server_drives_a_stepped_canary_to_the_end(fresh_churn, waiter):
    repo, served = fresh_churn()
    repo.deploy("churn", strategy="canary", candidate="churn:3", steps=(50, 100), interval=1.0)
    wait_mode(served, "canary", waiter)
    assert served.follower.snapshot.table.percent == 50.0
    # Nobody calls repo.routing here but the server: it notices the last step and promotes.
    waiter(lambda: repo.deployments("churn")[0].status == "promoted", 3, what="auto promotion")
    assert repo.resolve("churn@production").number == 3
    assert served.wait_serving("churn:3") < 1.0


def test_shadow_answers_from_the_primary_and_records_agreement(fresh_churn, data, waiter):
    repo, served = fresh_churn()
    dep = repo.deploy("churn", strategy="shadow", candidate="churn:3")
    assert dep.status == "active"
    wait_mode(served, "shadow", waiter)
    x = data.x[:60]
    primary = np.asarray(repo.load("churn:2").predict(x))
    candidate = np.asarray(repo.load("churn:3").predict(x))
    assert (primary != candidate).any(), "the versions should disagree on some rows"
    for i in range(0, len(x), 2):
        key = {"X-Request-Key": KEYS[i]} if i % 4 else None
        r = served.http.post("/predict", json={"inputs": x[i : i + 2].tolist()}, headers=key)
        assert r.status_code == 200
        assert r.headers[VERSION_HEADER] == "churn:2"
        assert r.json()["predictions"] == primary[i : i + 2].tolist()
    # The follower flushes what the server measured into the deployment's record.
    waiter(
        lambda: repo.deployments("churn")[0].stats.get("compared") == len(x),
        3,
        what="shadow stats flushed",
    )
    stats = repo.deployments("churn")[0].stats
    assert stats["agreement"] == pytest.approx(float(np.mean(primary == candidate)))
    assert 0 < stats["agreement"] < 1
    assert stats["primary_mean_ms"] > 0
    assert stats["candidate_mean_ms"] > 0
    assert stats["candidate_errors"] == 0
    metrics = served.http.get("/metrics").text
    assert 'modelkeep_shadow_compared_total{candidate="churn:3",primary="churn:2"} 60.0' in metrics
    # The alias never moved.
    assert repo.resolve("churn@production").number == 2


# -- the commands -------------------------------------------------------------------------


def cli(repo, command: str):
    """``modelkeep --repo REPO COMMAND`` through typer's runner (in this process)."""
    return CliRunner().invoke(cli_app, ["--repo", str(repo.root), *shlex.split(command)])


def test_cli_deploy_and_deployments(fresh_churn):
    repo, _ = fresh_churn(serve=False)
    run = cli(
        repo, "deploy churn --to production --strategy canary --candidate churn:3 --percent 10"
    )
    assert run.exit_code == 0, run.output
    assert "canary 10 %" in run.stdout
    assert "[active]" in run.stdout

    listed = cli(repo, "deployments --json")
    assert listed.exit_code == 0, listed.output
    found = json.loads(listed.stdout)
    assert found["replicas"] == []  # no server is running
    [d] = found["deployments"]
    assert (d["model"], d["alias"], d["strategy"]) == ("churn", "production", "canary")
    assert (d["primary"], d["candidate"], d["percent"], d["status"]) == (2, 3, 10.0, "active")
    assert repo.routing("churn", "production").percent == 10.0

    text = cli(repo, "deployments churn")
    assert text.exit_code == 0
    assert "churn:2 → churn:3 [active]" in text.stdout

    again = cli(repo, "deploy churn --strategy shadow --candidate churn:3")
    assert again.exit_code == 4  # a conflict
    assert again.stderr.startswith("error: ")
    assert "Traceback" not in again.output

    stopped = cli(repo, "deploy churn --abort --json")
    assert stopped.exit_code == 0, stopped.output
    assert json.loads(stopped.stdout)["status"] == "aborted"
    assert repo.resolve("churn@production").number == 2

    steps = cli(
        repo, "deploy churn --strategy canary --candidate 3 --steps 10,50,100 --interval 10m --json"
    )
    assert steps.exit_code == 0, steps.output
    out = json.loads(steps.stdout)
    assert out["steps"] == [10.0, 50.0, 100.0]
    assert (out["interval_seconds"], out["percent"]) == (600.0, 10.0)


def test_cli_deployments_lists_what_each_replica_serves(tmp_path):
    weights = tmp_path / "w.bin"
    with modelkeep.Repo.init(tmp_path / "repo") as repo:
        for tag in (b"a", b"b"):
            weights.write_bytes(tag * 1000)
            repo.commit("churn", weights)
        repo.promote("churn:1", "production")
        repo.deploy("churn", strategy="canary", candidate="churn:2", percent=10)
        rollouts = Rollouts(repo._e)  # what a server reports through
        report = functools.partial(
            rollouts.report_replica, "churn", "production", host="web1", error=None
        )
        report("local:127.0.0.1:8080", "0", pid=11, version=1, versions=[1], state="serving")
        report("local:127.0.0.1:8080", "1", pid=12, version=1, versions=[1, 2], state="serving")
        failed = "cannot load churn:2: disk full"
        report("ray:churn", "a", pid=7, version=None, versions=[], state="failed", error=failed)
        report("ray:churn", "b", pid=8, version=1, versions=[1], state="serving")
        report("ray:churn", "c", pid=9, version=1, versions=[1], state="stopped")
        with pytest.raises(UsageError, match="unknown replica state 'running': use starting, "):
            report("ray:churn", "d", pid=10, version=1, versions=[1], state="running")
        with repo.registry.db.write() as tx:  # b and c last reported 2 minutes ago
            then = datetime.now(UTC) - timedelta(minutes=2, seconds=5)
            tx.run("UPDATE replicas SET seen_at = :then WHERE replica IN ('b', 'c')",
                   {"then": then})  # fmt: skip
        assert [(r.server, r.replica) for r in repo.replicas("churn")] == [
            ("local:127.0.0.1:8080", "0"), ("local:127.0.0.1:8080", "1"),
            ("ray:churn", "a"), ("ray:churn", "b"), ("ray:churn", "c"),
        ]  # fmt: skip

        text = cli(repo, "deployments churn")
        assert text.exit_code == 0, text.output
        lines = text.stdout.splitlines()
        assert "churn:1 → churn:2 [active]" in lines[0]
        patterns = [
            r"local:127\.0\.0\.1:8080 replica 0 on web1/11: churn@production → churn:1 "
            r"\[serving, seen \d+s ago\]",
            r"local:127\.0\.0\.1:8080 replica 1 on web1/12: churn@production → churn:1 "
            r"\(also loaded: churn:2\) \[serving, seen \d+s ago\]",
            r"ray:churn replica a on web1/7: churn@production nothing loaded "
            r"\[failed, seen \d+s ago\]: cannot load churn:2: disk full",
            r"ray:churn replica b on web1/8: churn@production → churn:1 "
            r"\[serving, not seen for 2m\d+s \(probably gone\)\]",
            r"ray:churn replica c on web1/9: churn@production → churn:1 \[stopped 2m\d+s ago\]",
        ]
        assert len(lines) == 1 + len(patterns), text.stdout
        for line, pattern in zip(lines[1:], patterns, strict=True):
            assert re.fullmatch(r"\s*" + pattern, line), line

        listed = cli(repo, "deployments --json")
        assert listed.exit_code == 0, listed.output
        found = json.loads(listed.stdout)
        assert list(found) == ["deployments", "replicas"]
        assert [d["strategy"] for d in found["deployments"]] == ["canary"]
        replicas = found["replicas"]
        assert [(r["server"], r["replica"], r["rev"], r["state"]) for r in replicas] == [
            ("local:127.0.0.1:8080", "0", "churn:1", "serving"),
            ("local:127.0.0.1:8080", "1", "churn:1", "serving"),
            ("ray:churn", "a", None, "failed"),
            ("ray:churn", "b", "churn:1", "serving"),
            ("ray:churn", "c", "churn:1", "stopped"),
        ]
        assert replicas[1]["versions"] == [1, 2]
        assert replicas[2]["error"] == "cannot load churn:2: disk full"
        assert (replicas[0]["host"], replicas[0]["pid"]) == ("web1", 11)
        seen = datetime.fromisoformat(replicas[3]["seen_at"])
        assert timedelta(minutes=2) < datetime.now(UTC) - seen < timedelta(minutes=3)
        assert datetime.fromisoformat(replicas[3]["started_at"]) > seen

        help_text = cli(repo, "deployments --help")
        assert "replica" in help_text.stdout


# -- known bugs ---------------------------------------------------------------------------


def test_blue_green_to_an_older_version_is_either_done_or_not_recorded(fresh_churn):
    repo, _ = fresh_churn(serve=False)
    try:
        repo.deploy("churn", strategy="blue-green", candidate="churn:1")
    except ModelkeepError:
        assert repo.deployments("churn") == [], "refused, yet recorded as completed"
    else:
        assert repo.resolve("churn@production").number == 1


def test_rollback_after_an_aborted_canary_goes_to_the_earlier_target(fresh_churn):
    repo, _ = fresh_churn(serve=False)  # production: 1 → 2
    repo.deploy("churn", strategy="canary", candidate="churn:3", percent=10)
    repo.end_deployment("churn", promote=False)
    assert repo.resolve("churn@production^").number == 1
    repo.rollback("churn@production")
    assert repo.resolve("churn@production").number == 1


def test_a_server_started_during_a_canary_serves_the_candidate(fresh_churn, serving_factory):
    repo, _ = fresh_churn(serve=False)
    repo.deploy("churn", strategy="canary", candidate="churn:3", percent=100)
    with serving_factory(repo.root) as served:
        r = served.predict([[0.1, 0.2, 0.3, 0.4]], key="customer-1")
        assert r.status_code == 200, r.text
        assert r.headers[VERSION_HEADER] == "churn:3"
