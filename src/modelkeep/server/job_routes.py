"""The team server's job routes: a monitoring check and an update, run on the
server's repository, so that reports, versions, lineage and events land where the
registry is and record the token's user.

The batch of data does not travel in the job's request: the client sends the file's
chunks through the object routes first (``…/objects/missing``, ``POST …/objects``:
verified, deduplicated, in bounded batches, so a batch sent twice moves once and
every request stays within the server's body limits), then names the file by its id
here. The server writes that file to a temporary folder (at most ``MAX_DATA`` bytes:
413 past it, before a byte is written) and runs the same job a local repository
runs. A dataset stored in the repository is named by its revision instead, and needs
nothing sent.

A job may take seconds to minutes: the routes are plain functions, which FastAPI
runs on its thread pool, off the event loop.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path as FilePath
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from modelkeep import lineage
from modelkeep.errors import CorruptObjectError, NotFoundError, TooLargeError, UsageError
from modelkeep.server.app import API, Caller, Who, model_of
from modelkeep.store import ObjectId

if TYPE_CHECKING:
    from collections.abc import Iterator

# The largest batch of data one job takes, as the file the job reads. A job reads
# the whole table into memory on the server, so this bounds what one request costs.
MAX_DATA = 64 << 20
# Suffixes the jobs read (formats.tabular): the file keeps its suffix, which says
# how it is parsed.
_SUFFIXES = (".csv", ".parquet", ".pq")
_ID = "^[0-9a-f]{64}$"

Rev = Annotated[str, Path(max_length=300)]


class Table(BaseModel):
    """One table of a job: a file sent as objects, or a dataset stored here."""

    file: str | None = Field(
        default=None, pattern=_ID, description="the file's id, its objects sent first"
    )
    name: str = Field(
        default="data.csv",
        max_length=255,
        description="the file's name on the client: its suffix says its format",
    )
    dataset: str | None = Field(
        default=None, max_length=300, description="a dataset revision here, e.g. sales:3"
    )
    path: str | None = Field(
        default=None,
        max_length=4096,
        description="where the file was on the client: what the new version's lineage "
        "records as its place (as USER@ADDRESS:PATH), the server's copy being temporary",
    )


class MonitorJob(BaseModel):
    data: Table
    target: str | None = Field(default=None, max_length=256)
    thresholds: dict[str, dict[str, float]] | None = None
    store: bool = True
    source: str | None = Field(
        default=None, max_length=4096, description="what the report says it judged"
    )


class UpdateJob(BaseModel):
    data: Table
    target: str = Field(max_length=256)
    strategy: str = Field(default="incremental", pattern="^(batch|incremental)$")
    gate: str | None = Field(default=None, max_length=10_000)
    holdout: Table | None = None
    train: Table | None = None
    promote: str | None = Field(default=None, max_length=128)
    params: dict[str, Any] | None = None
    message: str | None = Field(default=None, max_length=10_000)
    candidates_branch: str = Field(default="candidates", max_length=128)
    accept_contradicting_data: bool = False
    contradiction_drop: float | None = None
    contradiction_ratio: float | None = None


def routes(app_state: Any) -> APIRouter:
    api = APIRouter(prefix=API, tags=["jobs"])

    def repo() -> Any:
        return app_state.repo

    @api.post("/versions/{rev}/monitor")
    def monitor(rev: Rev, body: MonitorJob, who: Who) -> dict[str, Any]:
        """Check a batch against the version's reference profile and store the report
        (write scope: the report is kept with the version); 413 past ``MAX_DATA``."""
        who.need("write", model_of(rev))
        with _tables(repo(), who, {"data": body.data}) as given:
            source = body.source or body.data.dataset or body.data.name
            with who.acting():
                found: dict[str, Any] = repo().monitor(
                    rev,
                    given["data"],
                    target=body.target,
                    thresholds=body.thresholds,
                    store=body.store,
                    source=source,
                )
                if body.store:
                    # A report row has no author: on a server many people may store
                    # reports (which policies act on), so the log says who sent which.
                    _checked(repo(), found, source)
        return found

    @api.post("/versions/{rev}/update")
    def update(rev: Rev, body: UpdateJob, who: Who) -> dict[str, Any]:
        """Train a candidate from ``rev`` on the data, gate it, commit it either way
        (write scope; ``promote`` moves an alias, also write). The answer is the
        update's result, with its parent's record as ``parent_version``."""
        who.need("write", model_of(rev))
        tables = {"data": body.data, "holdout": body.holdout, "train": body.train}
        tuning = {
            k: v
            for k, v in (
                ("contradiction_drop", body.contradiction_drop),
                ("contradiction_ratio", body.contradiction_ratio),
            )
            if v is not None
        }
        with _tables(repo(), who, tables) as given, who.acting():
            result = repo().update(
                rev,
                data=given["data"],
                target=body.target,
                strategy=body.strategy,
                gate=body.gate,
                holdout=given.get("holdout"),
                train=given.get("train"),
                promote=body.promote,
                params=body.params,
                message=body.message,
                candidates_branch=body.candidates_branch,
                accept_contradicting_data=body.accept_contradicting_data,
                **tuning,
            )
        return {**result.to_dict(), "parent_version": result.parent.to_dict()}

    return api


@contextlib.contextmanager
def _tables(repo: Any, who: Caller, tables: dict[str, Table | None]) -> Iterator[dict[str, str]]:
    """Each table given as what the job reads: a dataset revision as it is (the token
    must read its dataset), a sent file written to a temporary folder, removed after
    the job. Every table is checked before any file is written."""
    for what, table in tables.items():
        if table is not None:
            _check(repo, who, what, table)
    with tempfile.TemporaryDirectory(prefix="modelkeep-job-") as tmp:
        given: dict[str, str] = {}
        shown: dict[str, str] = {}
        for what, table in tables.items():
            if table is None:
                continue
            if table.dataset is not None:
                given[what] = table.dataset
                continue
            assert table.file is not None  # _check saw to it
            # Its own folder per table: two tables sent with the same name stay apart,
            # and the name (what lineage records) stays the client's.
            folder = FilePath(tmp) / what
            folder.mkdir()
            path = folder / FilePath(table.name).name
            _write(repo, ObjectId(table.file), path)
            given[what] = str(path)
            sender = f"{who.token.user}@{who.address}" if who.address else who.token.user
            shown[str(path.resolve())] = f"{sender}:{table.path or table.name}"
        with lineage.files_sent(shown):
            yield given


def _check(repo: Any, who: Caller, what: str, table: Table) -> None:
    if (table.file is None) == (table.dataset is None):
        raise UsageError(f"{what}: give either a file id or a dataset revision, not both")
    if table.dataset is not None:
        who.need("read", model_of(table.dataset))
        return
    name = FilePath(table.name).name
    if name in ("", ".", "..") or not name.lower().endswith(_SUFFIXES):
        raise UsageError(
            f"{what}: {table.name!r} is not a table file: send a CSV or Parquet file "
            f"({', '.join(_SUFFIXES)})"
        )
    oid = ObjectId(str(table.file))
    if repo.exchange.missing([oid]):
        raise NotFoundError(
            f"{what}: file {oid.short} is not on the server: send its objects first "
            "(POST /models/NAME/objects), then the job"
        )
    try:
        manifest = repo.store.file_manifest(oid)
    except CorruptObjectError:  # an object that is there, but a chunk, not a file
        raise UsageError(f"{what}: object {oid.short} is not a file's manifest") from None
    if manifest.size > MAX_DATA:
        raise TooLargeError(
            f"{what} is {manifest.size} bytes, more than one job takes ({MAX_DATA}): "
            "send a smaller batch, or run the job on a clone of the repository"
        )
    lacking = repo.exchange.missing(c.id for c in manifest.chunks)
    if lacking:
        raise NotFoundError(
            f"{what}: {len(lacking)} chunk(s) of file {oid.short} are not on the server "
            f"(first: {lacking[0].short}): send them, then the job"
        )


def _write(repo: Any, oid: ObjectId, path: FilePath) -> None:
    """The file's content into ``path``, chunk by chunk, each verified as it is read.

    The manifest came from the client: its sizes are not trusted. Each chunk must be
    as long as the manifest says, and the whole no longer than ``MAX_DATA``, checked
    as it is written (a manifest naming a large object as a small one cannot get a
    larger file written than one job takes)."""
    store = repo.store
    manifest = store.file_manifest(oid)
    written = 0
    with path.open("xb") as out:
        for chunk in manifest.chunks:
            data = store.get(chunk.id)  # verified against its id
            if len(data) != chunk.size:
                raise UsageError(
                    f"file {oid.short} lists chunk {chunk.id.short} as {chunk.size} bytes; "
                    f"it is {len(data)}: send the file again"
                )
            written += len(data)
            if written > MAX_DATA:
                raise TooLargeError(
                    f"file {oid.short} is more than one job takes ({MAX_DATA} bytes): "
                    "send a smaller batch"
                )
            out.write(data)
    if written != manifest.size:
        raise UsageError(
            f"file {oid.short} says it is {manifest.size} bytes, its chunks make {written}: "
            "send the file again"
        )


def _checked(repo: Any, report: dict[str, Any], source: str) -> None:
    drift = report["drift"]
    model = model_of(report["version"])
    said = "drift" if drift["drifted"] else "no drift"
    repo.record_event(
        model,
        "monitor.checked",
        f"{report['version']} on {source}: {said} (report #{report['id']})",
        details={
            "version": report["version"],
            "report": report["id"],
            "source": source,
            "drifted": bool(drift["drifted"]),
        },
    )
