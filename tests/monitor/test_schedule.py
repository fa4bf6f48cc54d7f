"""Scheduled checks: slots aligned to UTC, missed slots caught up once, one run per
slot however many daemons race, failures recorded without stopping the others, the
alias followed at each run, bad input refused, and the daemon through the CLI.

The clock is driven through ``Repo.run_due(now=…)``; only the daemon tests use the
real one (with a 1 s period, so a slot is due within a second).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import modelkeep
from modelkeep.errors import ConflictError, UsageError
from modelkeep.monitor.records import Records
from modelkeep.monitor.schedule import check_template, parse_every, slot_fields

FEATURES = ["a", "b", "c"]
HOUR = 3600


def batch(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    x = pd.DataFrame({f: rng.normal(shift, 1.0, n) for f in FEATURES})
    return x.assign(label=(x["a"] + 0.5 * x["b"] > 0).astype(np.int64))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """churn:1 and churn:2 (both with reference profiles), @production → churn:1."""
    from sklearn.linear_model import LogisticRegression

    base = tmp_path_factory.mktemp("schedule")
    rng = np.random.default_rng(7)
    train = batch(rng, 800)
    train.to_csv(base / "train.csv", index=False)
    root = base / "repo"
    with modelkeep.Repo.init(root) as repo:
        for c in (1.0, 0.1):
            model = LogisticRegression(C=c).fit(train[FEATURES], train["label"])
            repo.commit(
                "churn",
                model,
                f"C={c}",
                data=[base / "train.csv"],
                target="label",
                input_example=train[FEATURES].head(),
            )
        repo.commit("bare", LogisticRegression().fit(train[FEATURES], train["label"]))
        repo.promote("churn:1", "production")
    return root


@dataclass
class World:
    root: Path
    data: Path
    rng: np.random.Generator

    def repo(self) -> modelkeep.Repo:
        return modelkeep.Repo(self.root)

    def write(self, slot: int, shift: float = 0.0, rows: int = 300) -> Path:
        """The batch of ``slot`` at data/{date}/{time}.csv."""
        fields = slot_fields(slot)
        path = self.data / fields["date"] / f"{fields['time']}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        batch(self.rng, rows, shift).to_csv(path, index=False)
        return path

    @property
    def template(self) -> str:
        return str(self.data / "{date}" / "{time}.csv")


@pytest.fixture
def world(built: Path, tmp_path: Path) -> World:
    root = tmp_path / "repo"
    shutil.copytree(built, root)
    return World(root, tmp_path / "data", np.random.default_rng(11))


def at(slot: int, seconds: float = 0.0) -> datetime:
    return datetime.fromtimestamp(slot + seconds, UTC)


def state(repo: modelkeep.Repo) -> dict[str, Any]:
    """What scheduling may change: schedules (removed too), events, reports."""
    return {
        "schedules": [s.to_dict() for s in repo.schedules(include_removed=True)],
        "events": [e.to_dict() for e in repo.events()],
        "reports": [repo.reports(f"churn:{n}") for n in (1, 2)],
    }


# -- pure parts -------------------------------------------------------------------


def test_template_fields_come_from_the_slot_in_utc() -> None:
    slot = int(datetime(2026, 11, 27, 6, 0, tzinfo=UTC).timestamp())
    assert slot_fields(slot) == {
        "date": "2026-11-27",
        "time": "0600",
        "datetime": "20261127T0600",
        "hour": "06",
        "slot": str(slot),
    }


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("1h", 3600), ("1d", 86400), ("90", 90), ("1.5m", 90)],
)
def test_periods_parse_to_whole_seconds(text: str, seconds: int) -> None:
    assert parse_every(text) == seconds
    assert parse_every(timedelta(seconds=seconds)) == seconds


@pytest.mark.parametrize("text", ["1x", "0s", "0.5s", "-1h", "", "h"])
def test_bad_periods_are_refused(text: str) -> None:
    with pytest.raises(UsageError, match="every"):
        parse_every(text)


def test_a_relative_template_is_taken_from_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "odd{name}"
    folder.mkdir()
    monkeypatch.chdir(folder)
    template = check_template("data/{date}.csv")
    # The folder's braces stay literal; the field is filled.
    assert template.format(**slot_fields(0)) == str(folder / "data" / "1970-01-01.csv")
    assert check_template("/abs/{slot}.csv") == "/abs/{slot}.csv"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("data/{day}.csv", "unknown field {day}"),
        ("data/{}.csv", "unknown field {}"),
        ("data/{date.year}.csv", "unknown field {date.year}"),
        ("data/{date!r}.csv", "without a conversion"),
        ("data/{hour:03}.csv", "without a conversion or format spec"),
        ("data/{date.csv", "does not parse"),
        ("  ", "empty"),
    ],
)
def test_bad_templates_are_refused(template: str, message: str) -> None:
    with pytest.raises(UsageError, match="data template") as info:
        check_template(template)
    assert message in str(info.value)
    if "unknown" in message:
        assert "{date}, {time}, {datetime}, {hour}, {slot}" in str(info.value)


# -- running on the schedule -----------------------------------------------------------


def test_runs_at_the_first_due_slot_and_not_again_within_it(world: World) -> None:
    with world.repo() as repo:
        sched = repo.schedule("churn@production", "1h", world.template, target="label")
        first = sched.first_slot
        created = sched.created_at.timestamp()
        # The first slot is the first hour boundary at or after creation, never before.
        assert first % HOUR == 0
        assert created <= first < created + HOUR
        assert sched.next_due == at(first)
        path = world.write(first)

        assert repo.run_due(at(first, -1)) == []
        assert repo.run_due(at(first - HOUR)) == []  # before the schedule existed
        runs = repo.run_due(at(first, 5))
        assert len(runs) == 1
        run = runs[0]
        assert run.ok, run.error
        assert (run.schedule, run.slot, run.data) == (sched.id, at(first), str(path))
        assert run.version == "churn:1"
        assert run.drifted is False
        assert run.metrics is not None
        assert run.metrics["accuracy"] > 0.8
        assert repo.run_due(at(first, 600)) == []  # +10 min: same slot, already run

        report = repo.reports("churn:1")[0]
        assert report["id"] == run.report
        assert report["source"] == f"schedule #{sched.id}: {path}"
        assert report["drifted"] is False
        now = repo.schedules()[0]
        assert now.last_slot == at(first)
        assert (now.last_status, now.last_report, now.last_error) == ("ok", run.report, None)
        assert now.next_due == at(first + HOUR)
        event = repo.events("churn", limit=1)[0]
        assert event.action == "monitor.scheduled"
        assert event.ref_name == "production"
        assert event.details["report"] == run.report
        assert event.details["drifted"] is False
        assert event.details["version"] == "churn:1"
        assert event.details["slot"] == at(first).isoformat()


def test_a_five_hour_gap_is_caught_up_by_one_run_of_the_latest_slot(world: World) -> None:
    with world.repo() as repo:
        sched = repo.schedule("churn@production", "1h", world.template)
        first = sched.first_slot
        world.write(first)
        assert len(repo.run_due(at(first))) == 1
        # The daemon was away for five hours: slots first+1h … first+5h were missed.
        for k in range(1, 6):
            world.write(first + k * HOUR, shift=1.5 if k == 5 else 0.0)
        runs = repo.run_due(at(first + 5 * HOUR, 7 * 60))
        assert len(runs) == 1
        latest = first + 5 * HOUR
        fields = slot_fields(latest)
        assert runs[0].slot == at(latest)
        assert runs[0].data == str(world.data / fields["date"] / f"{fields['time']}.csv")
        assert runs[0].drifted is True  # it judged the latest batch, the drifted one
        assert set(runs[0].drifted_features) >= {"a", "b"}
        assert repo.run_due(at(latest, 8 * 60)) == []
        sources = [r["source"] for r in repo.reports("churn:1")]
        assert len(sources) == 2
        assert repo.schedules()[0].last_status == "drift"
        event = repo.events("churn", limit=1)[0]
        assert (event.action, event.details["drifted"]) == ("monitor.scheduled", True)


def test_daily_slots_start_at_midnight_utc(world: World) -> None:
    with world.repo() as repo:
        sched = repo.schedule("churn@production", "1d", world.template)
        assert at(sched.first_slot).time() == datetime.min.time()
        world.write(sched.first_slot)
        (run,) = repo.run_due(at(sched.first_slot, 3 * HOUR))
        assert run.ok, run.error
        assert run.data.endswith(f"{slot_fields(sched.first_slot)['date']}/0000.csv")


def test_two_daemons_racing_run_each_slot_once(world: World) -> None:
    with world.repo() as repo:
        sched = repo.schedule("churn@production", "1h", world.template)
    slots = [sched.first_slot + k * HOUR for k in range(4)]
    for slot in slots:
        world.write(slot, rows=100)
    barrier = threading.Barrier(2)
    ran: list[list[int]] = [[], []]
    errors: list[BaseException] = []

    def daemon(i: int) -> None:
        try:
            with modelkeep.Repo(world.root) as own:
                for slot in slots:
                    barrier.wait(timeout=60)
                    ran[i] += [int(r.slot.timestamp()) for r in own.run_due(at(slot, 1))]
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=daemon, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert errors == []
    assert sorted(ran[0] + ran[1]) == slots
    with world.repo() as repo:
        reports = repo.reports("churn:1")
        assert len(reports) == len(slots)
        done = [e for e in repo.events("churn") if e.action == "monitor.scheduled"]
        assert sorted(e.details["slot"] for e in done) == [at(s).isoformat() for s in slots]


def test_a_missing_file_is_recorded_and_the_other_schedules_still_run(world: World) -> None:
    with world.repo() as repo:
        broken = repo.schedule("churn@production", "1h", str(world.data / "nowhere/{date}.csv"))
        good = repo.schedule("churn@production", "1h", world.template)
        slot = broken.first_slot
        world.write(slot)
        runs = repo.run_due(at(slot, 30))
        assert [r.schedule for r in runs] == [broken.id, good.id]
        failed, ok = runs
        missing = str(world.data / "nowhere" / f"{slot_fields(slot)['date']}.csv")
        assert failed.error == f"{missing}: no such data file"
        assert failed.report is None
        assert ok.ok, ok.error
        listed = {s.id: s for s in repo.schedules()}
        assert listed[broken.id].last_status == "failed"
        assert listed[broken.id].last_error == failed.error
        assert listed[broken.id].outcome == f"failed: {failed.error}"
        assert listed[good.id].last_report == ok.report
        failure = next(e for e in repo.events("churn") if e.action == "monitor.schedule_failed")
        assert failure.details["error"] == failed.error
        assert failure.details["schedule"] == broken.id
        # A failed slot is not retried within the slot; the next slot runs again.
        assert repo.run_due(at(slot, 60)) == []
        world.write(slot + HOUR)
        again = repo.run_due(at(slot + HOUR))
        assert [r.ok for r in again] == [False, True]


def test_bad_data_and_a_vanished_alias_are_failures_not_crashes(world: World) -> None:
    with world.repo() as repo:
        sched = repo.schedule("churn@production", "1h", world.template)
        slot = sched.first_slot
        path = world.write(slot)
        path.write_text("a,b\n1,2\n")  # lacks feature c
        (run,) = repo.run_due(at(slot))
        assert run.error is not None
        assert "lacks the model's input column(s) c" in run.error
        repo.delete_alias("churn@production")
        world.write(slot + HOUR)
        (run,) = repo.run_due(at(slot + HOUR))
        assert run.error is not None
        assert "production" in run.error
        assert run.version is None
        assert repo.schedules()[0].last_status == "failed"


def test_the_schedule_follows_the_alias(world: World) -> None:
    with world.repo() as repo:
        sched = repo.schedule("churn@production", "1h", world.template)
        slot = sched.first_slot
        world.write(slot)
        (first,) = repo.run_due(at(slot))
        assert first.version == "churn:1"
        repo.promote("churn:2", "production", "better")
        world.write(slot + HOUR)
        (second,) = repo.run_due(at(slot + HOUR))
        assert second.version == "churn:2"
        assert [r["id"] for r in repo.reports("churn:2")] == [second.report]
        assert [r["id"] for r in repo.reports("churn:1")] == [first.report]
        assert repo.schedules()[0].revision == "churn@production"


def test_unschedule_stops_the_runs_and_keeps_the_record(world: World) -> None:
    with world.repo() as repo:
        sched = repo.schedule("churn@production", "1h", world.template)
        removed = repo.unschedule(sched.id)
        assert removed.active is False
        world.write(sched.first_slot)
        assert repo.run_due(at(sched.first_slot)) == []
        assert repo.schedules() == []
        assert [s.id for s in repo.schedules(include_removed=True)] == [sched.id]
        assert repo.events("churn", limit=1)[0].action == "monitor.unschedule"
        with pytest.raises(ConflictError, match="already removed"):
            repo.unschedule(sched.id)
        # The same check may be scheduled again once the first is removed.
        again = repo.schedule("churn@production", "1h", world.template)
        assert again.id != sched.id


def test_the_same_check_twice_is_refused(world: World) -> None:
    with world.repo() as repo:
        first = repo.schedule("churn@production", "1h", world.template)
        before = state(repo)
        with pytest.raises(ConflictError, match=f"schedule #{first.id} already checks"):
            repo.schedule("churn@production", "60m", world.template)
        assert state(repo) == before
        # Another period is another check.
        repo.schedule("churn@production", "1d", world.template)


# -- the CLI ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["churn@production", "--every", "1x"], 2, "cannot read duration '1x'"),
        (["churn@production", "--every", "0s"], 2, "'0s' is out of range; use 1s to 366d"),
        (["churn@production", "--every", "1.5s"], 2, "not a whole number of seconds"),
        # Once stored, it made `monitor schedules` crash until removed.
        (["churn@production", "--every", "99999999999d"], 2, "out of range; use 1s to 366d"),
        (["churn@production", "--every", "\u0661h"], 2, "cannot read duration"),
        (["churn@production", "--data", "d/{day}.csv"], 2, "unknown field {day}"),
        (["churn@staging"], 3, "staging"),
        (["nosuch@production"], 3, "no model named 'nosuch'"),
        (["churn@@x"], 2, "cannot parse revision"),
        (["bare:1"], 2, "has no reference profile"),
    ],
)
def test_bad_schedules_are_one_line_errors_that_store_nothing(
    cli: Any, world: World, args: list[str], code: int, message: str
) -> None:
    full = [*args]
    if "--every" not in full:
        full += ["--every", "1h"]
    if "--data" not in full:
        full += ["--data", world.template]
    with world.repo() as repo:
        before = state(repo)
    res = cli(world.root, "monitor", "schedule", *full)
    assert res.code == code, res
    assert message in res.one_line_error()
    with world.repo() as repo:
        assert state(repo) == before


def test_unscheduling_an_unknown_id_is_a_one_line_error(cli: Any, world: World) -> None:
    with world.repo() as repo:
        before = state(repo)
    res = cli(world.root, "monitor", "unschedule", "999")
    assert res.code == 3
    assert "no schedule #999" in res.one_line_error()
    with world.repo() as repo:
        assert state(repo) == before


def test_schedule_list_and_unschedule_through_the_cli(cli: Any, world: World) -> None:
    made = cli(
        world.root,
        "monitor",
        "schedule",
        "churn@production",
        "--every",
        "1h",
        "--data",
        world.template,
        "--target",
        "label",
        "--json",
    )
    assert made.code == 0, made.err
    body = json.loads(made.out)
    assert body["revision"] == "churn@production"
    assert (body["every"], body["data"], body["target"]) == (3600, world.template, "label")
    assert body["active"] is True
    assert body["last_slot"] is None
    assert body["outcome"] == "not run yet"

    listed = cli(world.root, "monitor", "schedules", "--json")
    assert listed.code == 0, listed.err
    assert [s["id"] for s in json.loads(listed.out)] == [body["id"]]
    table = cli(world.root, "monitor", "schedules", "churn")
    assert table.code == 0, table.err
    for text in ("churn@production", "1h", "not run yet", "next due", world.template):
        assert text in table.out

    gone = cli(world.root, "monitor", "unschedule", str(body["id"]))
    assert gone.code == 0, gone.err
    assert f"removed schedule #{body['id']}" in gone.out
    assert "no scheduled checks" in cli(world.root, "monitor", "schedules").out
    every = json.loads(cli(world.root, "monitor", "schedules", "--all", "--json").out)
    assert [s["active"] for s in every] == [False]
    again = cli(world.root, "monitor", "unschedule", str(body["id"]))
    assert again.code == 4
    assert "already removed" in again.one_line_error()


def _wait_for_slot(repo: modelkeep.Repo) -> None:
    """Until every schedule's first slot has begun (1 s periods: about a second)."""
    latest = max(s.first_slot for s in repo.schedules())
    while time.time() < latest + 0.01:
        time.sleep(0.05)


