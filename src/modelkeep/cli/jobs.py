"""Commands that run jobs: update, serve, deploy, deployments."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from modelkeep import quantities
from modelkeep.cli import render
from modelkeep.cli.base import (
    JsonOpt,
    MessageOpt,
    app,
    number,
    open_repo,
    state,
    whole,
)
from modelkeep.cli.render import emit_json, out
from modelkeep.errors import UsageError


@app.command()
def update(
    rev: Annotated[str, typer.Argument(help="Revision to start from, e.g. churn@production.")],
    data: Annotated[
        str, typer.Option("--data", help="New data: CSV/Parquet file or dataset NAME:VERSION.")
    ],
    target: Annotated[str, typer.Option("--target", help="Label column.")],
    strategy: Annotated[
        str,
        typer.Option(
            "--strategy",
            help="incremental (continue the parent on the new data), batch (retrain a fresh "
            "copy on the parent's training data plus the new data) or custom (--trainer).",
        ),
    ] = "incremental",
    gate: Annotated[
        str | None,
        typer.Option(
            "--gate",
            help='Rule the candidate must pass, e.g. "f1 >= parent - 0.01" or "rmse < parent"; '
            "parent is the parent's value of that metric on the same holdout; combine with "
            "and/or. Default: f1 >= parent (classification), rmse <= parent (regression).",
        ),
    ] = None,
    holdout: Annotated[
        str | None,
        typer.Option("--holdout", help="Evaluation data (default: 20 % of --data, seeded)."),
    ] = None,
    train: Annotated[
        str | None,
        typer.Option("--train", help="batch: the full training data (default: the parent's)."),
    ] = None,
    promote_to: Annotated[
        str | None, typer.Option("--promote", help="Alias to move if the gate passes.")
    ] = None,
    trainer: Annotated[
        str | None,
        typer.Option(
            "--trainer",
            help="module:function(parent_model, (X, y), params) -> model (custom, or batch).",
        ),
    ] = None,
    message: Annotated[str | None, typer.Option("-m", "--message", help="Why.")] = None,
    accept_contradicting_data: Annotated[
        bool,
        typer.Option(
            "--accept-contradicting-data",
            help="Let the gate decide even when REV scores far below its recorded metrics "
            "on the new data (by default that means the data contradicts the model: "
            "flipped labels, a broken join, a concept shift; the candidate is rejected).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a candidate from REV on new data, gate it against REV, commit it either way.

    Passed: the next version on REV's branch (and --promote moves the alias). Rejected:
    committed on branch `candidates` with status rejected and the reason; exit code 1.
    The gate also checks the candidate on REV's validation data (the holdout of the
    update that made REV), and refuses new data on which REV scores far below its
    recorded metrics."""
    result = open_repo().update(
        rev,
        data=data,
        target=target,
        strategy=strategy,
        gate=gate,
        holdout=holdout,
        train=train,
        promote=promote_to,
        trainer=trainer,
        message=message,
        accept_contradicting_data=accept_contradicting_data,
    )
    if as_json:
        emit_json(result.to_dict())
    else:
        render.update_table(result)
    if not result.passed:
        raise typer.Exit(1)


