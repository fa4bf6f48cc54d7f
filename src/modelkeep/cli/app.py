"""The `modelkeep` command. Each command parses, calls one Repo method, and prints.

Heavy modules (the registry, SQLAlchemy, the store) are imported inside commands so
that `modelkeep --help` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from modelkeep import quantities
from modelkeep.cli import render
from modelkeep.cli.render import emit_json, out
from modelkeep.errors import ModelkeepError
from modelkeep.graph import graph_lines, labels_by_version

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from modelkeep.repo import Repo


# typer's own click (recent releases vendor one as typer._click): its usage errors are
# those its parser raises.
_ClickUsageError: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
)
_NoArgsIsHelp = getattr(sys.modules[_ClickUsageError.__module__], "NoArgsIsHelpError", ())


class _Boundary(TyperGroup):
    """The one place where an error becomes a line on stderr and an exit code: a
    modelkeep error from any command, and a usage error click found in the arguments
    (click's own rendering is a usage block over several lines)."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: Any = None,
        **extra: Any,
    ) -> Any:
        with _one_line_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with _one_line_errors():
            return super().invoke(ctx)


@contextlib.contextmanager
def _one_line_errors() -> Iterator[None]:
    try:
        yield
    except ModelkeepError as exc:
        fail(exc)
    except _NoArgsIsHelp:
        raise  # `modelkeep monitor` alone: the help is the answer
    except _ClickUsageError as exc:
        render.stop_progress()
        ctx = getattr(exc, "ctx", None)
        where = f"`{ctx.command_path} --help`" if ctx else "`modelkeep --help`"
        message = " ".join(exc.format_message().split()).rstrip(".")  # type: ignore[attr-defined]
        render.err.print(f"error: {message} (see {where})", markup=False)
        raise typer.Exit(2) from None


def _whole(flag: str, low: int, high: int = quantities.MAX_COUNT) -> Callable[[str], int]:
    """A parser for an option's whole number: ASCII digits, bounded."""

    def parse(text: str) -> int:
        with _usage(flag):
            return quantities.whole(text, flag, low=low, high=high)

    return parse


def _number(flag: str, low: float, high: float, low_open: bool = False) -> Callable[[str], float]:
    """A parser for an option's finite number, bounded."""

    def parse(text: str) -> float:
        with _usage(flag):
            return quantities.number(text, flag, low=low, high=high, low_open=low_open)

    return parse


@contextlib.contextmanager
def _usage(flag: str) -> Iterator[None]:
    # click turns a parser's ValueError (as UsageError is) into "Invalid value: <the
    # whole input>", which may be 5,000 digits long: raised as click's own error, the
    # message is ours.
    from modelkeep.errors import UsageError

    try:
        yield
    except UsageError as exc:
        raise _ClickUsageError(str(exc)) from None