def test_daemon_once_runs_what_is_due_through_the_cli(cli: Any, world: World) -> None:
    batch(world.rng, 200).to_csv(world.data.parent / "batch.csv", index=False)
    with world.repo() as repo:
        good = repo.schedule("churn@production", "1s", world.data.parent / "batch.csv")
        _wait_for_slot(repo)
    res = cli(world.root, "monitor", "daemon", "--once", "--json")
    assert res.code == 0, res.err
    (line,) = res.out.splitlines()
    run = json.loads(line)
    assert run["schedule"] == good.id
    assert run["error"] is None
    assert run["version"] == "churn:1"
    with world.repo() as repo:
        assert repo.reports("churn:1")[0]["id"] == run["report"]
        assert repo.schedules()[0].last_slot == datetime.fromisoformat(run["slot"])

    # A failing schedule: its line says why, the good one still runs, exit 1 (for cron).
    with world.repo() as repo:
        bad = repo.schedule("churn@production", "1s", world.data / "missing-{slot}.csv")
        _wait_for_slot(repo)
    res = cli(world.root, "monitor", "daemon", "--once")
    assert res.code == 1, res.err
    lines = res.out.splitlines()
    assert len(lines) == 2
    assert f"schedule #{good.id} churn@production → churn:1 on" in lines[0]
    assert "no drift" in lines[0]
    assert f"schedule #{bad.id} churn@production on" in lines[1]
    assert "failed:" in lines[1]
    assert "no such data file" in lines[1]


