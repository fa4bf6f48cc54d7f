"""The `monitor` group: run, policy, report, schedule, schedules, unschedule, daemon."""

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from modelkeep.cli import render
from modelkeep.cli.base import (
    JsonOpt,
    MessageOpt,
    monitor_app,
    number,
    open_repo,
    whole,
)
from modelkeep.cli.render import emit_json, out


@monitor_app.command("run")
def monitor_run(
    rev: Annotated[str, typer.Argument(help="Revision to judge, e.g. churn@production.")],
    data: Annotated[Path, typer.Option("--data", help="Batch of inputs (CSV, Parquet).")],
    target: Annotated[
        str | None, typer.Option("--target", help="Label column: adds quality metrics.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a batch against the version's reference profile; store the report.

    Tests: numeric columns KS (p < 0.05) for references of ≤ 1000 rows, else
    Wasserstein/std ≥ 0.1; categorical chi-square (p < 0.05), else Jensen–Shannon ≥ 0.1;
    the dataset drifts when half its features do. Exit 1 when it drifts."""
    body = open_repo().monitor(rev, data, target=target)
    if as_json:
        emit_json(body)
    else:
        render.monitor_report(body)
    if body["drift"]["drifted"]:
        raise typer.Exit(1)


@monitor_app.command("policy")
def monitor_policy(
    name: Annotated[str, typer.Argument(help="Model name.")],
    path: Annotated[
        Path | None, typer.Argument(help="Policy file (TOML or YAML) to attach.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Attach a policy to a model (or show it). A running server applies it to every
    monitoring window of the served version, and scheduled checks to every report:

    \b
        [[rule]]
        name = "quality drop"
        metric = "f1"                # live metric from feedback labels, or drift_share
        below = "reference - 0.05"   # or above = 0.3; reference = the version's metric
        windows = 3                  # consecutive failing windows
        action = "rollback"          # rollback | update | alert
        cooldown = "10m"
        webhook = "http://127.0.0.1:9000/hook"   # optional: POST the evidence

    \b
        [[rule]]
        name = "features drift"
        metric = "drift_share"
        above = 0.3
        windows = 2
        action = "update"            # train on recent labelled traffic, gate, promote
        strategy = "incremental"     # or batch
        gate = "f1 >= parent"        # optional; min_rows = 200, promote = true

    A metric is one the model's task reports (classification: accuracy, f1, precision,
    recall, auc; regression: rmse, mae, r2) or drift_share. In YAML the same keys go
    in a list under `rules:`.
    """
    from modelkeep.errors import PathNotFoundError, UsageError

    repo = open_repo()
    if path is not None:
        if path.is_dir():
            raise UsageError(f"{path} is a folder: give the policy file (TOML or YAML)")
        if not path.is_file():
            raise PathNotFoundError(f"{path}: no such policy file")
        suffix = path.suffix.lower()
        fmt = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml"}.get(suffix)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(
                f"{path} is not UTF-8 text (byte {exc.start}): a policy is TOML or YAML"
            ) from None
        rules = repo.set_policy(name, text, fmt=fmt)
    else:
        rules = repo.policy(name) or []
    if as_json:
        emit_json([vars(r) for r in rules])
        return
    if not rules:
        out.print(f"{name} has no policy: `modelkeep monitor policy {name} policy.toml`")
    for r in rules:
        bound = f"below {r.below}" if r.below is not None else f"above {r.above}"
        out.print(
            f"{r.name}: {r.metric} {bound} for {r.windows} window(s) → {r.action}"
            + (f" ({r.strategy}, gate {r.gate or 'default'})" if r.action == "update" else "")
            + f" (cooldown {r.cooldown:g} s)"
        )


@monitor_app.command("report")
def monitor_report(
    rev: Annotated[str, typer.Argument(help="Revision whose reports to show.")],
    limit: Annotated[
        int | None,
        typer.Option(
            "-n", parser=whole("-n", 1), help="At most N reports (default 10; --html: 1000)."
        ),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Write one self-contained HTML page with plots (distributions, metrics and "
            "drift over time for every version of the model) to this file.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The monitoring reports stored with a version, newest first (or, with --html, a
    readable page on the whole model)."""
    if html is not None:
        render.check_output_file(html)
        render.write_atomic(html, open_repo().report_html(rev, limit or 1000))
    else:
        found = open_repo().reports(rev, limit or 10)
    if html is not None:
        if as_json:
            emit_json({"html": str(html)})
        else:
            out.print(str(html))
        return
    if as_json:
        emit_json(found)
        return
    for body in found:
        out.print(f"report #{body['id']} at {body['at']} on {body['source']}")
        render.monitor_report(body)


@monitor_app.command("schedule")
def monitor_schedule(
    rev: Annotated[
        str, typer.Argument(help="Revision to judge at each run, e.g. churn@production.")
    ],
    every: Annotated[
        str, typer.Option("--every", help="Period: 30s, 10m, 1h, 1d (aligned to UTC).")
    ],
    data: Annotated[
        str,
        typer.Option(
            "--data",
            help="Path template: {date} {time} {datetime} {hour} {slot} (quote it).",
        ),
    ],
    target: Annotated[
        str | None, typer.Option("--target", help="Label column: adds quality metrics.")
    ] = None,
    message: MessageOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Check a revision on a schedule: `monitor run` on the file of each time slot.

    \b
    modelkeep monitor schedule churn@production --every 1h --data 'batches/{date}/{time}.parquet'
    modelkeep monitor schedule churn@production --every 1d --data 'labels/{date}.csv' --target label

    Slots are aligned to UTC: --every 1h runs on the hour, 1d at midnight UTC. The
    template is filled from the slot's start (UTC): {date} 2026-11-27, {time} 0600,
    {datetime} 20261127T0600, {hour} 06, {slot} Unix seconds; a relative path is taken
    from the current folder. The revision is resolved at each run, so a schedule of
    churn@production judges whatever @production names then. `modelkeep monitor daemon`
    (or cron running `modelkeep monitor daemon --once`) runs the checks; missed slots
    are caught up by one run of the latest, not replayed."""
    found = open_repo().schedule(rev, every, data, target, message)
    if as_json:
        emit_json(found.to_dict())
    else:
        out.print(render.schedule_line(found))


@monitor_app.command("schedules")
def monitor_schedules(
    name: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    include_removed: Annotated[
        bool, typer.Option("--all", help="Include unscheduled (removed) schedules.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """List scheduled checks: period, data template, last slot and outcome, next due
    (times in UTC; "now" when a slot is waiting for the daemon)."""
    from datetime import UTC, datetime

    found = open_repo().schedules(name, include_removed=include_removed)
    if as_json:
        emit_json([s.to_dict() for s in found])
    elif not found:
        out.print(
            "no scheduled checks: `modelkeep monitor schedule REV --every 1h --data TEMPLATE`"
        )
    else:
        out.print(render.schedule_table(found, datetime.now(UTC)))


@monitor_app.command("unschedule")
def monitor_unschedule(
    schedule_id: Annotated[
        int,
        typer.Argument(metavar="ID", parser=whole("ID", 1), help="Schedule id (see schedules)."),
    ],
    message: MessageOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Stop a scheduled check (it stays in `monitor schedules --all` and the event log)."""
    found = open_repo().unschedule(schedule_id, message)
    if as_json:
        emit_json(found.to_dict())
    else:
        out.print(f"removed schedule #{found.id}: {found.revision} every {found.period}")


@monitor_app.command("daemon")
def monitor_daemon(
    once: Annotated[
        bool, typer.Option("--once", help="Run what is due now and exit (for cron).")
    ] = False,
    poll: Annotated[
        float,
        typer.Option(
            "--poll",
            parser=number("--poll", 0.1, 86400),
            help="Look for new or changed schedules at least this often (seconds).",
        ),
    ] = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """Run scheduled checks as their slots begin, until Ctrl-C or SIGTERM.

    \b
    modelkeep monitor daemon                 # keep running (systemd, a container, tmux)
    */5 * * * * modelkeep --repo /srv/models monitor daemon --once    # or from cron

    One line per run on stdout (--json: one JSON object per line); each run also stores
    a report with the version it judged and a monitor.scheduled or
    monitor.schedule_failed event. A failing check is recorded and the others go on.
    Several daemons may watch one repository: each slot runs once. On a signal the
    daemon finishes the check under way and exits 0. --once exits 1 if a check failed."""
    import signal
    import threading

    stop = threading.Event()

    def on_run(run: Any) -> None:
        if as_json:
            sys.stdout.write(json.dumps(run.to_dict(), default=str) + "\n")
        else:
            out.print(run.line())
        sys.stdout.flush()  # a log line is worth little if it waits in a pipe's buffer

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # a second signal: do not wait for the check
        render.err.print(f"{signal.Signals(signum).name}: stopping after the check under way")
        # Set from another thread: the handler runs in the main thread, which may be
        # inside stop.wait() holding the event's lock, and set() would wait for it
        # forever (a daemon that ignored SIGTERM, seen once in a full test run).
        threading.Thread(target=stop.set, name="modelkeep-stop").start()

    previous = {}
    if not once:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        repo = open_repo()
        if not once:
            render.err.print(
                f"watching the schedules of {repo.root} (polling every {poll:g} s); "
                "stop with Ctrl-C or SIGTERM"
            )
        failed = repo.run_daemon(
            poll=poll,
            once=once,
            stop=stop,
            on_run=on_run,
            on_error=lambda text: render.err.print(f"warning: {text}"),
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if once and failed:
        raise typer.Exit(1)
