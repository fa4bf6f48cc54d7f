"""Update and monitor over HTTP: the jobs run on the team server's repository.

``RemoteRepo.update`` and ``RemoteRepo.monitor`` take what ``Repo.update`` and
``Repo.monitor`` take and answer the same typed results; the server runs the same
job (``run_update``, ``run_check``) on its repository, so the new version, its
lineage, the report and the events are made where the registry is, as the token's
user.

A batch of data (a CSV or Parquet file; a DataFrame is written as Parquet here
first) is stored in this machine's cache repository and its chunks sent through the
object routes, only those the server lacks, in bounded batches: a batch sent twice
moves once, and no request exceeds the server's body limits. The job's request then
names the file by its id. A dataset revision stored on the server (``sales:3``) is
named as it is, and nothing is sent.

What cannot travel is refused here, before anything is sent: a trainer, step function
or metric is code of this machine (and a ``module:function`` name would be imported
on the server, running code a token names there).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelkeep.errors import Hint, PathNotFoundError, TooLargeError, UsageError
from modelkeep.registry.records import Version, from_dict
from modelkeep.remote import transfer
from modelkeep.revision import Revision

if TYPE_CHECKING:
    from modelkeep._engine import Engine
    from modelkeep.remote.client import Client
    from modelkeep.store import ObjectId
    from modelkeep.update.runner import UpdateResult

# The server's bound on one job's table (server/job_routes.py), checked here first so
# that an oversized batch is refused before a byte of it is sent.
MAX_DATA = 64 << 20
_SUFFIXES = (".csv", ".parquet", ".pq")

_UPDATE_OPTIONS = frozenset(
    {
        "data", "target", "strategy", "gate", "holdout", "train", "promote", "params",
        "message", "candidates_branch", "accept_contradicting_data", "contradiction_drop",
        "contradiction_ratio",
    }
)  # fmt: skip
_CODE_OPTIONS = ("trainer", "step", "metrics")
_MONITOR_OPTIONS = frozenset({"target", "thresholds", "store", "source"})
_LOCAL_CLONE = Hint(
    cli="run it in a local clone (`modelkeep clone URL`), then `modelkeep push`",
    api="run the update in a local clone (Repo.clone), then push it",
)


class JobsOverHttp:
    """``update`` and ``monitor`` of ``RemoteRepo`` (see the module's docstring)."""

    # Given by RemoteRepo: the server's client and this machine's cache repository.
    _client: Client
    _e: Engine

    def update(self, rev: str, **options: Any) -> UpdateResult:
        """Train a candidate from ``rev`` on the server, gate it, commit it there."""
        for name in _CODE_OPTIONS:
            if options.get(name) is not None:
                raise UsageError(
                    f"{name}= is code of this machine, which a team server does not run",
                    hint=_LOCAL_CLONE,
                )
        if options.get("strategy") == "custom":
            raise UsageError("the custom strategy needs a trainer", hint=_LOCAL_CLONE)
        unknown = sorted(set(options) - _UPDATE_OPTIONS - set(_CODE_OPTIONS))
        if unknown:
            raise UsageError(f"update takes no option {', '.join(unknown)}")
        if "data" not in options or "target" not in options:
            raise UsageError("update needs data= (the new data) and target= (the label column)")
        # As Repo.update: the update machinery is imported only when an update runs.
        from modelkeep.update.runner import UpdateResult

        model = Revision.parse(rev).model
        with tempfile.TemporaryDirectory(prefix="modelkeep-job-") as tmp:
            body = dict(options)
            for what in ("data", "holdout", "train"):
                body[what] = self._job_table(options.get(what), what, model, Path(tmp))
            doc = self._client.post(f"/versions/{rev}/update", body)
        parent = from_dict(Version, doc.pop("parent_version"))
        return UpdateResult.from_dict(doc, parent)

    def monitor(self, rev: str, data: Any, **options: Any) -> dict[str, Any]:
        """Check a batch against the version's reference profile on the server and
        store the report there (``data``: a CSV or Parquet file, or a DataFrame)."""
        unknown = sorted(set(options) - _MONITOR_OPTIONS)
        if unknown:
            raise UsageError(f"monitor takes no option {', '.join(unknown)}")
        model = Revision.parse(rev).model
        body = dict(options)
        # What the report says it judged, as a local check says it: the path given.
        if body.get("source") is None and isinstance(data, (str, os.PathLike)):
            body["source"] = str(data)
        with tempfile.TemporaryDirectory(prefix="modelkeep-job-") as tmp:
            body["data"] = self._job_table(data, "data", model, Path(tmp))
            found: dict[str, Any] = self._client.post(f"/versions/{rev}/monitor", body)
        return found

    def _job_table(self, spec: Any, what: str, model: str, tmp: Path) -> dict[str, str] | None:
        """``spec`` as the job's request names it: a file sent first, or a dataset
        revision on the server."""
        if spec is None:
            return None
        if callable(spec) and not hasattr(spec, "columns"):
            raise UsageError(
                f"{what}= is a function of this machine, which a team server does not run",
                hint=_LOCAL_CLONE,
            )
        if hasattr(spec, "to_parquet"):  # a DataFrame: sent as the Parquet file it makes
            path = tmp / f"{what}.parquet"
            spec.to_parquet(path, index=False)
        elif isinstance(spec, (str, os.PathLike)):
            path = Path(spec)
            if not path.exists() and isinstance(spec, str) and ":" in spec:
                return {"dataset": spec}  # a dataset revision: the server has it
            if not path.is_file():
                raise PathNotFoundError(f"{what} {spec}: no such file (or dataset NAME:VERSION)")
        else:
            raise UsageError(
                f"{what} is a {type(spec).__name__}: give a CSV or Parquet file, a "
                "DataFrame, or a dataset NAME:VERSION"
            )
        if not path.name.lower().endswith(_SUFFIXES):
            raise UsageError(
                f"{what} {path}: a job over HTTP takes a CSV or Parquet file "
                f"({', '.join(_SUFFIXES)})"
            )
        size = path.stat().st_size
        if size > MAX_DATA:
            raise TooLargeError(
                f"{what} {path} is {size} bytes, more than a team server takes for one job "
                f"({MAX_DATA}): send a smaller batch, or run the job in a local clone"
            )
        sent = {"file": self._job_file(path, model).hex, "name": path.name}
        # Where it was here, for the lineage of what the job makes (a DataFrame has none).
        return sent if hasattr(spec, "to_parquet") else {**sent, "path": str(path.resolve())}

    def _job_file(self, path: Path, model: str) -> ObjectId:
        """Store ``path`` in the cache repository, send the server what it lacks of
        it, and return the file's id."""
        ctx = self._e.ctx
        with ctx.shared():  # as a commit stores its files: gc must not race the writer
            ctx.follow_upgrade()
            with ctx.store.writer() as writer:
                manifest = ctx.store.store_file(path, writer)
        sizes = {manifest.id: 0, **{c.id: c.size for c in manifest.chunks}}
        transfer.upload(self._e, self._client, model, sizes, None)
        return manifest.id
