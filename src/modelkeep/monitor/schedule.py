"""Scheduled periodic checks: `monitor run` on a data path that names its time slot.

A schedule checks a revision (``churn@production``, resolved at each run, so it
follows the alias) every ``every`` seconds on a path template such as
``data/{date}.parquet``. Slots are aligned to the Unix epoch in UTC (``1h`` on the
hour, ``1d`` at midnight UTC). At any moment the due slot is the latest one that has
begun; if it has not run, it runs once — so after a gap the missed slots are caught
up by one run, not replayed — and never a slot from before the schedule existed.

A slot is claimed by a compare-and-swap on the schedule's ``last_slot`` before the
check runs: of two daemons that see the same slot, one runs it. A slot is run at most
once: a daemon killed mid-check loses that slot, and the next slot runs as usual.

The model's policy judges each schedule's reports as the server's policy judges its
windows: N consecutive failing reports of the same schedule fire a rule. The state is
read back from the registry (the schedule's reports, and the alerts already fired
with their evidence), so a daemon run from cron with ``--once`` acts exactly as a
long-running one, and never twice on the same reports.

A job: it takes the engine (``modelkeep._engine``), never ``Repo``.
"""

from __future__ import annotations

import logging
import os
import string
import threading
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelkeep import quantities
from modelkeep.errors import ModelkeepError, UsageError
from modelkeep.monitor.periodic import reference_of, run_check
from modelkeep.monitor.records import Records
from modelkeep.revision import Revision

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from modelkeep._engine import Engine
    from modelkeep.registry.records import Schedule

log = logging.getLogger("modelkeep.monitor")

# Template fields, all from the slot's start in UTC.
FIELDS = {
    "date": "%Y-%m-%d",  # 2026-11-27
    "time": "%H%M",  # 0600
    "datetime": "%Y%m%dT%H%M",  # 20261127T0600
    "hour": "%H",  # 06
}
FIELD_NAMES = (*FIELDS, "slot")  # slot: Unix seconds


def parse_every(every: str | float | timedelta) -> int:
    """A period as whole seconds from 1 s to a year, from ``30s``, ``10m``, ``2h``,
    ``1d``, a number of seconds or a ``timedelta``."""
    seconds = quantities.duration(every, "every", low=1)
    if seconds != int(seconds):
        raise UsageError(
            f"every: {every!r} is not a whole number of seconds; use e.g. 30s, 10m, 1h, 1d"
        )
    return int(seconds)


def check_template(template: str) -> str:
    """The template, made absolute against the current folder (so a daemon started
    anywhere reads the same files), after checking it names only known fields."""
    allowed = ", ".join(f"{{{f}}}" for f in FIELD_NAMES)
    if not template.strip():
        raise UsageError("the data template is empty; give a path such as data/{date}.parquet")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise UsageError(
            f"data template {template!r} does not parse ({exc}); write a literal brace as "
            "{{ or }}"
        ) from None
    for _literal, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in FIELD_NAMES:
            raise UsageError(
                f"data template {template!r} has an unknown field {{{name}}}; "
                f"the fields are {allowed}"
            )
        if spec or conversion:
            raise UsageError(
                f"data template {template!r}: write the field as {{{name}}}, without "
                "a conversion or format spec"
            )
    path = os.path.expanduser(template)
    if not os.path.isabs(path):
        # Braces in the folder's own name must stay literal.
        here = str(Path.cwd()).replace("{", "{{").replace("}", "}}")
        path = os.path.join(here, path)
    return path


def slot_fields(slot: int) -> dict[str, str]:
    at = datetime.fromtimestamp(slot, UTC)
    return {**{k: at.strftime(fmt) for k, fmt in FIELDS.items()}, "slot": str(slot)}


def format_template(template: str, slot: int) -> str:
    return template.format(**slot_fields(slot))


def validate(
    engine: Engine, rev: str, every: str | float | timedelta, data: str | os.PathLike[str]
) -> tuple[Revision, int, str]:
    """What ``Repo.schedule`` stores, checked: the revision resolves now to a version
    with a reference profile, the period parses, the template names known fields."""
    revision = Revision.parse(rev)
    seconds = parse_every(every)
    template = check_template(os.fspath(data))
    reference_of(engine, engine.versions.resolve(revision))
    return revision, seconds, template


