"""The `data` group: versioned datasets."""

from pathlib import Path
from typing import Annotated

import typer

from modelkeep.cli import render
from modelkeep.cli.base import (
    JsonOpt,
    MessageOpt,
    data_app,
    open_repo,
    progress,
)
from modelkeep.cli.render import emit_json, out


@data_app.command("add")
def data_add(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    path: Annotated[Path, typer.Argument(help="CSV or Parquet file.")],
    message: MessageOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Store a dataset file as the next version of dataset NAME (use it as NAME:N)."""
    v = open_repo().data_add(name, path, message, progress=progress())
    if as_json:
        emit_json(v.to_dict())
    else:
        rows, cols = v.artifact["rows"], len(v.artifact["columns"])
        out.print(f"[{v.rev}] {rows} rows × {cols} columns, {render.size(v.size)}")


@data_app.command("list")
def data_list(as_json: JsonOpt = False) -> None:
    """List the datasets."""
    infos = [m for m in open_repo().models() if m.kind == "dataset"]
    if as_json:
        emit_json([m.to_dict() for m in infos])
    for m in [] if as_json else infos:
        out.print(f"{m.name}  {m.versions} version(s), latest {m.name}:{m.latest}")