@app.command()
def serve(
    rev: Annotated[str, typer.Argument(help="MODEL@ALIAS to follow, e.g. churn@production.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[
        int,
        typer.Option(
            help="Worker processes. With more than one, monitoring windows are slots of "
            "--window-seconds of wall-clock time, merged across workers."
        ),
    ] = 1,
    max_body: Annotated[
        int, typer.Option("--max-body", help="Largest request body in bytes (else 413).")
    ] = 8 << 20,
    window_rows: Annotated[
        int, typer.Option("--window-rows", help="Monitoring window: close after this many rows.")
    ] = 500,
    window_seconds: Annotated[
        float, typer.Option("--window-seconds", help="…or after this many seconds.")
    ] = 30.0,
    monitor: Annotated[
        bool, typer.Option("--monitor/--no-monitor", help="Summarise traffic in windows.")
    ] = True,
    feedback_token_file: Annotated[
        Path | None,
        typer.Option(
            "--feedback-token-file",
            help="Deprecated (goes in the next release): a file holding a shared secret "
            "also taken for POST /v2/models/NAME/feedback. Feedback is on without it: "
            "clients send a token with write scope on the model (modelkeep token create "
            "--scope write) as 'Authorization: Bearer <token>'.",
        ),
    ] = None,
    on_ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="Run as a Ray Serve application (the ray extra): the same HTTP surface, "
            "rollouts and monitoring, on replicas across the cluster. Blocks until "
            "interrupted, then takes the application down.",
        ),
    ] = False,
    replicas: Annotated[
        int,
        typer.Option(
            "--replicas", parser=whole("--replicas", 1, 1024), help="--ray: replicas to run."
        ),
    ] = 1,
    autoscaling: Annotated[
        str | None,
        typer.Option(
            "--autoscaling",
            help='--ray: Ray Serve autoscaling options as JSON, e.g. \'{"min_replicas": 1, '
            '"max_replicas": 4, "target_ongoing_requests": 2}\' (instead of --replicas).',
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="--ray: the cluster to join (auto, HOST:PORT or ray://HOST:10001); "
            "without it Ray starts on this machine. A cluster of several machines needs "
            "a shared repository (init --db/--store): replicas open it by URL.",
        ),
    ] = None,
    route: Annotated[
        str, typer.Option("--route", help="--ray: URL prefix of the application, e.g. /churn.")
    ] = "/",
    ray_app: Annotated[
        str | None,
        typer.Option("--app", help="--ray: application name (default: the model's name)."),
    ] = None,
    replica_cpus: Annotated[
        float,
        typer.Option(
            "--replica-cpus",
            parser=number("--replica-cpus", 0, 1024),
            help="--ray: CPUs Ray reserves per replica.",
        ),
    ] = 1.0,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach",
            help="--ray with --address: leave the application running on the cluster and "
            "return (take it down with Ray's `serve shutdown`, or ray.serve.delete(NAME)).",
        ),
    ] = False,
) -> None:
    """Serve a revision over HTTP: OIP v2 (/v2/...), POST /predict and GET /metrics.

    Labels come back on POST /v2/models/NAME/feedback, sent with a token of write
    scope on the model (`modelkeep token create --scope write`).

    The server follows the alias: when it moves (promote, rollback, deploy) the new
    version is loaded and warmed beside the old one, then traffic switches at once.
    With --ray every replica does the same, and `modelkeep deployments` lists what
    each replica serves."""
    if not on_ray:
        given = [
            flag
            for flag, value in (
                ("--replicas", replicas != 1),
                ("--autoscaling", autoscaling is not None),
                ("--address", address is not None),
                ("--route", route != "/"),
                ("--app", ray_app is not None),
                ("--replica-cpus", replica_cpus != 1.0),
                ("--detach", detach),
            )
            if value
        ]
        if given:
            raise UsageError(f"{given[0]} applies to Ray Serve: add --ray")
        from modelkeep.serve.run import serve as run_server

        run_server(
            state["repo"],
            rev,
            host=host,
            port=port,
            workers=workers,
            max_body=max_body,
            window_rows=window_rows,
            window_seconds=window_seconds,
            monitoring=monitor,
            feedback_token_file=feedback_token_file,
        )
        return
    if workers != 1:
        raise UsageError("--workers is for the local server: with --ray, use --replicas")
    if detach and address is None:
        raise UsageError("--detach needs --address: a Ray started here stops with this command")
    if autoscaling is not None and replicas != 1:
        raise UsageError("give --replicas or --autoscaling, not both")
    try:
        from modelkeep.serve import on_ray as cluster
    except ImportError as exc:
        raise UsageError(
            f"serving on Ray needs the ray extra ({exc}): pip install 'modelkeep[ray]'"
        ) from None
    from modelkeep.serve.run import read_token_file

    token = None if feedback_token_file is None else read_token_file(feedback_token_file)
    scaling = None if autoscaling is None else cluster.autoscaling_config(autoscaling)
    started = cluster.connect(address)
    try:
        name, url = cluster.deploy(
            state["repo"],
            rev,
            name=ray_app,
            route=route,
            replicas=replicas,
            autoscaling=scaling,
            replica_cpus=replica_cpus,
            host=host,
            port=port,
            max_body=max_body,
            window_rows=window_rows,
            window_seconds=window_seconds,
            monitoring=monitor,
            feedback_token=token,
        )
    except BaseException:
        cluster.disconnect(started)
        raise
    out.print(f"serving {rev} on Ray Serve as {name!r} at {url} (Ctrl-C stops it)", markup=False)
    if detach:
        return
    cluster.until_stopped(name, started)


@app.command()
def deploy(
    name: Annotated[str, typer.Argument(help="Model name.")],
    to: Annotated[str, typer.Option("--to", help="Alias to roll out to.")] = "production",
    strategy: Annotated[
        str, typer.Option("--strategy", help="blue-green, canary or shadow.")
    ] = "blue-green",
    candidate: Annotated[
        str | None, typer.Option("--candidate", help="Version to roll out, e.g. churn:7.")
    ] = None,
    percent: Annotated[
        float,
        typer.Option(
            "--percent",
            parser=number("--percent", 0, 100, low_open=True),
            help="canary: share of requests for the candidate, in (0, 100].",
        ),
    ] = 10.0,
    steps: Annotated[
        str | None, typer.Option("--steps", help="canary: percentages, e.g. 10,50,100.")
    ] = None,
    interval: Annotated[
        str | None, typer.Option("--interval", help="canary: time per step, e.g. 10m, 30s.")
    ] = None,
    promote_it: Annotated[
        bool, typer.Option("--promote", help="End the active rollout: candidate goes live.")
    ] = False,
    abort: Annotated[bool, typer.Option("--abort", help="End the active rollout.")] = False,
    message: MessageOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Roll a version out to an alias (recorded; running servers follow it)."""
    from modelkeep.errors import UsageError

    repo = open_repo()
    if promote_it or abort:
        if promote_it and abort:
            raise UsageError("--promote and --abort exclude each other")
        dep = repo.end_deployment(name, to=to, promote=promote_it, message=message)
    else:
        step_list = numbers(steps, "--steps") if steps else []
        dep = repo.deploy(
            name,
            to=to,
            strategy=strategy,
            candidate=candidate,
            percent=percent,
            steps=step_list,
            interval=interval,
            message=message,
        )
    if as_json:
        emit_json(dep.to_dict())
    else:
        out.print(render.deployment_line(dep))


@app.command()
def deployments(
    name: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List deployments (rollouts) and their state, newest first, then the replicas of
    every server: which version each serves, its state, and when it last reported (one
    silent for more than 30 s has probably gone)."""
    repo = open_repo()
    found, replicas = repo.deployments(name), repo.replicas(name)
    if as_json:
        rollouts = [d.to_dict() for d in found]
        emit_json({"deployments": rollouts, "replicas": [r.to_dict() for r in replicas]})
        return
    for d in found:
        out.print(render.deployment_line(d))
    now = datetime.now(UTC)
    for r in replicas:
        out.print(render.replica_line(r, now))


def numbers(text: str, option: str) -> list[float]:
    return [quantities.number(p, option, low=0, high=100, low_open=True) for p in text.split(",")]