def test_daemon_once_refuses_a_bad_poll(cli: Any, world: World) -> None:
    res = cli(world.root, "monitor", "daemon", "--once", "--poll", "0")
    assert res.code == 2
    assert "poll" in res.one_line_error()


@pytest.mark.slow
def test_the_daemon_process_stops_cleanly_on_sigterm(world: World) -> None:
    batch(world.rng, 200).to_csv(world.data.parent / "batch.csv", index=False)
    with world.repo() as repo:
        repo.schedule("churn@production", "1s", world.data.parent / "batch.csv")
    env = {**os.environ, "NO_COLOR": "1"}
    argv = [sys.executable, "-m", "modelkeep", "--repo", str(world.root), "monitor", "daemon"]
    lines: queue.Queue[str] = queue.Queue()
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        out = proc.stdout
        reader = threading.Thread(target=lambda: [lines.put(x) for x in out])
        reader.start()
        try:
            first = lines.get(timeout=120)  # the first run's line, flushed as it happened
            assert "schedule #1 churn@production → churn:1" in first
            assert "no drift" in first
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=10)
        err = proc.stderr.read()
    assert code == 0, err
    assert "SIGTERM: stopping" in err
    assert "Traceback" not in err
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    assert all("failed" not in line for line in [first, *rest])
    with world.repo() as repo:
        assert len(repo.reports("churn:1")) == 1 + len(rest)
        assert repo.schedules()[0].last_status in ("ok", "drift")