app = typer.Typer(
    name="modelkeep",
    cls=_Boundary,
    help=(
        "Version control and change management for machine-learning models.\n\n"
        "Revisions: NAME (head of the default branch), NAME:3 (version 3), NAME@production "
        "(alias, branch or tag), NAME@main~2 (two versions back), NAME@production^ (where "
        "the alias pointed before its last move)."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
alias_app = typer.Typer(help="Set, list and delete aliases (movable names such as production).")
app.add_typer(alias_app, name="alias")
data_app = typer.Typer(help="Versioned datasets (CSV, Parquet) in the same store.")
app.add_typer(data_app, name="data")
monitor_app = typer.Typer(help="Drift and performance checks against reference profiles.")
app.add_typer(monitor_app, name="monitor")

_state: dict[str, Any] = {"repo": None}

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
MessageOpt = Annotated[str, typer.Option("-m", "--message", help="Why: kept in the event log.")]


@app.callback()
def _global(
    repo: Annotated[
        Path | None,
        typer.Option(
            "--repo",
            envvar="MODELKEEP_REPO",
            help="Repository folder (default: found by walking up from the current folder).",
        ),
    ] = None,
) -> None:
    _state["repo"] = repo


# Exit codes by error class, most specific first; looked up once, at the boundary.
def _exit_code(exc: Exception) -> int:
    from modelkeep import errors as e

    table: list[tuple[type[Exception], int]] = [
        (e.UsageError, 2),
        (e.NotFoundError, 3),
        (e.ConflictError, 4),
        (e.RepositoryFormatError, 5),
        (e.StoreError, 6),
        (e.RegistryDamagedError, 6),
    ]
    return next((code for cls, code in table if isinstance(exc, cls)), 1)


def fail(exc: Exception) -> NoReturn:
    render.stop_progress()
    render.err.print(f"error: {exc}", markup=False)
    raise typer.Exit(_exit_code(exc))


def open_repo() -> Repo:
    from modelkeep.repo import Repo

    return Repo(_state["repo"])


def _progress() -> Any:
    return render.progress_factory(sys.stderr.isatty())


def _pairs(items: list[str] | None, option: str) -> dict[str, Any]:
    """KEY=VALUE options; values are JSON when they parse (numbers, booleans). What a
    value may be is Repo's rule (metrics must be finite numbers)."""
    from modelkeep.errors import UsageError

    values: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} expects KEY=VALUE, got {item!r} (e.g. {option} lr=0.01)")
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON, an int past 4,300 digits, too deep
            value = raw
        values[key] = value
    return values


# -- repository ---------------------------------------------------------------------


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Folder to create the repository in.")] = Path("."),
) -> None:
    """Create a repository: a .modelkeep/ folder with the object store and the registry."""
    from modelkeep.errors import ModelkeepError
    from modelkeep.repo import Repo

    try:
        repo = Repo.init(path)
    except ModelkeepError as exc:
        fail(exc)
    out.print(f"Initialized empty modelkeep repository in {repo.root / '.modelkeep'}")


