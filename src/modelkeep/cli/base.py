"""What every command of `modelkeep` shares: the Typer app and its groups, the one
error boundary, option parsers, and opening the repository.

Heavy modules (the registry, SQLAlchemy, the store) are imported inside commands so
that `modelkeep --help` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from modelkeep import quantities
from modelkeep.cli import render
from modelkeep.errors import ModelkeepError, TrainerError

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
        try:
            with _one_line_errors():
                return super().invoke(ctx)
        finally:
            _close_opened()


# Repositories a command opened: closed when it ends, so that a registry's pooled
# connections (PostgreSQL) go back to the server, not to the garbage collector.
_opened: list[Repo] = []


def _close_opened() -> None:
    while _opened:
        with contextlib.suppress(Exception):
            _opened.pop().close()


@contextlib.contextmanager
def _one_line_errors() -> Iterator[None]:
    try:
        yield
    except TrainerError as exc:
        # The user's own code failed: its traceback is theirs to read, then our line.
        render.err.print(exc.trace.rstrip(), markup=False)
        fail(exc)
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


def whole(flag: str, low: int, high: int = quantities.MAX_COUNT) -> Callable[[str], int]:
    """A parser for an option's whole number: ASCII digits, bounded."""

    def parse(text: str) -> int:
        with _usage(flag):
            return quantities.whole(text, flag, low=low, high=high)

    return parse


def number(flag: str, low: float, high: float, low_open: bool = False) -> Callable[[str], float]:
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
token_app = typer.Typer(help="Access tokens of a team server: create, list, revoke.")
app.add_typer(token_app, name="token")
remote_app = typer.Typer(help="Team servers to push to and pull from: add, list, remove.")
app.add_typer(remote_app, name="remote")

state: dict[str, Any] = {"repo": None}

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
MessageOpt = Annotated[str, typer.Option("-m", "--message", help="Why: kept in the event log.")]


@app.callback()
def _global(
    repo: Annotated[
        str | None,
        typer.Option(
            "--repo",
            envvar="MODELKEEP_REPO",
            help="Repository folder (default: found by walking up from the current folder), "
            "or a team server's URL (http://HOST:PORT; its token from MODELKEEP_TOKEN or "
            "`modelkeep login`).",
        ),
    ] = None,
) -> None:
    is_url = repo is not None and repo.startswith(("http://", "https://"))
    state["repo"] = repo if repo is None or is_url else Path(repo)


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
        (e.UnreachableError, 7),
        (e.AuthenticationError, 8),
        (e.PermissionDeniedError, 9),
    ]
    return next((code for cls, code in table if isinstance(exc, cls)), 1)


def fail(exc: Exception) -> NoReturn:
    render.stop_progress()
    # The hint as the command line says it (flags and commands, not API keywords).
    said = exc.said("cli") if isinstance(exc, ModelkeepError) else str(exc)
    render.err.print(f"error: {said}", markup=False)
    raise typer.Exit(_exit_code(exc))


def open_repo() -> Repo:
    from modelkeep.repo import Repo

    where = state["repo"]
    repo = Repo.open(where) if isinstance(where, str) else Repo(where)
    _opened.append(repo)
    return repo


def progress() -> Any:
    return render.progress_factory(sys.stderr.isatty())


def pairs(items: list[str] | None, option: str) -> dict[str, Any]:
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