def test_a_registry_from_before_schedules_is_migrated(tmp_path: Path) -> None:
    """A registry at migration 0004 gains the schedules table when opened."""
    from alembic import command
    from alembic.config import Config

    from modelkeep.registry import Registry
    from modelkeep.registry import registry as registry_module

    url = f"sqlite:///{tmp_path / 'registry.db'}"
    old = Registry(url)
    config = Config()
    config.set_main_option(
        "script_location", str(Path(registry_module.__file__).parent / "migrations")
    )
    with old.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0004")
        tables = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master")}
    old.dispose()
    assert "monitor_schedules" not in tables
    reg = Registry(url)
    try:
        reg.check_schema()
        assert reg.schedules(active=False) == []
    finally:
        reg.dispose()


# -- the model's policy judges scheduled reports -----------------------------------

DRIFT_ROLLBACK = """
[[rule]]
name = "batches drift"
metric = "drift_share"
above = 0.5
windows = 2
action = "rollback"
cooldown = "0s"
"""


def test_two_drifted_batches_roll_production_back_even_from_cron(world: World) -> None:
    with world.repo() as repo:
        repo.promote("churn:2", "production")
        repo.set_policy("churn", DRIFT_ROLLBACK)
        sched = repo.schedule("churn@production", "1h", world.template)
    first = sched.first_slot
    runs = []
    # Each slot in a fresh Repo, as `monitor daemon --once` from cron would run it.
    for k, shift in enumerate((0.0, 2.0, 2.0)):
        world.write(first + k * HOUR, shift=shift)
        with world.repo() as repo:
            runs += repo.run_due(at(first + k * HOUR, 60))
    assert [r.drifted for r in runs] == [False, True, True]
    assert [r.actions for r in runs[:2]] == [(), ()]
    assert runs[2].actions == ("batches drift → rolled back churn:2 → churn:1",)
    with world.repo() as repo:
        assert repo.resolve("churn@production").number == 1
        alert = next(e for e in repo.events("churn") if e.action == "monitor.alert")
        assert alert.details["source"] == f"schedule #{sched.id}"
        assert alert.details["windows"] == [runs[1].report, runs[2].report]
        assert all(v > 0.5 for v in alert.details["values"])
        rollback = next(e for e in repo.history("churn@production") if e.action == "rollback")
        assert "policy 'batches drift'" in rollback.message
        assert f"report(s) of schedule #{sched.id}" in rollback.message
        # The next drifted batch judges churn:1, which has one failing report: no action.
        world.write(first + 3 * HOUR, shift=2.0)
        later = repo.run_due(at(first + 3 * HOUR, 60))
        assert later[0].version == "churn:1"
        assert later[0].actions == ()


