"""The commit pipeline: gather the files (or save the model object), describe them,
store every object, and only then record the version — in one transaction with the
branch move. Datasets are committed the same way."""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import os
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelkeep import artifact, lineage, quantities
from modelkeep._engine.engine import Service, no_progress
from modelkeep._engine.layout import DEFAULT_BRANCH
from modelkeep._engine.sources import LINK_MODE, MODE_BITS, SAVED_MODE, Link, gather, is_paths
from modelkeep.errors import (
    DataFormatError,
    PathNotFoundError,
    UsageError,
)
from modelkeep.formats import signature, tabular
from modelkeep.profiles import Profile
from modelkeep.registry import DatasetRef
from modelkeep.revision import check_name
from modelkeep.store import TreeEntry, hash_file

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from modelkeep._engine.drafts import CommitDraft
    from modelkeep._engine.engine import ProgressStart
    from modelkeep.formats.base import Buffer
    from modelkeep.registry import Version


class Commits(Service):
    """Versions as they are made."""

    @staticmethod
    def kv(values: Mapping[str, Any] | None, what: str, numeric: bool = False) -> dict[str, Any]:
        """Params/metrics as stored: JSON values (numbers, for metrics, and finite)."""
        out = dict(values or {})
        for key, value in out.items():
            if not isinstance(key, str) or not key:
                raise UsageError(f"{what} names must be non-empty strings, got {key!r}")
            if hasattr(value, "item") and not isinstance(value, str | bytes):
                value = out[key] = value.item()  # NumPy scalars
            shown = f"{quantities.named(key)}={quantities.shown(value)}"
            if numeric and not _finite(value):
                raise UsageError(
                    f"metric {shown} is not a finite number; metrics are numbers (put other "
                    "facts in params)"
                )
            if _depth(value) > MAX_DEPTH:
                raise UsageError(
                    f"{what} {shown} nests deeper than {MAX_DEPTH} levels; store a structure "
                    "that deep as a file of the version"
                )
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError):
                raise UsageError(
                    f"{what} {shown} cannot be stored: use numbers, strings, booleans, lists "
                    "or dicts of them"
                ) from None
        return out

    def commit(self, draft: CommitDraft, progress: ProgressStart = no_progress) -> Version:
        """Store ``draft.source`` as the next version of model ``draft.name``.

        Everything is checked before anything is stored; objects are written and made
        durable first, and the version row and the branch move come last, in one
        transaction, so a crash leaves no half version. A PyTorch model is stored
        straight from its tensors' memory (no file is written first): leave it
        unchanged until the commit returns, as ``save_file`` asks too.
        """
        d = draft
        check_name(d.name)
        self.ctx.registry.check_entity(d.name, "model")
        if d.branch is not None:
            check_name(d.branch, "branch name")
        if d.branch is not None and d.name in self.ctx.registry.model_names():
            # Fail before writing any bytes; add_version checks again, atomically.
            self.ctx.registry.ref(d.name, d.branch, ("branch",))
        with (
            tempfile.TemporaryDirectory(prefix="modelkeep-") as scratch,
            _lineage_thread() as side,
        ):
            # Lineage asks git (two processes) while the model is saved.
            # In the caller's context: the author is the acting user where there is one.
            found = side.submit(contextvars.copy_context().run, _lineage, d.author, d.annotations)
            work = Path(scratch)
            model_obj = None
            saved = None
            buffers = None
            if is_paths(d.source):
                source = d.source
                path_list = [source] if isinstance(source, str | os.PathLike) else list(source)
                gathered = gather(path_list, self.ctx.holds)
            else:
                saved, buffers = artifact.save_object(d.source, work / "model", d.init_args)
                model_dir = [work / "model"]
                gathered = {} if buffers is not None else gather(model_dir, self.ctx.holds)
                model_obj = d.source
            files = {**gathered, **(buffers or {})}
            on_disk = {rel: f for rel, f in gathered.items() if isinstance(f, Path)}
            datasets, data_paths = self._datasets(d.data, work / "data")
            described = artifact.describe(
                on_disk,
                saved=saved,
                model=model_obj,
                input_example=d.input_example,
                training_data=data_paths[0] if data_paths else None,
                target=d.target,
                trusted=d.trusted,
            )
            return self.store_version(
                d.name,
                files,
                d.message,
                branch=d.branch,
                params=d.params,
                metrics=d.metrics,
                datasets=datasets,
                author=d.author,
                record=described.artifact,
                profile=described.profile,
                progress=progress,
                parents=d.parents,
                kind=d.kind,
                status=d.status,
                annotations=d.annotations,
                found=found,
            )

    def _datasets(
        self, data: Iterable[str | os.PathLike[str]], scratch: Path
    ) -> tuple[list[DatasetRef], list[Path]]:
        """Dataset refs by content, and local paths to read them (dataset revisions
        are materialised into ``scratch``)."""
        refs: list[DatasetRef] = []
        paths: list[Path] = []
        if isinstance(data, str | os.PathLike):
            data = [data]  # one dataset, not its characters
        for d in data:
            dpath = Path(d)
            if not dpath.exists() and isinstance(d, str) and ":" in d:
                version = self.e.versions.resolve(d)
                if version.format != "dataset":
                    raise UsageError(f"{d} is a model version, not a dataset")
                refs.append(DatasetRef(version.rev, version.artifact["content_id"], version.size))
                if not paths:  # only the first dataset is read (for the profile)
                    self.e.worktree.checkout(version, scratch / "0", force=True)
                    paths.append(scratch / "0" / version.artifact["main"])
                continue
            if dpath.is_dir():
                raise UsageError(f"dataset {dpath} is a folder: give the data file(s) in it")
            if not dpath.is_file():
                raise PathNotFoundError(
                    f"dataset {dpath}: no such file (a stored dataset is named NAME:VERSION)"
                )
            refs.append(
                DatasetRef(
                    lineage.data_path(dpath), hash_file(str(dpath)).hex, dpath.stat().st_size
                )
            )
            paths.append(dpath)
        return refs, paths

    def store_version(
        self,
        name: str,
        files: Mapping[str, Path | Buffer | Link],
        message: str,
        *,
        branch: str | None,
        params: Mapping[str, Any] | None,
        metrics: Mapping[str, Any] | None,
        datasets: list[DatasetRef],
        author: str | None,
        record: dict[str, Any] | None,
        profile: dict[str, Any] | None,
        progress: ProgressStart,
        entity: str = "model",
        parents: Sequence[int] | None = None,
        kind: str = "commit",
        status: str = "ok",
        annotations: Mapping[str, Any] | None = None,
        found: Future[tuple[str, dict[str, Any]]] | None = None,
    ) -> Version:
        """Store ``files`` and record the version. ``found``: the author and lineage
        (``_lineage``), when the caller started gathering them earlier."""
        params_doc = self.kv(params, "param")
        metrics_doc = self.kv(metrics, "metric", numeric=True)
        total = sum(
            src.stat().st_size if isinstance(src, Path) else src.size for src in files.values()
        )
        self.ctx.registry.check_writable()
        tick = progress(f"commit {name}", total)
        with contextlib.ExitStack() as stack:
            if found is None:
                # Lineage asks git (two processes) while the bytes are stored.
                side = stack.enter_context(_lineage_thread())
                found = side.submit(contextvars.copy_context().run, _lineage, author, annotations)
            with self.ctx.shared():
                self.ctx.follow_upgrade()
                self.ctx.store.refresh()
                with self.ctx.store.writer() as writer:
                    entries = {}
                    for rel, src in files.items():
                        if isinstance(src, Path):
                            manifest = self.ctx.store.store_file(src, writer, tick)
                            mode = src.stat().st_mode & MODE_BITS
                        elif isinstance(src, Link):
                            manifest = self.ctx.store.store_parts(src.parts, writer, tick)
                            mode = LINK_MODE
                        else:
                            manifest = self.ctx.store.store_parts(
                                src.parts, writer, tick, segmented=src.segmented
                            )
                            mode = SAVED_MODE
                        entries[rel] = TreeEntry(manifest.id, manifest.size, mode)
                    tree = self.ctx.store.put_tree(entries, writer)
                    if record is not None and profile is not None:
                        blob = json.dumps(profile, separators=(",", ":"), sort_keys=True)
                        record = {**record, "profile": writer.add(blob.encode()).hex}
                who, lineage_doc = found.result()
                return self.ctx.registry.add_version(
                    model=name,
                    branch=branch,
                    tree_id=tree.id.hex,
                    size=tree.size,
                    file_count=len(entries),
                    message=message,
                    author=who,
                    params=params_doc,
                    metrics=metrics_doc,
                    lineage=lineage_doc,
                    datasets=datasets,
                    default_branch=DEFAULT_BRANCH,
                    artifact=record,
                    entity=entity,
                    parents=parents,
                    kind=kind,
                    status=status,
                )

    def data_add(
        self,
        name: str,
        path: str | os.PathLike[str],
        message: str = "",
        *,
        author: str | None = None,
        progress: ProgressStart = no_progress,
    ) -> Version:
        """Store a dataset file (CSV, Parquet) as the next version of dataset ``name``."""
        check_name(name, "dataset name")
        self.ctx.registry.check_entity(name, "dataset")
        src = Path(path)
        if not src.is_file():
            raise PathNotFoundError(f"{src}: no such file")
        frame = tabular.read(src)
        if not hasattr(frame, "columns"):
            raise DataFormatError(f"{src}: datasets are tables (CSV or Parquet)")
        record = {
            "format": "dataset",
            "main": src.name,
            "content_id": hash_file(str(src)).hex,
            "rows": len(frame),
            "columns": signature.infer(frame)["columns"],
        }
        return self.store_version(
            name,
            {src.name: src},
            message,
            branch=None,
            params=None,
            metrics=None,
            datasets=[],
            author=author,
            record=record,
            profile=Profile.of(frame).to_json(),
            progress=progress,
            entity="dataset",
        )


# How deep a param may nest: every reader of a version (JSON, the CLI's tables) walks
# it recursively, and Python's recursion limit is about 1,000.
MAX_DEPTH = 32


def _depth(value: Any, limit: int = MAX_DEPTH + 1) -> int:
    """How deep lists and dicts nest in ``value`` (counted no further than ``limit``)."""
    depth, level = 0, [value]
    while level and depth < limit:
        level = [
            item
            for v in level
            if isinstance(v, list | tuple | dict)
            for item in (v.values() if isinstance(v, dict) else v)
        ]
        depth += 1
    return depth - (not level)


def _finite(value: Any) -> bool:
    """A real number a float holds (a 400-digit int overflows math.isfinite)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _lineage_thread() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(1, thread_name_prefix="modelkeep-lineage")


def _lineage(
    author: str | None, annotations: Mapping[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    """Who commits, and the lineage a version records: code, environment, annotations."""
    code = lineage.code_ref()
    doc = {
        "code": None
        if code is None
        else {
            "commit": code.commit,
            "dirty": code.dirty,
            "repository": code.repository,
            "branch": code.branch,
        },
        "environment": lineage.environment(),
        **dict(annotations or {}),
    }
    return author or lineage.author(), doc