@dataclass(frozen=True)
class ScheduledRun:
    """One scheduled check: which slot, on which file, and what came of it."""

    schedule: int
    revision: str
    slot: datetime
    data: str
    version: str | None = None  # the version the revision named at the run
    report: int | None = None
    drifted: bool | None = None
    drifted_features: tuple[str, ...] = ()
    metrics: dict[str, Any] | None = None
    error: str | None = None
    actions: tuple[str, ...] = ()  # what the model's policy did about this report

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["slot"] = self.slot.isoformat()
        out["drifted_features"] = list(self.drifted_features)
        return out

    def line(self) -> str:
        """One log line: when, which schedule, what it judged and the verdict."""
        head = (
            f"{self.slot:%Y-%m-%dT%H:%M:%SZ} schedule #{self.schedule} {self.revision}"
            + (f" → {self.version}" if self.version else "")
            + f" on {self.data}: "
        )
        if self.error is not None:
            return head + f"failed: {self.error}"
        verdict = (
            f"drift in {', '.join(self.drifted_features) or 'predictions'}"
            if self.drifted
            else "no drift"
        )
        return head + f"report #{self.report}, {verdict}" + "".join(f"; {a}" for a in self.actions)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, ModelkeepError) else f"{type(exc).__name__}: {text}"


def _ref(schedule: Schedule) -> str | None:
    return Revision.parse(schedule.revision).ref


def run_slot(engine: Engine, schedule: Schedule, slot: int) -> ScheduledRun:
    """Run the check of a slot this process has claimed, and record what came of it."""
    at = datetime.fromtimestamp(slot, UTC)
    path = format_template(schedule.data, slot)
    details: dict[str, Any] = {
        "schedule": schedule.id,
        "slot": at.isoformat(),
        "data": path,
    }
    try:
        body = run_check(
            engine,
            schedule.revision,
            path,
            target=schedule.target,
            source=f"schedule #{schedule.id}: {path}",
        )
    except Exception as exc:  # one bad schedule must never stop the others
        if not isinstance(exc, ModelkeepError):
            log.exception("schedule #%s: the check raised unexpectedly", schedule.id)
        run = ScheduledRun(schedule.id, schedule.revision, at, path, error=_one_line(exc))
        Records(engine).record_schedule_outcome(
            schedule.id, slot=slot, status="failed", error=run.error
        )
        engine.refs.record_event(
            schedule.model,
            "monitor.schedule_failed",
            f"schedule #{schedule.id} ({schedule.revision}) on {path}: {run.error}",
            ref=_ref(schedule),
            details={**details, "error": run.error},
        )
        return run
    drift = body["drift"]
    run = ScheduledRun(
        schedule.id,
        schedule.revision,
        at,
        path,
        version=body["version"],
        report=body["id"],
        drifted=bool(drift["drifted"]),
        drifted_features=tuple(drift.get("drifted_features", ())),
        metrics=body.get("metrics"),
    )
    Records(engine).record_schedule_outcome(
        schedule.id, slot=slot, status="drift" if run.drifted else "ok", report=run.report
    )
    engine.refs.record_event(
        schedule.model,
        "monitor.scheduled",
        f"schedule #{schedule.id}: {run.version} on {path}: "
        + (f"drift (report #{run.report})" if run.drifted else f"no drift (report #{run.report})"),
        ref=_ref(schedule),
        details={
            **details,
            "version": run.version,
            "report": run.report,
            "drifted": run.drifted,
            "drifted_features": list(run.drifted_features),
            **({"metrics": run.metrics} if run.metrics is not None else {}),
        },
    )
    return run


def apply_policy(engine: Engine, schedule: Schedule, run: ScheduledRun) -> list[str]:
    """Feed the schedule's reports on the judged version through the model's policy;
    act on what fires with this run's report as the newest evidence. Returns one
    "rule → outcome" line per action."""
    rules = Records(engine).policy(schedule.model)
    if not rules or run.version is None or run.report is None:
        return []
    from modelkeep.monitor import actions
    from modelkeep.monitor.policy import Evaluator

    version = engine.versions.resolve(run.version)
    source = f"schedule #{schedule.id}"
    mine = [
        r
        for r in Records(engine).reports(version.rev, limit=200, kind="batch")
        if str(r["source"]).startswith(f"{source}:")
    ][::-1]  # oldest first
    evaluator = Evaluator(rules)
    # What already fired: its evidence is used up, and its time starts the cooldown.
    for event in engine.refs.events(schedule.model, limit=1000):
        if event.action != "monitor.alert" or event.details.get("source") != source:
            continue
        state = evaluator.state.get(str(event.details.get("rule")))
        if state is not None:
            state.used |= set(event.details.get("windows", ()))
            state.last_fired = max(state.last_fired, event.at.timestamp())
    fired = []
    for report in mine:
        values = {**report.get("metrics", {}), "drift_share": report["drift"]["share"]}
        at = datetime.fromisoformat(report["at"]).timestamp()
        firings = evaluator.window(report["id"], values, version.metrics, now=at)
        if report["id"] == run.report:
            fired = firings
    rev = Revision.parse(schedule.revision)
    aliases = {r.name for r in engine.refs.refs(schedule.model, "alias")}
    alias = rev.ref if rev.ref in aliases and not (rev.back or rev.ancestry) else None
    out = []
    for firing in fired:
        rule = firing.rule
        text, evidence = actions.evidence_of(firing, version.rev, source)
        log.warning("%s → %s", text, rule.action)
        outcome = "alerted"
        if rule.action != "alert" and alias is None:
            outcome = f"cannot {rule.action}: {source} follows {schedule.revision}, not an alias"
        elif rule.action == "rollback":
            assert alias is not None
            outcome = actions.rollback(engine, schedule.model, alias, text, version.rev)
        elif rule.action == "update":
            assert alias is not None
            if schedule.target is None:
                outcome = f"cannot update: {source} has no target, so its batches carry no labels"
            else:
                outcome, details = actions.update(
                    engine,
                    schedule.model,
                    alias,
                    rule,
                    run.data,
                    schedule.target,
                    text,
                    version.rev,
                )
                evidence["update"] = details
        evidence["outcome"] = outcome
        engine.refs.record_event(
            schedule.model,
            "monitor.alert",
            f"{text}; {outcome}",
            ref=alias,
            details=evidence,
        )
        if rule.webhook:
            actions.post(rule.webhook, evidence)
        out.append(f"{rule.name} → {outcome}")
    return out


