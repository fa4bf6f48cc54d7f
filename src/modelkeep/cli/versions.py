"""Commands on versions: init, commit, log, show, models, checkout, status, diff."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from modelkeep.cli import render
from modelkeep.cli.base import (
    JsonOpt,
    app,
    open_repo,
    pairs,
    progress,
    whole,
)
from modelkeep.cli.render import emit_json, out
from modelkeep.errors import UsageError
from modelkeep.graph import graph_lines, labels_by_version


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Folder to create the repository in.")] = Path("."),
    db: Annotated[
        str | None,
        typer.Option(
            help="Keep the registry in this database: postgresql://USER@HOST:PORT/DB "
            "(the password from PGPASSWORD or ~/.pgpass; never stored). "
            "Default: MODELKEEP_DB, else SQLite in the folder.",
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="Keep the objects in s3://BUCKET/PREFIX or a folder (e.g. on a shared "
            "file system); credentials from the environment or the AWS configuration. "
            "Default: MODELKEEP_STORE, else the folder's own store.",
        ),
    ] = None,
    s3_endpoint: Annotated[
        str | None,
        typer.Option(help="An S3-compatible endpoint URL (MinIO, a test server)."),
    ] = None,
) -> None:
    """Create a repository: a .modelkeep/ folder with the object store and the registry,
    or, with --db/--store, a folder that points at a shared registry and store."""
    from modelkeep.repo import Repo

    repo = Repo.init(path, db=db, store=store, s3_endpoint=s3_endpoint)
    where = repo.root / ".modelkeep"
    try:
        if db or store or repo.registry.file is None:
            out.print(f"Initialized modelkeep repository in {where}: registry "
                      f"{repo.registry.where}, store {repo.store_location}")  # fmt: skip
        else:
            out.print(f"Initialized empty modelkeep repository in {where}")
    finally:
        repo.close()


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
    repo = open_repo()
    v = repo.commit(
        name,
        paths,
        message,
        branch=branch,
        params=pairs(param, "--param"),
        metrics=pairs(metric, "--metric"),
        data=data or [],
        author=author,
        input_example=example,
        target=target,
        trusted=trust,
        progress=progress(),
    )
    if as_json:
        emit_json(v.to_dict())
    else:
        out.print(
            f"[{v.branch} {v.rev}] {v.message}  ({v.file_count} file(s), {render.size(v.size)})"
        )


# One page, newest first, unless -n or --all says otherwise (as git log with a pager
# shows the newest first and no more than a screen of them at a time).
PAGE = 30


@app.command()
def log(
    name: Annotated[str, typer.Argument(help="Model name.")],
    branch: Annotated[str | None, typer.Option("--branch", "-b", help="Only this branch.")] = None,
    graph: Annotated[bool, typer.Option("--graph", help="Draw the branch structure.")] = False,
    limit: Annotated[
        int | None,
        typer.Option("-n", parser=whole("-n", 1), help=f"At most N versions (default {PAGE})."),
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", "-a", help="Every version (through a pager on a terminal).")
    ] = False,
    where: Annotated[
        str | None,
        typer.Option(
            "--where",
            help='Only versions this filter holds for, e.g. "metrics.f1 > 0.9 and '
            "params.dataset = 'ds-3' and labels.reviewed_by = 'alice'\" (fields: "
            "metrics.K, params.K, labels.K, number, branch, author, message, status, "
            "kind, created_at; = != < <= > >=; and, or, not, parentheses).",
        ),
    ] = None,
    order_by: Annotated[
        str | None,
        typer.Option(
            "--order-by", help="Sort by a field, highest first (FIELD asc: lowest first)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List versions newest first, with message, author, time and metrics: a page of
    the newest, -n N of them, or --all; --where and --order-by search them."""
    if every and limit is not None:
        raise UsageError("-n and --all exclude each other")
    if branch is not None and (where or order_by):
        raise UsageError("--branch does not combine with --where or --order-by")
    repo = open_repo()
    page = None if every else (limit or PAGE)
    # One more than asked: whether older versions remain, without counting them all.
    ask = None if page is None else page + 1
    if where or order_by:
        versions = repo.search(name, where, order_by, ask)
    else:
        versions = repo.log(name, branch=branch, limit=ask)
    more = page is not None and len(versions) > page
    versions = versions[:page]
    labels = labels_by_version(repo.refs(name))
    rolled = {e.after for e in repo.events(name, action="rollback") if e.after}
    if as_json:
        emit_json(versions)  # orjson writes the records themselves, as to_dict() would
        return
    text = (
        "\n".join(graph_lines(versions, labels))
        if graph
        else render.version_table(versions, labels, rolled)
    )
    if every and sys.stdout.isatty():
        with out.pager(styles=False):
            out.print(text, markup=False)
    else:
        out.print(text)
    if more:
        sys.stderr.write(
            f"(the newest {page}; older versions: -n N for more, --all for every one)\n"
        )


@app.command()
def show(
    rev: Annotated[str, typer.Argument(help="Revision, e.g. churn:3 or churn@production.")],
    as_json: JsonOpt = False,
) -> None:
    """Show a version with its full lineage and files."""
    repo = open_repo()
    v = repo.show(rev)
    files = repo.files(v)
    labels = labels_by_version(repo.refs(v.model)).get(v.number, [])
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
    infos = open_repo().models()
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
    result = open_repo().checkout(rev, dest, force=force, progress=progress())
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
    st = open_repo().status(rev, path)
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
    d = open_repo().diff(rev_a, rev_b, data=data, target=target, trusted=trust)
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