def test_the_same_reports_never_fire_twice(world: World) -> None:
    from modelkeep.monitor.schedule import apply_policy

    policy = DRIFT_ROLLBACK.replace("windows = 2", "windows = 1").replace("rollback", "alert")
    with world.repo() as repo:
        repo.set_policy("churn", policy)
        sched = repo.schedule("churn@production", "1h", world.template)
        world.write(sched.first_slot, shift=2.0)
        (run,) = repo.run_due(at(sched.first_slot, 60))
        assert run.actions == ("batches drift → alerted",)
        # Applying the policy to the same report again (a daemon restarted mid-way).
        assert apply_policy(repo._e, repo.schedules()[0], run) == []
        alerts = [e for e in repo.events("churn") if e.action == "monitor.alert"]
        assert len(alerts) == 1
        assert repo.resolve("churn@production").number == 1


def test_a_drifted_labelled_batch_triggers_a_gated_update(world: World) -> None:
    policy = """
rules:
  - name: retrain on drift
    metric: drift_share
    above: 0.3
    action: update
    strategy: batch
    gate: accuracy >= 0
    min_rows: 50
"""
    with world.repo() as repo:
        repo.set_policy("churn", policy)
        # Without labels (no --target) the rule cannot update, and says so.
        unlabelled = repo.schedule("churn@production", "1h", world.template)
        world.write(unlabelled.first_slot, shift=2.0)
        (run,) = repo.run_due(at(unlabelled.first_slot, 60))
        assert run.actions == (
            f"retrain on drift → cannot update: schedule #{unlabelled.id} has no target, so "
            "its batches carry no labels",
        )
        assert repo.resolve("churn@production").number == 1
        repo.unschedule(unlabelled.id)
        # With labels: a batch update, gated, promoted.
        sched = repo.schedule("churn@production", "1h", world.template, target="label")
        (run,) = repo.run_due(at(sched.first_slot, 60))
        assert run.actions == (
            "retrain on drift → updated: churn:3 passed its gate and is now @production",
        )
        production = repo.resolve("churn@production")
        assert (production.number, production.kind) == (3, "update.batch")
        assert run.data in production.annotations["update"]["datasets"]
        alerts = [e for e in repo.events("churn") if e.action == "monitor.alert"]
        assert alerts[0].details["update"]["candidate"] == "churn:3"