@app.command()
def commit(
    name: Annotated[str, typer.Argument(help="Model name (created on its first commit).")],
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to store.")],
    message: Annotated[str, typer.Option("-m", "--message", help="What changed and why.")] = "",
    branch: Annotated[
        str | None, typer.Option("--branch", "-b", help="Branch to commit on (default: main).")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE hyper-parameter.")
    ] = None,
    metric: Annotated[
        list[str] | None, typer.Option("--metric", help="KEY=NUMBER evaluation metric.")
    ] = None,
    data: Annotated[
        list[str] | None,
        typer.Option("--data", "-d", help="Dataset used: a file (hashed) or NAME:VERSION."),
    ] = None,
    author: Annotated[str | None, typer.Option(help="Override the author.")] = None,
    example: Annotated[
        Path | None,
        typer.Option(
            "--example", help="Input example (CSV, Parquet, .npy): records the signature."
        ),
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="Label column of the --data table.")
    ] = None,
    trust: Annotated[
        list[str] | None,
        typer.Option("--trust", help="A type to trust in a skops file (repeatable)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Store files or a folder as the next version of model NAME.

    A .skops, .onnx or .safetensors file is recognised as a model; with --data the
    first table gives the reference profile (drop its label with --target)."""
    from modelkeep.errors import ModelkeepError

    try:
        repo = open_repo()
        v = repo.commit(
            name,
            paths,
            message,
            branch=branch,
            params=_pairs(param, "--param"),
            metrics=_pairs(metric, "--metric"),
            data=data or [],
            author=author,
            input_example=example,
            target=target,
            trusted=trust,
            progress=_progress(),
        )
    except ModelkeepError as exc:
        fail(exc)
    if as_json:
        emit_json(v.to_dict())
    else:
        out.print(
            f"[{v.branch} {v.rev}] {v.message}  ({v.file_count} file(s), {render.size(v.size)})"
        )


@app.command()
def log(
    name: Annotated[str, typer.Argument(help="Model name.")],
    branch: Annotated[str | None, typer.Option("--branch", "-b", help="Only this branch.")] = None,
    graph: Annotated[bool, typer.Option("--graph", help="Draw the branch structure.")] = False,
    limit: Annotated[
        int | None, typer.Option("-n", parser=_whole("-n", 1), help="At most N versions.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List versions newest first, with message, author, time and metrics."""
    from modelkeep.errors import ModelkeepError

    try:
        repo = open_repo()
        versions = repo.log(name, branch=branch)[:limit]
        labels = labels_by_version(repo.refs(name))
        rolled = {e.after for e in repo.history(name) if e.action == "rollback" and e.after}
    except ModelkeepError as exc:
        fail(exc)
    if as_json:
        emit_json([v.to_dict() for v in versions])
    elif graph:
        for line in graph_lines(versions, labels):
            out.print(line, markup=False)
    else:
        out.print(render.version_table(versions, labels, rolled))


@app.command()
def show(
    rev: Annotated[str, typer.Argument(help="Revision, e.g. churn:3 or churn@production.")],
    as_json: JsonOpt = False,
) -> None:
    """Show a version with its full lineage and files."""
    from modelkeep.errors import ModelkeepError

    try:
        repo = open_repo()
        v = repo.show(rev)
        files = repo.files(v)
        labels = labels_by_version(repo.refs(v.model)).get(v.number, [])
    except ModelkeepError as exc:
        fail(exc)
    if as_json:
        doc = v.to_dict()
        doc["refs"] = labels
        doc["files"] = [f.to_dict() for f in files]
        emit_json(doc)
    else:
        render.show_version(v, files, labels)


@app.command()
def models(as_json: JsonOpt = False) -> None:
    """List the models in the repository."""
    from modelkeep.errors import ModelkeepError

    try:
        infos = open_repo().models()
    except ModelkeepError as exc:
        fail(exc)
    if as_json:
        emit_json([m.to_dict() for m in infos])
        return
    if not infos:
        out.print("no models yet: `modelkeep commit NAME PATH -m MESSAGE` creates one")
    for m in infos:
        out.print(
            f"{m.name}  {m.kind}, {m.versions} version(s), latest {m.latest}, "
            f"branch {m.default_branch}"
        )


@app.command()
def checkout(
    rev: Annotated[str, typer.Argument(help="Revision to materialize.")],
    dest: Annotated[
        Path | None, typer.Argument(help="Folder to write into (default: ./MODEL).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Overwrite files that differ.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a version's files into a folder, byte-identical, with their modes."""
    from modelkeep.errors import ModelkeepError

    try:
        result = open_repo().checkout(rev, dest, force=force, progress=_progress())
    except ModelkeepError as exc:
        fail(exc)
    if as_json:
        emit_json(result.to_dict())
    else:
        out.print(
            f"checked out {result.rev} into {result.dest}: {len(result.written)} written, "
            f"{len(result.unchanged)} already up to date"
        )


@app.command()
def status(
    rev: Annotated[str, typer.Argument(help="Model or revision to compare with.")],
    path: Annotated[Path | None, typer.Argument(help="Folder (default: ./MODEL).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Tell whether a folder matches a version, and which files changed."""
    from modelkeep.errors import ModelkeepError

    try:
        st = open_repo().status(rev, path)
    except ModelkeepError as exc:
        fail(exc)
    if as_json:
        emit_json(st.to_dict())
    else:
        head = "matches" if st.clean else "differs from"
        out.print(f"{st.path} {head} {st.rev}", markup=False)
        for label, items in (
            ("modified", st.modified),
            ("missing", st.missing),
            ("untracked", st.untracked),
        ):
            for p in items:
                out.print(f"  {label}: {p}", markup=False)
    if not st.clean:
        raise typer.Exit(1)


@app.command()
def diff(
    rev_a: Annotated[str, typer.Argument(help="Older revision.")],
    rev_b: Annotated[str, typer.Argument(help="Newer revision.")],
    data: Annotated[
        Path | None, typer.Option("--data", help="Run both on these rows (CSV, Parquet).")
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="Label column of --data (for metrics).")
    ] = None,
    trust: Annotated[
        list[str] | None, typer.Option("--trust", help="A skops type to trust (repeatable).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare two versions: files, params and metrics, signature (breaking changes),
    tensors, scikit-learn specifics, and predictions on --data."""
    from modelkeep.errors import ModelkeepError

    try:
        d = open_repo().diff(rev_a, rev_b, data=data, target=target, trusted=trust)
    except ModelkeepError as exc:
        fail(exc)
    if as_json:
        emit_json(d.to_dict())
        return
    out.print(f"{d.a} → {d.b}", markup=False)
    if d.identical:
        out.print("  identical")
    for f in d.added:
        out.print(f"  added    {f.path}  {render.size(f.size_after)}", markup=False)
    for f in d.removed:
        out.print(f"  removed  {f.path}  {render.size(f.size_before)}", markup=False)
    for f in d.changed:
        mode = (
            ""
            if f.mode_before == f.mode_after
            else (f"  mode {oct(f.mode_before or 0)} → {oct(f.mode_after or 0)}")
        )
        out.print(
            f"  changed  {f.path}  {render.size(f.size_before)} → {render.size(f.size_after)}, "
            f"{render.size(f.bytes_changed)} in {f.chunks_changed} of {f.chunks_total} "
            f"chunks differ{mode}",
            markup=False,
        )
    for title, delta in (("param", d.params), ("metric", d.metrics)):
        for k, (a, b) in delta.items():
            was, now = ("-" if x is None else x for x in (a, b))
            out.print(f"  {title:<7}  {k}: {was} → {now}", markup=False)
    render.model_diff(d)


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
    from modelkeep.errors import ModelkeepError, TrainerError

    try:
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
    except TrainerError as exc:
        render.err.print(exc.trace.rstrip(), markup=False)
        fail(exc)
    except ModelkeepError as exc:
        fail(exc)
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
            help="File holding the secret that clients send as 'Authorization: Bearer "
            "<token>' to POST labels to /v2/models/NAME/feedback (policies act on them). "
            "Without it, feedback is off (403).",
        ),
    ] = None,
) -> None:
    """Serve a revision over HTTP: OIP v2 (/v2/...), POST /predict and GET /metrics.

    The server follows the alias: when it moves (promote, rollback, deploy) the new
    version is loaded and warmed beside the old one, then traffic switches at once."""
    from modelkeep.errors import ModelkeepError
    from modelkeep.serve.run import serve as run_server

    try:
        run_server(
            _state["repo"],
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
    except ModelkeepError as exc:
        fail(exc)


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
            parser=_number("--percent", 0, 100, low_open=True),
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
    from modelkeep.errors import ModelkeepError, UsageError

    try:
        repo = open_repo()
        if promote_it or abort:
            if promote_it and abort:
                raise UsageError("--promote and --abort exclude each other")
            dep = repo.end_deployment(name, to=to, promote=promote_it, message=message)
        else:
            step_list = _numbers(steps, "--steps") if steps else []
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
    except ModelkeepError as exc:
        fail(exc)
    if as_json:
        emit_json(dep.to_dict())
    else:
        out.print(render.deployment_line(dep))


@app.command()
def deployments(
    name: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List deployments (rollouts) and their state, newest first."""
    from modelkeep.errors import ModelkeepError

    try:
        found = open_repo().deployments(name)
    except ModelkeepError as exc:
        fail(exc)
    if as_json:
        emit_json([d.to_dict() for d in found])
    for d in [] if as_json else found:
        out.print(render.deployment_line(d))


def _numbers(text: str, option: str) -> list[float]:
    return [quantities.number(p, option, low=0, high=100, low_open=True) for p in text.split(",")]


# -- refs ---------------------------------------------------------------------------


@app.command()
def branch(
    name: Annotated[str, typer.Argument(help="Model name.")],
    new: Annotated[str | None, typer.Argument(help="Branch to create.")] = None,
    start: Annotated[
        str | None, typer.Option("--from", help="Revision to start from (default: head).")
    ] = None,
    list_: Annotated[bool, typer.Option("--list", "-l", help="List branches.")] = False,
    delete: Annotated[str | None, typer.Option("--delete", "-d", help="Delete a branch.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create (NAME NEW [--from REV]), list (--list) or delete (--delete B) branches."""
    from modelkeep.errors import ModelkeepError, UsageError

    try:
        repo = open_repo()
        if delete:
            ref = repo.delete_branch(name, delete)
            out.print(f"deleted branch {delete} of {name} (was at {name}:{ref.version})")
        elif new and not list_:
            ref = repo.branch(name, new, start)
            out.print(f"created branch {new} of {name} at {name}:{ref.version}")
        elif new is None:
            refs = repo.refs(name, "branch")
            if as_json:
                emit_json([r.to_dict() for r in refs])
            else:
                default = repo.default_branch(name)
                for r in refs:
                    mark = "*" if r.name == default else " "
                    out.print(f"{mark} {r.name}  {name}:{r.version}", markup=False)
        else:
            raise UsageError("give either NEW to create a branch or --list, not both")
    except ModelkeepError as exc:
        fail(exc)


@alias_app.command("set")
def alias_set(
    alias: Annotated[str, typer.Argument(help="MODEL@ALIAS, e.g. churn@production.")],
    rev: Annotated[str, typer.Argument(help="Version number or revision.")],
    message: MessageOpt = "",
) -> None:
    """Point an alias at a version (creating it if needed)."""
    from modelkeep.errors import ModelkeepError

    try:
        ref = open_repo().set_alias(alias, rev, message)
    except ModelkeepError as exc:
        fail(exc)
    out.print(f"{ref.model}@{ref.name} → {ref.model}:{ref.version}", markup=False)


@alias_app.command("list")
def alias_list(
    name: Annotated[str, typer.Argument(help="Model name.")], as_json: JsonOpt = False
) -> None:
    """List a model's aliases."""
    from modelkeep.errors import ModelkeepError

    try:
        refs = open_repo().refs(name, "alias")
    except ModelkeepError as exc:
        fail(exc)
    if as_json:
        emit_json([r.to_dict() for r in refs])
    for r in [] if as_json else refs:
        out.print(f"{r.model}@{r.name} → {r.model}:{r.version}", markup=False)


@alias_app.command("delete")
def alias_delete(
    alias: Annotated[str, typer.Argument(help="MODEL@ALIAS.")], message: MessageOpt = ""
) -> None:
    """Delete an alias (its history stays in the event log)."""
    from modelkeep.errors import ModelkeepError

    try:
        ref = open_repo().delete_alias(alias, message)
    except ModelkeepError as exc:
        fail(exc)
    out.print(f"deleted {ref.model}@{ref.name} (was {ref.model}:{ref.version})", markup=False)


@app.command()
def tag(
    rev: Annotated[str, typer.Argument(help="Revision to tag (churn:3), or MODEL@TAG.")],
    name: Annotated[str | None, typer.Argument(help="Tag name; tags never move.")] = None,
    delete: Annotated[
        bool, typer.Option("--delete", "-d", help="Delete tag MODEL@TAG (REV is MODEL@TAG).")
    ] = False,
    message: MessageOpt = "",
) -> None:
    """Name a version for good (e.g. validated), or delete such a name."""
    from modelkeep.errors import ModelkeepError, UsageError

    try:
        if delete:
            if name is not None:
                raise UsageError("to delete a tag give MODEL@TAG alone: modelkeep tag -d churn@v1")
            ref = open_repo().delete_tag(rev, message)
            out.print(f"deleted tag {ref.name} of {ref.model} (was {ref.model}:{ref.version})")
            return
        if name is None:
            raise UsageError("give the tag name: modelkeep tag churn:3 validated")
        ref = open_repo().tag(rev, name, message)
    except ModelkeepError as exc:
        fail(exc)
    out.print(f"tagged {ref.model}:{ref.version} as {ref.name}", markup=False)


@app.command()
def promote(
    rev: Annotated[str, typer.Argument(help="Revision to promote, e.g. churn:4.")],
    alias: Annotated[str, typer.Argument(help="Alias to move, e.g. production.")],
    message: MessageOpt = "",
) -> None:
    """Move an alias to a version (recorded in the event log)."""
    from modelkeep.errors import ModelkeepError

    try:
        before, ref = open_repo().promote(rev, alias, message)
    except ModelkeepError as exc:
        fail(exc)
    was = f"{ref.model}:{before}" if before is not None else "new"
    out.print(f"{ref.model}@{ref.name}: {was} → {ref.model}:{ref.version}", markup=False)


@app.command()
def rollback(
    alias: Annotated[str, typer.Argument(help="MODEL@ALIAS to move back.")],
    to: Annotated[
        str | None,
        typer.Option("--to", help="Version or revision (default: where it pointed before)."),
    ] = None,
    message: MessageOpt = "",
) -> None:
    """Move an alias back. Rolling back a rollback undoes it."""
    from modelkeep.errors import ModelkeepError

    try:
        before, ref = open_repo().rollback(alias, to, message)
    except ModelkeepError as exc:
        fail(exc)
    out.print(
        f"{ref.model}@{ref.name}: {ref.model}:{before} → {ref.model}:{ref.version}", markup=False
    )


@app.command()
def history(
    rev: Annotated[str, typer.Argument(help="MODEL@REF (one ref's moves) or MODEL.")],
    as_json: JsonOpt = False,
) -> None:
    """Every move of an alias or branch (or every event of a model), newest first."""
    from modelkeep.errors import ModelkeepError

    try:
        events = open_repo().history(rev)
    except ModelkeepError as exc:
        fail(exc)
    if as_json:
        emit_json([e.to_dict() for e in events])
    else:
        out.print(render.event_table(events))


@app.command()
def events(
    model: Annotated[str | None, typer.Option("--model", help="Only this model.")] = None,
    limit: Annotated[
        int | None, typer.Option("-n", parser=_whole("-n", 1), help="At most N events.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The repository's append-only event log, newest first."""
    from modelkeep.errors import ModelkeepError

    try:
        found = open_repo().events(model, limit)
    except ModelkeepError as exc:
        fail(exc)
    if as_json:
        emit_json([e.to_dict() for e in found])
    else:
        out.print(render.event_table(found))


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
    from modelkeep.errors import ModelkeepError

    try:
        body = open_repo().monitor(rev, data, target=target)
    except ModelkeepError as exc:
        fail(exc)
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
    from modelkeep.errors import ModelkeepError, PathNotFoundError, UsageError

    try:
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
    except ModelkeepError as exc:
        fail(exc)
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
            "-n", parser=_whole("-n", 1), help="At most N reports (default 10; --html: 1000)."
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
    from modelkeep.errors import ModelkeepError

    try:
        if html is not None:
            render.check_output_file(html)
            render.write_atomic(html, open_repo().report_html(rev, limit or 1000))
        else:
            found = open_repo().reports(rev, limit or 10)
    except ModelkeepError as exc:
        fail(exc)
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
    from modelkeep.errors import ModelkeepError

    try:
        found = open_repo().schedule(rev, every, data, target, message)
    except ModelkeepError as exc:
        fail(exc)
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

    from modelkeep.errors import ModelkeepError

    try:
        found = open_repo().schedules(name, include_removed=include_removed)
    except ModelkeepError as exc:
        fail(exc)
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
        typer.Argument(metavar="ID", parser=_whole("ID", 1), help="Schedule id (see schedules)."),
    ],
    message: MessageOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Stop a scheduled check (it stays in `monitor schedules --all` and the event log)."""
    from modelkeep.errors import ModelkeepError

    try:
        found = open_repo().unschedule(schedule_id, message)
    except ModelkeepError as exc:
        fail(exc)
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
            parser=_number("--poll", 0.1, 86400),
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

    from modelkeep.errors import ModelkeepError

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
        stop.set()

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
    except ModelkeepError as exc:
        fail(exc)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if once and failed:
        raise typer.Exit(1)


@data_app.command("add")
def data_add(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    path: Annotated[Path, typer.Argument(help="CSV or Parquet file.")],
    message: MessageOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Store a dataset file as the next version of dataset NAME (use it as NAME:N)."""
    from modelkeep.errors import ModelkeepError

    try:
        v = open_repo().data_add(name, path, message, progress=_progress())
    except ModelkeepError as exc:
        fail(exc)
    if as_json:
        emit_json(v.to_dict())
    else:
        rows, cols = v.artifact["rows"], len(v.artifact["columns"])
        out.print(f"[{v.rev}] {rows} rows × {cols} columns, {render.size(v.size)}")


@data_app.command("list")
def data_list(as_json: JsonOpt = False) -> None:
    """List the datasets."""
    from modelkeep.errors import ModelkeepError

    try:
        infos = [m for m in open_repo().models() if m.kind == "dataset"]
    except ModelkeepError as exc:
        fail(exc)
    if as_json:
        emit_json([m.to_dict() for m in infos])
    for m in [] if as_json else infos:
        out.print(f"{m.name}  {m.versions} version(s), latest {m.name}:{m.latest}")


# -- maintenance --------------------------------------------------------------------


@app.command()
def fsck(
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Move damaged objects aside, so committing the original files again "
            "restores them; salvage a damaged registry into a new one.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Verify every object against its hash and every version against its tree.

    A damaged registry stops every command; --repair then salvages every row that can
    still be read into a new registry (the damaged file is kept beside it) before
    verifying."""
    from modelkeep.repo import Repo

    if repair:
        report = Repo.repair(_state["repo"], progress=_progress())
    else:
        report = open_repo().fsck(progress=_progress())
    if as_json:
        emit_json(report.to_dict())
    else:
        if report.salvaged is not None:
            kept = report.salvaged["damaged_copy"]
            out.print(f"salvaged the registry; the damaged file is kept as {kept}", markup=False)
            if not report.ok:
                out.print(
                    "objects of versions the registry lost are kept, unreferenced: do not "
                    "run `modelkeep gc` while you may still restore it from a backup",
                    markup=False,
                )
        for p in report.problems:
            out.print(f"problem: {p}", markup=False)
        verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        out.print(
            f"{verdict}: {report.objects_checked} objects verified, "
            f"{report.versions_checked} versions checked, "
            f"{report.unreferenced} unreferenced (removed by `modelkeep gc`)"
        )
        registry_damage = any(p.startswith("registry:") for p in report.problems)
        object_damage = any(not p.startswith("registry:") for p in report.problems)
        if not repair and registry_damage:
            out.print(
                "to recover: restore .modelkeep/registry.db from a backup, or `modelkeep fsck "
                "--repair` salvages every row that can still be read (the damaged file is kept)"
            )
        elif object_damage:
            out.print(
                "damaged objects were moved to .modelkeep/store/quarantine: commit the "
                "original files again to restore them, or restore .modelkeep from a backup"
                if repair
                else "to recover: `modelkeep fsck --repair` moves damaged objects aside; then "
                "commit the original files again (or restore .modelkeep from a backup)"
            )
    if not report.ok:
        raise typer.Exit(6)


@app.command()
def gc(as_json: JsonOpt = False) -> None:
    """Delete objects no version references (safe while others commit)."""
    from modelkeep.errors import ModelkeepError

    try:
        report = open_repo().gc()
    except ModelkeepError as exc:
        fail(exc)
    if as_json:
        emit_json(report.to_dict())
    else:
        out.print(
            f"removed {report.objects_removed} object(s), freed "
            f"{render.size(report.bytes_freed)}, {report.temp_files_removed} temp file(s)"
        )


@app.command()
def upgrade(as_json: JsonOpt = False) -> None:
    """Bring the repository to this release's format (rewrites large objects of the
    old layout; releases before that format then refuse to open it). Stop every
    modelkeep process of an older release first."""
    from modelkeep.errors import ModelkeepError

    try:
        report = open_repo().upgrade(progress=_progress())
    except ModelkeepError as exc:
        fail(exc)
    if as_json:
        emit_json(report.to_dict())
    elif report.format_before == report.format_after and not report.objects_rewritten:
        out.print(f"already format {report.format_after}: nothing to do")
    else:
        out.print(
            f"format {report.format_before} -> {report.format_after}: "
            f"{report.objects_rewritten} object(s) rewritten "
            f"({render.size(report.bytes_rewritten)})"
        )


@app.command()
def demo(
    keep: Annotated[
        Path | None, typer.Option(help="Keep the demo repository in this folder.")
    ] = None,
) -> None:
    """Run a realistic session on a throw-away repository and print what it did."""
    from modelkeep.demo import run_demo
    from modelkeep.errors import ModelkeepError

    try:
        run_demo(keep, lambda line: out.print(line, markup=False))
    except ModelkeepError as exc:
        fail(exc)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        render.err.print("interrupted")
        sys.exit(130)
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            # Output piped into `head` and the like: not an error.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        render.err.print(f"error: {exc}", markup=False)
        sys.exit(1)