def _aware(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now if now.tzinfo else now.replace(tzinfo=UTC)  # naive means UTC


def iter_due(
    engine: Engine, now: datetime | None = None, stop: threading.Event | None = None
) -> Iterator[ScheduledRun]:
    """Claim and run, one after the other, the slots due at ``now``; stops claiming
    when ``stop`` is set (the run under way finishes first)."""
    moment = _aware(now)
    for schedule in Records(engine).schedules():
        if stop is not None and stop.is_set():
            return
        slot = schedule.due(moment)
        if slot is None:
            continue
        seen = None if schedule.last_slot is None else int(schedule.last_slot.timestamp())
        if not Records(engine).claim_schedule_slot(schedule.id, expected=seen, slot=slot):
            continue  # another daemon claimed it (or it was unscheduled) since we looked
        if schedule.last_status == "running" and schedule.last_slot is not None:
            # Its outcome is about to be overwritten: say in the log that it never came.
            missing = schedule.last_slot.isoformat()
            engine.refs.record_event(
                schedule.model,
                "monitor.schedule_failed",
                f"schedule #{schedule.id} ({schedule.revision}): the check of slot {missing} "
                "never reported an outcome (its daemon stopped mid-check, or it still runs)",
                ref=_ref(schedule),
                details={"schedule": schedule.id, "slot": missing, "error": "interrupted"},
            )
        run = run_slot(engine, schedule, slot)
        if run.ok:
            try:
                done = apply_policy(engine, schedule, run)
            except Exception as exc:  # a broken policy must not stop the checks
                if not isinstance(exc, ModelkeepError):
                    log.exception("schedule #%s: the policy raised unexpectedly", schedule.id)
                done = [f"policy not applied: {_one_line(exc)}"]
            run = replace(run, actions=tuple(done))
        yield run


def run_due(engine: Engine, now: datetime | None = None) -> list[ScheduledRun]:
    return list(iter_due(engine, now))


def _until_next(engine: Engine, poll: float) -> float:
    """Seconds to sleep: until the earliest next slot, at most ``poll`` (which is how
    soon schedules added meanwhile are noticed)."""
    upcoming = [s.next_due for s in Records(engine).schedules()]
    if not upcoming:
        return poll
    wait = (min(upcoming) - datetime.now(UTC)).total_seconds()
    # A little past the slot's start: waking a hair early would find nothing due.
    return min(poll, max(0.0, wait) + 0.05)


def daemon(
    engine: Engine,
    *,
    poll: float = 30.0,
    once: bool = False,
    stop: threading.Event | None = None,
    on_run: Callable[[ScheduledRun], None] | None = None,
    on_error: Callable[[str], None] | None = None,
) -> int:
    """Run due checks until ``stop`` is set (or once); returns how many runs failed.

    A registry that is busy or briefly unreachable is reported through ``on_error``
    and tried again at the next poll: the daemon outlives it."""
    quantities.number(poll, "poll", low=0, high=86400, low_open=True)
    stop = stop or threading.Event()
    failed = 0
    while not stop.is_set():
        try:
            for run in iter_due(engine, stop=stop):
                failed += not run.ok
                if on_run is not None:
                    on_run(run)
            wait = poll if once else _until_next(engine, poll)
        except ModelkeepError as exc:
            if once:
                raise
            if on_error is not None:
                on_error(f"{_one_line(exc)}; trying again in {poll:g} s")
            wait = poll
        if once:
            break
        stop.wait(wait)
    return failed
