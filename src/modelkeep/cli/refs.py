"""Commands on refs: branch, alias, tag, promote, rollback, history, events."""

from typing import Annotated

import typer

from modelkeep.cli import render
from modelkeep.cli.base import (
    JsonOpt,
    MessageOpt,
    alias_app,
    app,
    open_repo,
    whole,
)
from modelkeep.cli.render import emit_json, out


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
    from modelkeep.errors import UsageError

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


@alias_app.command("set")
def alias_set(
    alias: Annotated[str, typer.Argument(help="MODEL@ALIAS, e.g. churn@production.")],
    rev: Annotated[str, typer.Argument(help="Version number or revision.")],
    message: MessageOpt = "",
) -> None:
    """Point an alias at a version (creating it if needed)."""
    ref = open_repo().set_alias(alias, rev, message)
    out.print(f"{ref.model}@{ref.name} → {ref.model}:{ref.version}", markup=False)


@alias_app.command("list")
def alias_list(
    name: Annotated[str, typer.Argument(help="Model name.")], as_json: JsonOpt = False
) -> None:
    """List a model's aliases."""
    refs = open_repo().refs(name, "alias")
    if as_json:
        emit_json([r.to_dict() for r in refs])
    for r in [] if as_json else refs:
        out.print(f"{r.model}@{r.name} → {r.model}:{r.version}", markup=False)


@alias_app.command("delete")
def alias_delete(
    alias: Annotated[str, typer.Argument(help="MODEL@ALIAS.")], message: MessageOpt = ""
) -> None:
    """Delete an alias (its history stays in the event log)."""
    ref = open_repo().delete_alias(alias, message)
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
    from modelkeep.errors import UsageError

    if delete:
        if name is not None:
            raise UsageError("to delete a tag give MODEL@TAG alone: modelkeep tag -d churn@v1")
        ref = open_repo().delete_tag(rev, message)
        out.print(f"deleted tag {ref.name} of {ref.model} (was {ref.model}:{ref.version})")
        return
    if name is None:
        raise UsageError("give the tag name: modelkeep tag churn:3 validated")
    ref = open_repo().tag(rev, name, message)
    out.print(f"tagged {ref.model}:{ref.version} as {ref.name}", markup=False)


@app.command()
def label(
    rev: Annotated[str, typer.Argument(help="Version to label, e.g. churn:3.")],
    pairs_: Annotated[
        list[str] | None,
        typer.Argument(metavar="KEY=VALUE...", help="Labels to set, e.g. reviewed_by=alice."),
    ] = None,
    delete: Annotated[
        list[str] | None, typer.Option("--delete", "-d", help="A label to remove (repeatable).")
    ] = None,
    message: MessageOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Set or remove labels of a version: key/value text that may change after the
    commit (who reviewed it, its stage); every change is in the event log, and `log
    --where "labels.KEY = 'VALUE'"` finds them."""
    from modelkeep.errors import UsageError

    values = {}
    for item in pairs_ or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"labels are KEY=VALUE, not {item!r} (e.g. reviewed_by=alice)")
        values[key] = value
    repo = open_repo()
    if delete:
        repo.unlabel(rev, *delete, message=message)
    v = repo.label(rev, values, message=message) if values else repo.resolve(rev)
    if as_json:
        emit_json(v.to_dict())
    else:
        shown = ", ".join(f"{k}={val}" for k, val in sorted(v.labels.items())) or "no labels"
        out.print(f"{v.rev}: {shown}", markup=False)


@app.command()
def promote(
    rev: Annotated[str, typer.Argument(help="Revision to promote, e.g. churn:4.")],
    alias: Annotated[str, typer.Argument(help="Alias to move, e.g. production.")],
    message: MessageOpt = "",
) -> None:
    """Move an alias to a version (recorded in the event log)."""
    before, ref = open_repo().promote(rev, alias, message)
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
    before, ref = open_repo().rollback(alias, to, message)
    out.print(
        f"{ref.model}@{ref.name}: {ref.model}:{before} → {ref.model}:{ref.version}", markup=False
    )


@app.command()
def history(
    rev: Annotated[str, typer.Argument(help="MODEL@REF (one ref's moves) or MODEL.")],
    as_json: JsonOpt = False,
) -> None:
    """Every move of an alias or branch (or every event of a model), newest first."""
    events = open_repo().history(rev)
    if as_json:
        emit_json([e.to_dict() for e in events])
    else:
        out.print(render.event_table(events))


@app.command()
def events(
    model: Annotated[str | None, typer.Option("--model", help="Only this model.")] = None,
    limit: Annotated[
        int | None, typer.Option("-n", parser=whole("-n", 1), help="At most N events.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The repository's append-only event log, newest first."""
    found = open_repo().events(model, limit)
    if as_json:
        emit_json([e.to_dict() for e in found])
    else:
        out.print(render.event_table(found))
