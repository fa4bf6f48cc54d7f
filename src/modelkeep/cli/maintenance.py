"""Keeping a repository sound: fsck, gc, upgrade; and the demo."""

from pathlib import Path
from typing import Annotated

import typer

from modelkeep.cli import render
from modelkeep.cli.base import (
    JsonOpt,
    app,
    open_repo,
    progress,
    state,
)
from modelkeep.cli.render import emit_json, out


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
    from modelkeep.remote.client import is_url
    from modelkeep.repo import Repo

    if repair and is_url(state["repo"]):
        # A server's registry is salvaged on its machine; over HTTP, damaged objects are
        # moved aside by the server's own fsck (admin).
        report = open_repo().fsck(repair=True, progress=progress())
    elif repair:
        report = Repo.repair(state["repo"], progress=progress())
    else:
        report = open_repo().fsck(progress=progress())
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
    report = open_repo().gc()
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
    report = open_repo().upgrade(progress=progress())
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

    run_demo(keep, lambda line: out.print(line, markup=False))
