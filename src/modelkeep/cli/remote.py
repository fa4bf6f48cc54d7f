"""`remote`, `push`, `fetch`, `pull`, `clone`, `login`: versions between repositories."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from modelkeep.cli.base import JsonOpt, app, open_repo, progress, remote_app
from modelkeep.cli.render import emit_json, err, out

if TYPE_CHECKING:
    from modelkeep.results import TransferResult

RemoteOpt = Annotated[
    str, typer.Option("--remote", "-r", help="The remote's name (`modelkeep remote list`).")
]


@remote_app.command("add")
def remote_add(
    name: Annotated[str, typer.Argument(help="A name for it, e.g. origin.")],
    url: Annotated[str, typer.Argument(help="The team server, e.g. http://models.example:8900.")],
) -> None:
    """Name a team server to push to and pull from (kept in the registry)."""
    open_repo().remotes.add(name, url)
    out.print(f"remote {name} → {url}", markup=False)


@remote_app.command("remove")
def remote_remove(name: Annotated[str, typer.Argument(help="The remote's name.")]) -> None:
    """Forget a remote and its version mapping (nothing on the server changes)."""
    open_repo().remotes.remove(name)
    out.print(f"removed remote {name}", markup=False)


@remote_app.command("list")
def remote_list(as_json: JsonOpt = False) -> None:
    """Remotes by name, with their URLs."""
    found = open_repo().remotes.urls()
    if as_json:
        emit_json(found)
        return
    for name, url in sorted(found.items()):
        out.print(f"{name}\t{url}", markup=False)


@remote_app.command("map")
def remote_map(
    model: Annotated[str, typer.Argument(help="The model.")],
    remote: RemoteOpt = "origin",
    as_json: JsonOpt = False,
) -> None:
    """Which local version is which on the remote, as last pushed or pulled."""
    found = open_repo().remotes.mapping(remote, model)
    if as_json:
        emit_json({str(k): v for k, v in found.items()})
        return
    for local, there in sorted(found.items()):
        out.print(f"{model}:{local} (local) = {model}:{there} ({remote})", markup=False)


def _report(result: "TransferResult", as_json: bool) -> None:
    if as_json:
        emit_json(result.to_dict())
        return
    for m in result.versions:
        mark = "new" if m.new else "had it"
        out.print(
            f"{m.model}:{m.local} (local) = {m.model}:{m.remote} ({result.remote})  {mark}",
            markup=False,
        )
    for name, number in result.aliases.items():
        out.print(f"alias {name} → {number}", markup=False)
    err.print(
        f"{result.direction}: {result.new_versions} new versions, {result.objects_sent} objects "
        f"({result.bytes_sent:,} bytes) sent, {result.objects_skipped} already there",
        markup=False,
    )


@app.command()
def push(
    rev: Annotated[
        str,
        typer.Argument(
            metavar="NAME[:REV]",
            help="A model (its default branch head) or a revision such as churn:4.",
        ),
    ],
    remote: RemoteOpt = "origin",
    alias: Annotated[
        str | None,
        typer.Option(
            "--alias",
            help="Then move this alias on the server to it (compare-and-swap"
            " on where you last saw it there: 409 if it moved since).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a version and the ancestors the server lacks: only missing chunks move, and
    a version is visible there only once all its objects are. Again → a no-op. The
    token comes from MODELKEEP_TOKEN or `modelkeep login`."""
    result = open_repo().remotes.push(rev, remote, alias=alias, progress=progress())
    _report(result, as_json)


@app.command()
def fetch(
    model: Annotated[
        str | None, typer.Argument(help="One model (default: all you can read).")
    ] = None,
    remote: RemoteOpt = "origin",
    as_json: JsonOpt = False,
) -> None:
    """Bring over the server's versions this repository lacks (numbered here, mapped to
    theirs); branches advance only forward; aliases stay as they are here."""
    _report(open_repo().remotes.fetch(model, remote, progress=progress()), as_json)


@app.command()
def pull(
    model: Annotated[
        str | None, typer.Argument(help="One model (default: all you can read).")
    ] = None,
    remote: RemoteOpt = "origin",
    as_json: JsonOpt = False,
) -> None:
    """`fetch`, then aliases and tags here point where the server's do."""
    _report(open_repo().remotes.pull(model, remote, progress=progress()), as_json)


@app.command()
def clone(
    url: Annotated[str, typer.Argument(help="The team server, e.g. http://models.example:8900.")],
    path: Annotated[
        Path | None,
        typer.Argument(help="Where (default: a folder named for the model, or 'models')."),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Only this model.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """A new repository with the server as `origin`, and its versions pulled."""
    from modelkeep.repo import Repo

    where = path or Path(model or "models")
    repo, result = Repo.clone(url, where, model, progress=progress())
    repo.close()
    _report(result, as_json)


@app.command()
def login(
    url: Annotated[str, typer.Argument(help="The team server, e.g. http://models.example:8900.")],
) -> None:
    """Keep a token for a server in your credentials file (mode 600), read from stdin
    (never an argument: it would land in your shell's history)."""
    import sys

    from modelkeep.errors import UsageError
    from modelkeep.remote import credentials

    if sys.stdin.isatty():
        import getpass

        token = getpass.getpass(f"token for {url}: ").strip()
    else:
        token = sys.stdin.readline().strip()
    if not token:
        raise UsageError("no token given: paste the token `modelkeep token create` printed")
    out.print(f"token for {url} kept in {credentials.save(url, token)}", markup=False)