def test_live_windows_between_batches_do_not_hide_the_schedules_reports(world: World) -> None:
    with world.repo() as repo:
        repo.promote("churn:2", "production")
        repo.set_policy("churn", DRIFT_ROLLBACK)
        sched = repo.schedule("churn@production", "1h", world.template)
        first = sched.first_slot
        world.write(first, shift=2.0)
        repo.run_due(at(first, 60))
        # A busy server stores many window reports of churn:2 meanwhile.
        version = repo.resolve("churn:2")
        for i in range(250):
            Records(repo._e).record_report(
                version, kind="window", source=f"window {i}", drifted=False, body={"rows": 1}
            )
        world.write(first + HOUR, shift=2.0)
        (run,) = repo.run_due(at(first + HOUR, 60))
    assert run.actions == ("batches drift → rolled back churn:2 → churn:1",)


def test_a_check_that_never_finished_is_named_in_the_log(world: World) -> None:
    with world.repo() as repo:
        sched = repo.schedule("churn@production", "1h", world.template)
        first = sched.first_slot
        # A daemon claimed the first slot, then died before recording its outcome.
        assert Records(repo._e).claim_schedule_slot(sched.id, expected=None, slot=first)
        assert repo.schedules()[0].last_status == "running"
        world.write(first + HOUR)
        (run,) = repo.run_due(at(first + HOUR, 60))
        assert run.ok
        failed = [e for e in repo.events("churn") if e.action == "monitor.schedule_failed"]
    assert len(failed) == 1
    assert failed[0].details["error"] == "interrupted"
    assert failed[0].details["slot"] == at(first).isoformat()
