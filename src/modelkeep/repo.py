"""``Repo``: the one public facade. The only place a version row meets its stored tree."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shutil
import stat
import struct
import tempfile
import tomllib
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from modelkeep import artifact, formats, lineage, quantities
from modelkeep.errors import (
    ConflictError,
    DataFormatError,
    EmptyCommitError,
    ModelkeepError,
    NotFoundError,
    PathNotFoundError,
    ReadOnlyRepositoryError,
    RegistryDamagedError,
    RepositoryExistsError,
    RepositoryFormatError,
    RepositoryNotFoundError,
    RevisionSyntaxError,
    SignatureError,
    StoreError,
    UnsafePathError,
    UsageError,
    VersionNotFoundError,
    WorkingTreeConflictError,
)
from modelkeep.formats import modeldiff, signature, tabular, tensordiff
from modelkeep.formats.base import LoadsInPlace
from modelkeep.profiles import Profile
from modelkeep.registry import DatasetRef, Event, ModelInfo, Ref, Registry, Version
from modelkeep.results import (
    CheckoutResult,
    DiffResult,
    FileChange,
    FileInfo,
    FsckReport,
    GcReport,
    StatusResult,
    UpgradeReport,
)
from modelkeep.revision import Revision, check_name, parse_alias
from modelkeep.store import (
    ChunkParams,
    FileManifest,
    LocalBackend,
    MemoryBackend,
    ObjectId,
    ObjectStore,
    TreeEntry,
    hash_file,
    locks,
)
from modelkeep.store.inplace import StoredFile

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from datetime import timedelta

    from modelkeep.deploy import RoutingTable
    from modelkeep.formats.base import Buffer
    from modelkeep.formats.tensordiff import TensorDiff, TensorInfo
    from modelkeep.monitor.schedule import ScheduledRun
    from modelkeep.registry.records import Deployment, Schedule
    from modelkeep.registry.salvage import Salvaged
    from modelkeep.store import Backend, Tree

    Progress = Callable[[int], None]
    ProgressStart = Callable[[str, int], Progress | None]

REPO_DIR = ".modelkeep"
# 2: large raw objects may be page-aligned (codec RAW_PAGE), which releases knowing
# only format 1 could not read. A format-1 repository is still written as format 1.
FORMAT = 2
ENV_REPO = "MODELKEEP_REPO"
DEFAULT_BRANCH = "main"


def _no_progress(_label: str, _total: int) -> None:
    return None


class Repo:
    """A modelkeep repository: versions of models, their refs, lineage and events.

    Open one with ``Repo(path)`` (walks up from ``path`` or the current folder, like
    git; ``MODELKEEP_REPO`` overrides) or create one with ``Repo.init(path)``.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        root = self.find(Path(path) if path is not None else None)
        control = root / REPO_DIR
        config = self._read_config(control)
        self.root = root
        self._control: Path | None = control
        self._lock_path: Path | None = control / "lock"
        params = ChunkParams.from_json(config["chunking"])
        self._setup(
            LocalBackend(control / "store"),
            params,
            _sqlite_url(control),
            page_aligned=_page_aligned(config),
        )

    def _setup(
        self,
        backend: Backend,
        params: ChunkParams,
        url: str,
        new: bool = False,
        *,
        page_aligned: bool = True,
    ) -> None:
        self.store = ObjectStore(backend, params, page_aligned=page_aligned)
        self._policies: dict[str, tuple[str, str]] = {}
        self.registry = Registry(url)
        if new:
            self.registry.create()
        self.registry.check_schema()

    # -- opening --------------------------------------------------------------------

    @staticmethod
    def find(start: Path | None = None) -> Path:
        """The folder holding ``.modelkeep``: ``start`` or MODELKEEP_REPO or the cwd, upwards."""
        if start is None and os.environ.get(ENV_REPO):
            start = Path(os.environ[ENV_REPO])
        if start is not None and not start.is_dir():
            # A mistyped --repo must not silently open the repository above it.
            raise RepositoryNotFoundError(
                f"{start}: no such folder; give the folder that holds .modelkeep "
                "(or create one there with `modelkeep init`)"
            )
        origin = (start or Path.cwd()).resolve()
        if origin.name == REPO_DIR:
            origin = origin.parent
        for folder in (origin, *origin.parents):
            if (folder / REPO_DIR / "config.json").is_file():
                return folder
        raise RepositoryNotFoundError(
            f"no modelkeep repository at {origin} or any folder above it; "
            "create one with `modelkeep init` (or pass --repo PATH / set MODELKEEP_REPO)"
        )

    @staticmethod
    def _read_config(control: Path) -> dict[str, Any]:
        try:
            config: dict[str, Any] = json.loads((control / "config.json").read_text())
            fmt = int(config["format"])
        except (OSError, ValueError, KeyError, TypeError):
            raise RepositoryFormatError(
                f"{control / 'config.json'} is unreadable; it is not a modelkeep repository "
                "or it was damaged"
            ) from None
        if fmt > FORMAT:
            raise RepositoryFormatError(
                f"this repository has format {fmt}, newer than this modelkeep understands "
                f"({FORMAT}); upgrade with `pip install -U modelkeep`"
            )
        return config

    def _follow_upgrade(self) -> None:
        """A repository opened at format 1 may have been upgraded since (upgrade holds
        the lock exclusively, so under the shared lock the config is settled): write
        the layout it now has."""
        if self._control is None or self.store.page_aligned:
            return
        if _page_aligned(self._read_config(self._control)):
            self.store.align_from_now()

    @classmethod
    def init(cls, path: str | os.PathLike[str] = ".", params: ChunkParams | None = None) -> Repo:
        """Create a repository in ``path`` (made if missing) and open it."""
        root = Path(path).resolve()
        control = root / REPO_DIR
        if (control / "config.json").exists():
            raise RepositoryExistsError(f"{root} already holds a modelkeep repository")
        (control / "store").mkdir(parents=True, exist_ok=True)
        created = Registry(_sqlite_url(control))
        try:
            created.create()
        finally:
            created.dispose()  # its pooled connection would hold the WAL open
        config = {
            "format": FORMAT,
            "chunking": (params or ChunkParams()).to_json(),
            "default_branch": DEFAULT_BRANCH,
        }
        # The config is written last: until it exists, this is not a repository.
        _write_config(control, config)
        return cls(root)

    @classmethod
    def salvage_registry(cls, path: str | os.PathLike[str] | None = None) -> Salvaged:
        """Rebuild a damaged registry from every row that can still be read (the
        damaged file is kept beside it; see ``modelkeep.registry.salvage``). Versions
        whose rows were lost leave their objects unreferenced: ``gc`` would delete
        them, so restore from a backup instead if there is one."""
        from modelkeep.registry.salvage import salvage

        root = cls.find(Path(path) if path is not None else None)
        control = root / REPO_DIR
        cls._read_config(control)
        db = control / "registry.db"
        if not os.access(db, os.W_OK) or not os.access(control, os.W_OK | os.X_OK):
            raise ReadOnlyRepositoryError(
                f"salvaging {db} writes a new registry, and you may only read it; run it "
                "as a user who can write there"
            )
        with locks.exclusive(control / "lock"):
            return salvage(db)

    @classmethod
    def repair(
        cls, path: str | os.PathLike[str] | None = None, progress: ProgressStart = _no_progress
    ) -> FsckReport:
        """``fsck(repair=True)`` of the repository at ``path``, also when its registry is
        too damaged to open: it is salvaged first (``salvage_registry``)."""
        try:
            repo = cls(path)
        except RegistryDamagedError:
            salvaged = cls.salvage_registry(path)
            with cls(path) as repo:
                report = repo.fsck(progress, repair=True)
            return dataclasses.replace(
                report,
                problems=[*salvaged.problems(), *report.problems],
                salvaged=salvaged.to_dict(),
            )
        with repo:
            return repo.fsck(progress, repair=True)

    def _salvage_open_registry(self) -> Salvaged:
        """Salvage this repository's registry and go on with the salvaged one."""
        url = self.registry.url
        self.registry.dispose()
        try:
            return self.salvage_registry(self.root)
        finally:
            self.registry = Registry(url)

    @classmethod
    def memory(cls, params: ChunkParams | None = None) -> Repo:
        """A throw-away repository in memory, for tests and experiments."""
        repo = cls.__new__(cls)
        repo.root = Path.cwd()
        repo._control = None
        repo._lock_path = None
        repo._setup(
            MemoryBackend(), params or ChunkParams(), "sqlite+pysqlite:///:memory:", new=True
        )
        return repo

    def close(self) -> None:
        self.registry.dispose()

    def __enter__(self) -> Repo:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Repo({str(self.root)!r})"

    # -- revisions ------------------------------------------------------------------

    def resolve(self, rev: str | Revision) -> Version:
        """The version a revision names (see ``modelkeep.revision``)."""
        r = rev if isinstance(rev, Revision) else Revision.parse(rev)
        if r.number is None and not r.back and not r.ancestry:
            return self.registry.version_at(r.model, r.ref)
        if r.number is not None:
            number = r.number
        elif r.ref is not None:
            number = self.registry.ref(r.model, r.ref).version
            if r.back:
                number = self._before_moves(r.model, r.ref, r.back)
        else:
            number = self.registry.ref(
                r.model, self.registry.default_branch(r.model), ("branch",)
            ).version
        if r.ancestry:
            parents = self.registry.parents_map(r.model)
            for step in range(r.ancestry):
                up = parents.get(number, ())
                if not up:
                    raise VersionNotFoundError(
                        f"{r} goes back {r.ancestry} steps but {r.model}:{number} has no "
                        f"parent (after {step} steps)"
                    )
                number = up[0]
        return self.registry.version(r.model, number)

    def _version(self, rev: str | Version) -> Version:
        return rev if isinstance(rev, Version) else self.resolve(rev)

    def _before_moves(self, model: str, ref: str, back: int) -> int:
        moves = self.registry.ref_moves(model, ref)
        if len(moves) < back or moves[back - 1].before is None:
            raise VersionNotFoundError(
                f"{model}@{ref}{'^' * back}: the ref has moved only "
                f"{max(0, len(moves) - 1)} time(s) since it was created; no earlier target"
            )
        before = moves[back - 1].before
        assert before is not None
        return before

    # -- commit ---------------------------------------------------------------------

    def _gather(self, paths: Sequence[str | os.PathLike[str]]) -> dict[str, Path | _Link]:
        """Relative POSIX path in the version → file on disk (or symlink to keep).

        One folder alone commits its contents; otherwise each argument keeps its
        own name (a folder as a prefix). Inside a folder a symlink is kept as a link
        with its target, as git does, and never followed: a link whose target leaves
        the folder is refused (its bytes are not the folder's to store). A path named
        on the command line is what the user means, and is followed.
        """
        if not paths:
            raise EmptyCommitError("nothing to commit: give one or more files or folders")
        sources = [Path(p) for p in paths]
        for src in sources:
            if not src.exists():
                raise PathNotFoundError(f"{src}: no such file or folder")
            if self._control is not None and self._control.resolve() in (
                src.resolve(),
                *src.resolve().parents,
            ):
                raise UsageError(
                    f"{src} is inside the repository's own {REPO_DIR} folder; commit the "
                    "model's files, not the repository"
                )
        files: dict[str, Path | _Link] = {}

        def add(rel: str, item: Path | _Link) -> None:
            if rel in files:
                raise UsageError(f"two inputs both give {rel!r}; commit them from one folder")
            files[rel] = item

        single_dir = len(sources) == 1 and sources[0].is_dir()
        folder_links: dict[Path, dict[str, str]] = {src: {} for src in sources}
        for src in sources:
            if src.is_dir():
                prefix = PurePosixPath() if single_dir else PurePosixPath(src.resolve().name)
                for dirpath, dirs, names in os.walk(src):
                    dirs[:] = sorted(d for d in dirs if d != REPO_DIR)
                    # os.walk lists a link to a folder among the folders (and does
                    # not enter it): it is a link to keep, like a link to a file.
                    links = [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]
                    dirs[:] = [d for d in dirs if d not in links]
                    for name in sorted([*names, *links]):
                        full = Path(dirpath, name)
                        rel = full.relative_to(src).as_posix()
                        if full.is_symlink():
                            add((prefix / rel).as_posix(), _Link(os.readlink(full)))
                            folder_links[src][rel] = os.readlink(full)
                        elif full.is_file():
                            add((prefix / rel).as_posix(), full)
                        # sockets and fifos are not content
            elif src.is_file():
                add(src.name, src)
            else:
                raise UsageError(f"{src}: not a regular file or folder")
            escaping = _escaping_link(folder_links[src])
            if escaping is not None:
                raise UnsafePathError(
                    f"{src / escaping} is a symlink to {folder_links[src][escaping]!r}, "
                    "which leads outside the folder being committed; commit the file it "
                    "points to, or make the link point inside"
                )
        if not files:
            raise EmptyCommitError(
                f"nothing to commit: {', '.join(map(str, sources))} holds no files"
            )
        return files

    @staticmethod
    def _kv(values: Mapping[str, Any] | None, what: str, numeric: bool = False) -> dict[str, Any]:
        """Params/metrics as stored: JSON values (numbers, for metrics, and finite)."""
        out = dict(values or {})
        for key, value in out.items():
            if not isinstance(key, str) or not key:
                raise UsageError(f"{what} names must be non-empty strings, got {key!r}")
            if hasattr(value, "item") and not isinstance(value, str | bytes):
                value = out[key] = value.item()  # NumPy scalars
            if numeric and not _finite(value):
                raise UsageError(
                    f"metric {key[:40]}={quantities.shown(value)} is not a finite "
                    "number; metrics are numbers (put other facts in params)"
                )
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError):
                raise UsageError(
                    f"{what} {key[:40]}={quantities.shown(value)} cannot be stored: "
                    "use numbers, strings, booleans, lists or dicts of them"
                ) from None
        return out

    def commit(
        self,
        name: str,
        source: Any,
        message: str = "",
        *,
        branch: str | None = None,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        data: Iterable[str | os.PathLike[str]] = (),
        author: str | None = None,
        input_example: Any = None,
        target: str | None = None,
        init_args: dict[str, Any] | None = None,
        trusted: Any = None,
        parents: Sequence[int] | None = None,
        kind: str = "commit",
        status: str = "ok",
        annotations: Mapping[str, Any] | None = None,
        progress: ProgressStart = _no_progress,
    ) -> Version:
        """Store a model as the next version of model ``name``.

        ``parents`` overrides the default parent (the branch head); ``kind``, ``status``
        and ``annotations`` (kept in the lineage) say how the version was made — jobs
        such as updates use them.

        ``source`` is a file, files or a folder, or an in-memory model (scikit-learn,
        PyTorch, ONNX, XGBoost, LightGBM), stored in its format. ``input_example``
        records the signature; ``data`` names the datasets used (paths or dataset
        revisions such as ``churn-train:3``) — the first, when it is a table, gives
        the reference profile (``target`` is its label column).

        Everything is checked before anything is stored; objects are written and made
        durable first, and the version row and the branch move come last, in one
        transaction, so a crash leaves no half version. A PyTorch model is stored
        straight from its tensors' memory (no file is written first): leave it
        unchanged until the commit returns, as ``save_file`` asks too.
        """
        check_name(name)
        if branch is not None:
            check_name(branch, "branch name")
        if branch is not None and name in self.registry.model_names():
            # Fail before writing any bytes; add_version checks again, atomically.
            self.registry.ref(name, branch, ("branch",))
        with (
            tempfile.TemporaryDirectory(prefix="modelkeep-") as scratch,
            _lineage_thread() as side,
        ):
            # Lineage asks git (two processes) while the model is saved.
            found = side.submit(_lineage, author, annotations)
            work = Path(scratch)
            model_obj = None
            saved = None
            buffers = None
            if _is_paths(source):
                path_list = [source] if isinstance(source, str | os.PathLike) else list(source)
                gathered = self._gather(path_list)
            else:
                saved, buffers = artifact.save_object(source, work / "model", init_args)
                gathered = {} if buffers is not None else self._gather([work / "model"])
                model_obj = source
            files = {**gathered, **(buffers or {})}
            on_disk = {rel: f for rel, f in gathered.items() if isinstance(f, Path)}
            datasets, data_paths = self._datasets(data, work / "data")
            described = artifact.describe(
                on_disk,
                saved=saved,
                model=model_obj,
                input_example=input_example,
                training_data=data_paths[0] if data_paths else None,
                target=target,
                trusted=trusted,
            )
            return self._store_version(
                name,
                files,
                message,
                branch=branch,
                params=params,
                metrics=metrics,
                datasets=datasets,
                author=author,
                record=described.artifact,
                profile=described.profile,
                progress=progress,
                parents=parents,
                kind=kind,
                status=status,
                annotations=annotations,
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
                version = self.resolve(d)
                if version.format != "dataset":
                    raise UsageError(f"{d} is a model version, not a dataset")
                refs.append(DatasetRef(version.rev, version.artifact["content_id"], version.size))
                if not paths:  # only the first dataset is read (for the profile)
                    self.checkout(version, scratch / "0", force=True)
                    paths.append(scratch / "0" / version.artifact["main"])
                continue
            if dpath.is_dir():
                raise UsageError(f"dataset {dpath} is a folder: give the data file(s) in it")
            if not dpath.is_file():
                raise PathNotFoundError(
                    f"dataset {dpath}: no such file (a stored dataset is named NAME:VERSION)"
                )
            refs.append(
                DatasetRef(str(dpath.resolve()), hash_file(str(dpath)).hex, dpath.stat().st_size)
            )
            paths.append(dpath)
        return refs, paths

    def _store_version(
        self,
        name: str,
        files: Mapping[str, Path | Buffer | _Link],
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
        params_doc = self._kv(params, "param")
        metrics_doc = self._kv(metrics, "metric", numeric=True)
        total = sum(
            src.stat().st_size if isinstance(src, Path) else src.size for src in files.values()
        )
        self.registry.check_writable()
        tick = progress(f"commit {name}", total)
        with contextlib.ExitStack() as stack:
            if found is None:
                # Lineage asks git (two processes) while the bytes are stored.
                side = stack.enter_context(_lineage_thread())
                found = side.submit(_lineage, author, annotations)
            with locks.shared(self._lock_path):
                self._follow_upgrade()
                with self.store.writer() as writer:
                    entries = {}
                    for rel, src in files.items():
                        if isinstance(src, Path):
                            manifest = self.store.store_file(src, writer, tick)
                            mode = src.stat().st_mode & _MODE_BITS
                        elif isinstance(src, _Link):
                            manifest = self.store.store_parts(src.parts, writer, tick)
                            mode = _LINK_MODE
                        else:
                            manifest = self.store.store_parts(
                                src.parts, writer, tick, segmented=src.segmented
                            )
                            mode = _SAVED_MODE
                        entries[rel] = TreeEntry(manifest.id, manifest.size, mode)
                    tree = self.store.put_tree(entries, writer)
                    if record is not None and profile is not None:
                        blob = json.dumps(profile, separators=(",", ":"), sort_keys=True)
                        record = {**record, "profile": writer.add(blob.encode()).hex}
                who, lineage_doc = found.result()
                return self.registry.add_version(
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

    # -- reading --------------------------------------------------------------------

    def models(self) -> list[ModelInfo]:
        return self.registry.models()

    def log(self, name: str, branch: str | None = None) -> list[Version]:
        """Versions of ``name`` newest first; with ``branch``, only its ancestry."""
        check_name(name)
        everything = self.registry.versions(name)
        if branch is None:
            return everything
        head = self.registry.ref(name, branch, ("branch",)).version
        parents = self.registry.parents_map(name)
        seen: set[int] = set()
        todo = [head]
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(parents.get(n, ()))
        return [v for v in everything if v.number in seen]

    def show(self, rev: str) -> Version:
        return self.resolve(rev)

    def tree(self, version: Version) -> Tree:
        try:
            return self.store.tree(ObjectId(version.tree_id))
        except StoreError as exc:
            raise type(exc)(f"{exc} — the tree of {version.rev}; run `modelkeep fsck`") from None

    def files(self, rev: str | Version) -> list[FileInfo]:
        version = self._version(rev)
        out = []
        for path, entry in self.tree(version).entries.items():
            manifest = self._manifest(version, path, entry.file)
            out.append(FileInfo(path, entry.size, entry.mode, entry.file.hex, len(manifest.chunks)))
        return out

    def _manifest(self, version: Version, path: str, oid: ObjectId) -> Any:
        try:
            return self.store.file_manifest(oid)
        except StoreError as exc:
            raise type(exc)(f"{exc} — file {path} of {version.rev}; run `modelkeep fsck`") from None

    def refs(self, name: str, kind: str | None = None) -> list[Ref]:
        return self.registry.refs(name, kind)

    def history(self, rev: str) -> list[Event]:
        """Every move of a ref (``churn@production``), or every event of a model (``churn``)."""
        r = Revision.parse(rev)
        if r.number is not None or r.back or r.ancestry:
            raise RevisionSyntaxError(f"history takes MODEL or MODEL@REF, not {rev!r}")
        if r.ref is None:
            return self.registry.events(r.model)
        events = self.registry.events(r.model, r.ref)
        if not events:
            self.registry.ref(r.model, r.ref)  # raises with what exists
        return events

    def events(self, model: str | None = None, limit: int | None = None) -> list[Event]:
        return self.registry.events(model, limit=limit)

    # -- refs -----------------------------------------------------------------------

    def branch(self, name: str, new: str, start: str | None = None) -> Ref:
        """Create branch ``new`` of model ``name`` at ``start`` (default: the default head)."""
        check_name(new, "branch name")
        version = self.resolve(start or name)
        if version.model != name:
            raise UsageError(f"--from {start} names model {version.model}, not {name}")
        _, ref = self.registry.move_ref(
            model=name,
            name=new,
            kind="branch",
            to=version.number,
            actor=lineage.author(),
            action="branch.create",
            exclusive=True,
            message=f"from {version.rev}",
        )
        return ref

    def delete_branch(self, name: str, branch: str) -> Ref:
        return self.registry.delete_ref(
            model=name, name=branch, kind="branch", actor=lineage.author()
        )

    def set_alias(self, alias: str, rev: str, message: str = "") -> Ref:
        """Point ``churn@production`` at the version ``rev`` names."""
        model, name = parse_alias(alias)
        check_name(name, "alias name")
        version = self._version_of(model, rev)
        _, ref = self.registry.move_ref(
            model=model,
            name=name,
            kind="alias",
            to=version.number,
            actor=lineage.author(),
            action="alias.set",
            message=message,
        )
        return ref

    def delete_alias(self, alias: str, message: str = "") -> Ref:
        model, name = parse_alias(alias)
        return self.registry.delete_ref(
            model=model, name=name, kind="alias", actor=lineage.author(), message=message
        )

    def tag(self, rev: str, tag: str, message: str = "") -> Ref:
        """Name a version for good: tags never move."""
        check_name(tag, "tag name")
        version = self.resolve(rev)
        _, ref = self.registry.move_ref(
            model=version.model,
            name=tag,
            kind="tag",
            to=version.number,
            actor=lineage.author(),
            action="tag",
            message=message,
        )
        return ref

    def delete_tag(self, tag: str, message: str = "") -> Ref:
        """Delete ``churn@validated`` (recorded in the event log like every ref change)."""
        model, name = parse_alias(tag)
        return self.registry.delete_ref(
            model=model, name=name, kind="tag", actor=lineage.author(), message=message
        )

    def default_branch(self, name: str) -> str:
        return self.registry.default_branch(name)

    def _version_of(self, model: str, rev: str) -> Version:
        """``rev`` may be a bare number ("3") meaning that version of ``model``."""
        version = self.resolve(f"{model}:{rev}" if rev.isdigit() else rev)
        if version.model != model:
            raise UsageError(f"{rev} is a version of {version.model}, not of {model}")
        return version

    def promote(self, rev: str, alias: str, message: str = "") -> tuple[int | None, Ref]:
        """Move alias ``alias`` of the model to the version ``rev`` names."""
        check_name(alias, "alias name")
        version = self.resolve(rev)
        current = self._forward(version.model, alias, version.number)
        return self.registry.move_ref(
            model=version.model,
            name=alias,
            kind="alias",
            to=version.number,
            actor=lineage.author(),
            action="promote",
            message=message,
            expected=current,
        )

    def _forward(self, model: str, alias: str, number: int) -> int | None:
        """Where ``model@alias`` points now (None: nowhere yet), checked to be before
        ``number``: promotion moves an alias forward only."""
        current = next(
            (r.version for r in self.registry.refs(model, "alias") if r.name == alias), None
        )
        if current is not None and number <= current:
            raise UsageError(
                f"{model}@{alias} is at {model}:{current}; promote moves it forward, and "
                f"{model}:{number} is not newer — to go back use "
                f"`modelkeep rollback {model}@{alias} --to {number}`"
            )
        return current

    def rollback(
        self, alias: str, to: str | None = None, message: str = ""
    ) -> tuple[int | None, Ref]:
        """Move ``churn@production`` back: to ``to``, or to where it pointed before its
        last move. Rolling back a rollback undoes it."""
        model, name = parse_alias(alias)
        current = self.registry.ref(model, name, ("alias",))
        if to is None:
            moves = self.registry.ref_moves(model, name)
            if not moves or moves[0].before is None:
                raise VersionNotFoundError(
                    f"{model}@{name} has no earlier target to roll back to (it was only set, "
                    f"to {model}:{current.version}); name one with --to VERSION"
                )
            target = moves[0].before
        else:
            target = self._version_of(model, to).number
            if target > current.version:
                raise UsageError(
                    f"{model}@{name} is at {model}:{current.version}; rollback moves it back, "
                    f"and {model}:{target} is newer — use `modelkeep promote {model}:{target} "
                    f"{name}`"
                )
        if target == current.version:
            raise UsageError(f"{model}@{name} already points at {model}:{target}")
        return self.registry.move_ref(
            model=model,
            name=name,
            kind="alias",
            to=target,
            actor=lineage.author(),
            action="rollback",
            message=message,
            expected=current.version,
            create=False,
        )

    # -- models and datasets ----------------------------------------------------------

    def _cache_dir(self, version: Version) -> Path:
        if self._control is not None and not self.registry.read_only:
            base = self._control / "cache"
        elif self._control is not None:
            # A user who may only read the repository loads through a cache of their own.
            key = hashlib.sha256(str(self._control.resolve()).encode()).hexdigest()[:16]
            base = Path(tempfile.gettempdir()) / f"modelkeep-cache-{os.getuid()}" / key
            base.mkdir(mode=0o700, parents=True, exist_ok=True)
        else:
            base = Path(tempfile.gettempdir()) / f"modelkeep-memory-{os.getpid()}-{id(self)}"
        return base / version.model / str(version.number)

    def load(self, rev: str | Version, *, trusted: Any = None) -> Any:
        """The model a version holds, ready to predict.

        Plain files come back as a path (the file, or the folder of several); a
        dataset as a DataFrame. The files are checked out (and so verified) into
        ``.modelkeep/cache`` first. ``trusted``: types to trust beyond skops'
        defaults, or True (needed for pickles).
        """
        version = self._version(rev)
        record = version.artifact
        if record and record["format"] != "dataset":
            flavor = formats.flavor(record["format"])
            formats.warn_versions(record.get("libraries", {}), version.rev)
            if isinstance(flavor, LoadsInPlace) and self.store.trust is not None:
                model = self._load_in_place(version, flavor, record["main"], trusted)
                if model is not None:
                    return model
            return flavor.load(self._materialize(version) / record["main"], record, trusted)
        folder = self._materialize(version)
        if not record:
            entries = self.tree(version).entries
            return folder / next(iter(entries)) if len(entries) == 1 else folder
        return tabular.read(folder / record["main"])

    def _load_in_place(self, version: Version, flavor: LoadsInPlace, rel: str, trusted: Any) -> Any:
        """The model read from the store where its bytes lie (None: load it from a file).

        Nothing is checked out: large chunks are mapped, verified once per machine (the
        store's trust ledger), small ones read and verified."""
        entry = self.tree(version).entries.get(rel)
        if entry is None:
            return None  # a damaged record: the file route says what is missing
        file = StoredFile(self.store, self._manifest(version, rel, entry.file))
        try:
            return flavor.load_in_place(file, version.artifact, trusted)
        except StoreError as exc:
            raise type(exc)(f"{exc} — file {rel} of {version.rev}; run `modelkeep fsck`") from None

    def _materialize(self, version: Version) -> Path:
        """The version's files in the load cache, verified.

        The first load checks the files out (every chunk verified against its hash) and
        records each file's inode, size and change times; later loads trust files whose
        stat still matches — as git's index does — instead of hashing them again. Any
        write to a cached file changes its ctime, and then it is checked out afresh.
        """
        folder = self._cache_dir(version)
        stamp = folder.parent / f"{version.number}.verified.json"
        entries = self.tree(version).entries
        try:
            recorded = json.loads(stamp.read_text())
            fresh = recorded.get("tree") == version.tree_id and all(
                _stat_key(folder / rel) == recorded["files"].get(rel) for rel in entries
            )
        except (OSError, ValueError, AttributeError):
            fresh = False
        if fresh:
            return folder
        stamp.unlink(missing_ok=True)
        self.checkout(version, folder, force=True)
        doc = {"tree": version.tree_id, "files": {rel: _stat_key(folder / rel) for rel in entries}}
        tmp = stamp.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, stamp)
        return folder

    def profile(self, rev: str | Version) -> Profile | None:
        """The reference profile stored with a version (None if it has none)."""
        version = self._version(rev)
        oid = version.artifact.get("profile")
        if oid is None:
            return None
        try:
            return Profile.from_json(json.loads(bytes(self.store.get(ObjectId(oid)))))
        except StoreError as exc:
            raise type(exc)(f"{exc} — the profile of {version.rev}; run `modelkeep fsck`") from None

    def data_add(
        self,
        name: str,
        path: str | os.PathLike[str],
        message: str = "",
        *,
        author: str | None = None,
        progress: ProgressStart = _no_progress,
    ) -> Version:
        """Store a dataset file (CSV, Parquet) as the next version of dataset ``name``."""
        check_name(name, "dataset name")
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
        return self._store_version(
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

    def update(self, rev: str, **options: Any) -> Any:
        """Train a candidate from ``rev`` and gate it against it (see
        ``modelkeep.update.run_update`` for the options: data, target, strategy, gate,
        holdout, train, promote, trainer, step, metrics, params, message). Returns an
        ``UpdateResult``. The update job uses this facade's public API only; this
        method is its entry point."""
        from modelkeep.update import run_update

        return run_update(self, rev, **options)

    # -- deployments ------------------------------------------------------------------

    def deploy(
        self,
        name: str,
        *,
        to: str = "production",
        strategy: str = "blue-green",
        candidate: str | None = None,
        percent: float = 10.0,
        steps: Sequence[float] = (),
        interval: float | str | None = None,
        message: str = "",
    ) -> Deployment:
        """Start a rollout of ``candidate`` to ``name@to`` and record it.

        blue-green: the alias moves at once (servers load the new version beside the
        old one and switch; the old stays loaded for an instant rollback). canary:
        ``percent`` of requests (or the current of ``steps``, advancing every
        ``interval`` seconds) go to the candidate until promoted or aborted. shadow: the
        candidate gets a copy of the traffic; its answers are compared, not returned.
        """
        from modelkeep.deploy import STRATEGIES

        if strategy not in STRATEGIES:
            raise UsageError(
                f"unknown strategy {quantities.shown(strategy)}: use {', '.join(STRATEGIES)}"
            )
        if candidate is None:
            raise UsageError(f"a {strategy} deployment needs --candidate REV (e.g. {name}:7)")
        version = self._version_of(name, candidate)
        current = self.registry.ref(name, to, ("alias",)).version
        if version.number == current:
            raise UsageError(f"{name}@{to} already serves {version.rev}")
        steps = [quantities.number(s, "steps", low=0, high=100, low_open=True) for s in steps]
        if steps != sorted(steps):
            raise UsageError("--steps are increasing percentages in (0, 100], e.g. 10,50,100")
        if steps and not interval:
            raise UsageError("--steps need --interval (how long each step lasts)")
        seconds = None if interval is None else quantities.duration(interval, "interval", low=0.01)
        if strategy == "canary" and not steps:
            percent = quantities.number(percent, "percent", low=0, high=100, low_open=True)
        who = lineage.author()
        if strategy == "blue-green" and version.number < current:
            raise UsageError(
                f"{name}@{to} is at {name}:{current}; a deployment rolls forward, and "
                f"{version.rev} is older — to go back use `modelkeep rollback {name}@{to} "
                f"--to {version.number}`"
            )
        if strategy == "blue-green":
            deployment = self.registry.start_deployment(
                model=name,
                alias=to,
                strategy=strategy,
                primary=current,
                candidate=version.number,
                percent=100.0,
                steps=(),
                interval_seconds=None,
                actor=who,
                message=message,
                status="completed",
            )
            self.promote(version.rev, to, message or f"blue-green deployment #{deployment.id}")
            return deployment
        return self.registry.start_deployment(
            model=name,
            alias=to,
            strategy=strategy,
            primary=current,
            candidate=version.number,
            percent=steps[0] if steps else percent,
            steps=steps,
            interval_seconds=seconds,
            actor=who,
            message=message,
        )

    def end_deployment(
        self, name: str, *, to: str = "production", promote: bool, message: str = ""
    ) -> Deployment:
        """Finish the active rollout of ``name@to``: promote its candidate, or abort."""
        active = self.registry.deployments(name, to, active=True)
        if not active:
            raise NotFoundError(
                f"{name}@{to} has no active deployment (see `modelkeep deployments`)"
            )
        dep = active[0]
        moved = None
        if promote:
            current = self._forward(name, to, dep.candidate)
            moved = (current, message or f"deployment #{dep.id} promoted")
        return self.registry.end_deployment(
            dep.id,
            status="promoted" if promote else "aborted",
            actor=lineage.author(),
            message=message,
            promote=moved,
        )

    def deployments(self, name: str | None = None) -> list[Deployment]:
        if name is not None:
            check_name(name)
        return self.registry.deployments(name)

    def record_report(
        self,
        version: Version,
        *,
        kind: str,
        source: str,
        drifted: bool,
        body: dict[str, Any],
        replaces: Sequence[int] = (),
    ) -> int:
        """Store a monitoring report with the version it judges (``replaces``: the
        ids of the window parts it merges, removed in the same transaction)."""
        return self.registry.add_report(
            version.model,
            version.number,
            kind=kind,
            source=source,
            drifted=drifted,
            body=body,
            replaces=replaces,
        )

    def reports(
        self, rev: str, limit: int | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """Monitoring reports of a version (``kind``: only "batch", "window"…), newest
        first."""
        version = self.resolve(rev)
        return self.registry.reports(version.model, version.number, limit, kind)

    def model_reports(
        self,
        name: str,
        limit: int | None = None,
        since: datetime | None = None,
        *,
        profiles: bool = False,
    ) -> list[dict[str, Any]]:
        """Monitoring reports of every version of model ``name``, newest first, each with
        its version ``number``; without their stored profiles unless ``profiles``."""
        check_name(name)
        return self.registry.model_reports(name, limit=limit, since=since, profiles=profiles)

    def report_html(self, rev: str, limit: int | None = 1000) -> str:
        """A self-contained HTML page on the monitoring of ``rev``'s model: the latest
        verdict of its version, distributions against the reference, metrics and drift
        over time for every version, alias moves marked (needs the ``report`` extra)."""
        from modelkeep.monitor.htmlreport import render

        return render(self, rev, limit=limit)

    def monitor(self, rev: str, data: str | os.PathLike[str], **options: Any) -> dict[str, Any]:
        """Check a batch against the version's reference profile and store the report
        (entry point of the monitoring job; see ``modelkeep.monitor.periodic``)."""
        from modelkeep.monitor.periodic import run_check

        return run_check(self, rev, Path(data), **options)

    # -- scheduled checks -------------------------------------------------------------

    def schedule(
        self,
        rev: str,
        every: str | float | timedelta,
        data: str | os.PathLike[str],
        target: str | None = None,
        message: str = "",
    ) -> Schedule:
        """Check ``rev`` every ``every`` (``1h``, ``1d``, seconds) on ``data``, a path
        template with ``{date}``, ``{time}``, ``{datetime}``, ``{hour}`` or ``{slot}``
        filled from each slot's start (UTC). The revision is resolved at each run, so
        ``churn@production`` follows the alias. Runs happen in ``run_due`` (the daemon)."""
        from modelkeep.monitor.schedule import validate
        from modelkeep.registry.records import period_text

        revision, seconds, template = validate(self, rev, every, data)
        if target is not None and not target.strip():
            raise UsageError("target: give the label column's name, or no target")
        return self.registry.add_schedule(
            model=revision.model,
            revision=str(revision),
            ref_name=revision.ref,
            every=seconds,
            data=template,
            target=target,
            actor=lineage.author(),
            message=message or f"check {revision} every {period_text(seconds)} on {template}",
        )

    def schedules(
        self, name: str | None = None, *, include_removed: bool = False
    ) -> list[Schedule]:
        """Active schedules (of model ``name``), by id; ``include_removed`` adds the
        unscheduled ones."""
        if name is not None:
            check_name(name)
        return self.registry.schedules(name, active=not include_removed)

    def unschedule(self, schedule_id: int, message: str = "") -> Schedule:
        """Stop a schedule; it stays listed, with its last run, in
        ``schedules(include_removed=True)``."""
        found = self.registry.schedule(schedule_id)
        return self.registry.end_schedule(
            schedule_id,
            actor=lineage.author(),
            ref_name=Revision.parse(found.revision).ref,
            message=message or f"stop checking {found.revision} on {found.data}",
        )

    def run_due(self, now: datetime | None = None) -> list[ScheduledRun]:
        """Run every scheduled check that is due at ``now`` (default: the clock; naive
        means UTC), at most once per slot however many processes call this at once."""
        from modelkeep.monitor.schedule import run_due

        return run_due(self, now)

    def run_daemon(
        self,
        *,
        poll: float = 30.0,
        once: bool = False,
        stop: threading.Event | None = None,
        on_run: Callable[[ScheduledRun], None] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> int:
        """Run due checks as their slots begin until ``stop`` is set (or ``once``);
        returns how many runs failed. See ``modelkeep.monitor.schedule``."""
        from modelkeep.monitor.schedule import daemon

        if not poll > 0:
            raise UsageError(f"poll: {poll!r} must be a positive number of seconds")
        return daemon(self, poll=poll, once=once, stop=stop, on_run=on_run, on_error=on_error)

    def claim_schedule_slot(self, schedule_id: int, *, expected: int | None, slot: int) -> bool:
        """Claim a slot (Unix seconds) of a schedule whose last slot was ``expected``;
        False when another process claimed a slot first."""
        return self.registry.claim_slot(schedule_id, expected=expected, slot=slot)

    def record_schedule_outcome(
        self,
        schedule_id: int,
        *,
        slot: int,
        status: str,
        report: int | None = None,
        error: str | None = None,
    ) -> None:
        """What came of a claimed slot: ``ok``/``drift`` with its report, or ``failed``."""
        self.registry.finish_slot(schedule_id, slot=slot, status=status, report=report, error=error)

    def record_event(
        self,
        name: str,
        action: str,
        message: str,
        *,
        ref: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Append a non-moving event (``monitor.alert``, ``policy.set``…) to the log."""
        self.registry.append_event(
            actor=lineage.author(),
            action=action,
            model=name,
            message=message,
            ref_name=ref,
            details=details,
        )

    def set_policy(
        self, name: str, text: str, message: str = "", *, fmt: str | None = None
    ) -> list[Any]:
        """Attach a monitoring policy to model ``name``: TOML or YAML text (``fmt``
        "toml" or "yaml"; None tries both), validated before anything is stored."""
        from modelkeep.monitor.policy import measurable, parse

        check_name(name)
        self.registry.check_writable()
        self.registry.default_branch(name)  # the model must exist
        tasks = {v.artifact.get("task") for v in self.registry.versions(name)}
        rules = parse(text, f"policy of {name}", fmt, metrics=measurable(tasks))
        kind = fmt or ("toml" if _is_toml(text) else "yaml")
        if self._control is None:
            self._policies[name] = (text, kind)
        else:
            folder = self._control / "policies"
            folder.mkdir(exist_ok=True)
            tmp = folder / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
            tmp.write_text(text)
            os.replace(tmp, folder / f"{name}.{kind}")
            # A policy changed format: the old file must not shadow the new one.
            (folder / f"{name}.{'yaml' if kind == 'toml' else 'toml'}").unlink(missing_ok=True)
        self.record_event(
            name,
            "policy.set",
            message or f"{len(rules)} rule(s)",
            details={"rules": [r.name for r in rules], "format": kind},
        )
        return rules

    def policy(self, name: str) -> list[Any] | None:
        """The rules attached to ``name`` (None if it has no policy)."""
        from modelkeep.monitor.policy import parse

        found: tuple[str, str] | None = None
        if self._control is None:
            found = self._policies.get(name)
        else:
            for kind in ("toml", "yaml"):
                path = self._control / "policies" / f"{name}.{kind}"
                if path.is_file():
                    found = (path.read_text(), kind)
                    break
        return None if found is None else parse(found[0], f"policy of {name}", found[1])

    def record_deployment_stats(self, deployment: int, stats: dict[str, Any]) -> None:
        """Figures a server measured for a rollout (shadow agreement, latencies)."""
        self.registry.record_deployment_stats(deployment, stats)

    def routing(self, name: str, alias: str) -> RoutingTable:
        """What a server of ``name@alias`` should serve right now. A canary whose steps
        have reached 100 % is promoted here, by whichever server notices first."""
        from modelkeep.deploy import RoutingTable, canary_percent

        current = self.registry.ref(name, alias, ("alias",)).version
        moves = self.registry.ref_moves(name, alias)
        previous = moves[0].before if moves else None
        active = self.registry.deployments(name, alias, active=True)
        if not active:
            return RoutingTable(name, alias, current, previous=previous)
        dep = active[0]
        if dep.strategy == "shadow":
            return RoutingTable(
                name, alias, current, dep.candidate, "shadow", 0.0, dep.id, previous
            )
        percent = canary_percent(dep, datetime.now(UTC))
        if dep.steps and percent >= 100.0:
            # Another server may have finished it first.
            with contextlib.suppress(ConflictError, NotFoundError):
                if dep.candidate > current:
                    self.end_deployment(
                        name, to=alias, promote=True, message=f"canary #{dep.id} reached 100 %"
                    )
                else:  # promoted past by hand meanwhile: nothing left to roll out
                    self.end_deployment(
                        name,
                        to=alias,
                        promote=False,
                        message=f"canary #{dep.id} superseded: {name}@{alias} is at "
                        f"{name}:{current}",
                    )
            return self.routing(name, alias)
        return RoutingTable(
            name, alias, current, dep.candidate, "canary", percent, dep.id, previous
        )

    # -- working folders ------------------------------------------------------------

    @staticmethod
    def _target(dest_real: Path, rel: str) -> Path:
        """The file ``rel`` inside ``dest``, refusing a path that could escape it."""
        pure = PurePosixPath(rel)
        if (
            "\x00" in rel
            or pure.is_absolute()
            or not rel
            or any(p in ("..", "") for p in pure.parts)
        ):
            raise UnsafePathError(f"refusing path {rel!r}: it would escape the destination")
        # A symlink or file on the way is never written or read through: checkout and
        # status treat it as something in the way (_non_folder_on_the_way).
        return dest_real.joinpath(*pure.parts)

    def _matches(self, target: Path, entry: TreeEntry, link: _Link | None) -> bool:
        if link is not None:
            return target.is_symlink() and os.readlink(target) == link.target
        if target.is_symlink() or not target.is_file():
            return False
        if target.stat().st_size != entry.size:
            return False
        return self.store.manifest_of_file(target) == entry.file

    def _links(self, version: Version, tree: Tree) -> dict[str, _Link]:
        """The symlinks a tree holds, refused if one leads outside the folder."""
        links = {
            rel: _Link(
                os.fsdecode(
                    b"".join(
                        bytes(c)
                        for c in self.store.iter_chunks(self._manifest(version, rel, e.file))
                    )
                )
            )
            for rel, e in tree.entries.items()
            if stat.S_ISLNK(e.mode)
        }
        escaping = _escaping_link({rel: link.target for rel, link in links.items()})
        if escaping is not None:
            raise UnsafePathError(
                f"refusing {escaping!r} of {version.rev}: a symlink to "
                f"{links[escaping].target!r}, which leads outside the folder it is checked "
                "out into"
            )
        return links

    def checkout(
        self,
        rev: str | Version,
        dest: str | os.PathLike[str] | None = None,
        *,
        force: bool = False,
        progress: ProgressStart = _no_progress,
    ) -> CheckoutResult:
        """Write a version's files into ``dest`` (default: ./MODEL), byte-identical.

        Plans first, and finds every conflict before writing anything: files that
        differ, a file or symlink where the version has a folder, a folder where it has
        a file. Any of them stops the checkout (nothing is written) unless ``force``,
        which replaces what blocks. Each file is written to a temp file and renamed.
        """
        version = self._version(rev)
        tree = self.tree(version)
        dest_path = Path(dest) if dest is not None else Path.cwd() / version.model
        if dest_path.exists() and not dest_path.is_dir():
            raise UsageError(f"{dest_path} exists and is not a folder")
        dest_real = dest_path.resolve()
        plan: list[tuple[str, Path, TreeEntry, _Link | None]] = []
        unchanged: list[str] = []
        conflicts: list[str] = []
        blockers: dict[Path, str] = {}  # in the way of the version: path → what it is
        links = self._links(version, tree)
        for rel, entry in tree.entries.items():
            target = self._target(dest_real, rel)
            link = links.get(rel)
            blocker = _non_folder_on_the_way(dest_real, target)
            if blocker is not None:
                if blocker not in blockers:
                    blockers[blocker] = "symlink" if blocker.is_symlink() else "file"
                    conflicts.append(
                        f"{blocker.relative_to(dest_real).as_posix()} (a {blockers[blocker]} "
                        f"where {version.rev} has a folder)"
                    )
            elif target.is_symlink() or target.exists():
                if self._matches(target, entry, link):
                    unchanged.append(rel)
                    continue
                if target.is_dir() and not target.is_symlink():
                    blockers[target] = "folder"
                    conflicts.append(f"{rel} (a folder where {version.rev} has a file)")
                else:
                    conflicts.append(rel)
            plan.append((rel, target, entry, link))
        if conflicts and not force:
            listed = "; ".join(conflicts[:10]) + (
                f"; and {len(conflicts) - 10} more" if len(conflicts) > 10 else ""
            )
            raise WorkingTreeConflictError(
                f"checkout would overwrite {len(conflicts)} path(s) that differ from "
                f"{version.rev}: {listed}; commit or move them first, or use --force to "
                "replace them",
                conflicts,
            )
        dest_real.mkdir(parents=True, exist_ok=True)
        for path, kind in blockers.items():
            # Forced: what blocks the version goes (a folder only after every check).
            if kind == "folder":
                shutil.rmtree(path)
            else:
                path.unlink()
        for rel in unchanged:
            entry = tree.entries[rel]
            target = dest_real.joinpath(*PurePosixPath(rel).parts)
            if stat.S_ISLNK(entry.mode):
                continue  # a link has no mode of its own
            if stat.S_IMODE(target.stat().st_mode) != entry.mode & _MODE_BITS:
                target.chmod(entry.mode & _MODE_BITS)
        total = sum(e.size for _, _, e, _ in plan)
        tick = progress(f"checkout {version.rev}", total)
        written: list[str] = []
        failures: list[str] = []
        for rel, target, entry, link in plan:
            try:
                if link is not None:
                    _replace_with_link(target, link)
                    if tick is not None:
                        tick(entry.size)
                else:
                    self._write_file(version, rel, target, entry, tick)
                written.append(rel)
            except StoreError:
                raise
            except OSError as exc:
                failures.append(f"{rel}: {exc.strerror or exc}")
        if failures:
            raise ModelkeepError(
                f"checkout of {version.rev} could not write {len(failures)} file(s): "
                + "; ".join(failures)
            )
        return CheckoutResult(version.rev, str(dest_real), written, unchanged, total)

    def _write_file(
        self, version: Version, rel: str, target: Path, entry: TreeEntry, tick: Progress | None
    ) -> None:
        manifest = self._manifest(version, rel, entry.file)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.mk-tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                self.store.write_file(manifest, fd, tick)
            except StoreError as exc:
                raise type(exc)(
                    f"{exc} — file {rel} of {version.rev}; nothing wrong was written; "
                    "run `modelkeep fsck`"
                ) from None
            os.fchmod(fd, entry.mode & _MODE_BITS)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.replace(tmp, target)

    def status(self, rev: str, path: str | os.PathLike[str] | None = None) -> StatusResult:
        """Compare folder ``path`` (default ./MODEL) with the version ``rev`` names."""
        version = self.resolve(rev)
        tree = self.tree(version)
        folder = Path(path) if path is not None else Path.cwd() / version.model
        if not folder.is_dir():
            raise PathNotFoundError(f"{folder}: no such folder")
        real = folder.resolve()
        modified, missing = [], []
        unchanged = 0
        links = self._links(version, tree)
        for rel, entry in tree.entries.items():
            target = self._target(real, rel)
            link = links.get(rel)
            if _non_folder_on_the_way(real, target) is not None:
                modified.append(rel)
            elif not target.exists() and not target.is_symlink():
                missing.append(rel)
            elif self._matches(target, entry, link) and (
                link is not None or stat.S_IMODE(target.stat().st_mode) == entry.mode & _MODE_BITS
            ):
                unchanged += 1
            else:
                modified.append(rel)
        untracked = []
        for dirpath, dirs, names in os.walk(real):
            dirs[:] = sorted(d for d in dirs if d != REPO_DIR)
            # A link to a folder is listed among the folders, and not entered.
            linked = [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]
            for name in sorted([*names, *linked]):
                rel = Path(dirpath, name).relative_to(real).as_posix()
                if rel not in tree.entries and not name.endswith(".mk-tmp"):
                    untracked.append(rel)
        return StatusResult(version.rev, str(real), modified, missing, untracked, unchanged)

    # -- comparing ------------------------------------------------------------------

    def diff(
        self,
        rev_a: str,
        rev_b: str,
        *,
        data: str | os.PathLike[str] | None = None,
        target: str | None = None,
        trusted: Any = None,
    ) -> DiffResult:
        """Files added, removed and changed (with the bytes that differ as stored
        chunks), params and metrics before → after, signature changes, tensors that
        changed (safetensors), what changed in a scikit-learn model, and — with
        ``data`` — both versions' predictions on the same rows."""
        va, vb = self.resolve(rev_a), self.resolve(rev_b)
        ta, tb = self.tree(va), self.tree(vb)
        added: list[FileChange] = []
        removed: list[FileChange] = []
        changed: list[FileChange] = []
        tensors: list[TensorDiff] = []
        for rel in sorted(set(ta.entries) | set(tb.entries)):
            ea, eb = ta.entries.get(rel), tb.entries.get(rel)
            if ea is not None and eb is not None and ea.file == eb.file and ea.mode == eb.mode:
                continue
            ma = self._manifest(va, rel, ea.file) if ea else None
            mb = self._manifest(vb, rel, eb.file) if eb else None
            chunks_a = {c.id for c in ma.chunks} if ma else set()
            chunks_b = mb.chunks if mb else ()
            new = [c for c in chunks_b if c.id not in chunks_a]
            change = FileChange(
                path=rel,
                size_before=ea.size if ea else None,
                size_after=eb.size if eb else None,
                bytes_changed=sum(c.size for c in new),
                chunks_changed=len(new),
                chunks_total=len(chunks_b),
                mode_before=ea.mode if ea else None,
                mode_after=eb.mode if eb else None,
            )
            (added if ea is None else removed if eb is None else changed).append(change)
            if ma is not None and mb is not None and ma.id != mb.id:
                td = self._tensor_diff(rel, ma, mb)
                if td is not None:
                    tensors.append(td)
        model: dict[str, Any] = {}
        predictions = None
        if va.format == vb.format == "sklearn" or data is not None:
            a, b = self.load(va, trusted=trusted), self.load(vb, trusted=trusted)
            if va.format == vb.format == "sklearn":
                model = modeldiff.sklearn(a, b)
            if data is not None:
                frame = tabular.read(Path(data))
                features = artifact.features_of(frame, vb.artifact, target)
                labels = frame[target] if target is not None else None
                task = vb.artifact.get("task") or va.artifact.get("task")
                try:
                    predictions = modeldiff.predictions(a, b, features, labels, task)
                except (ValueError, TypeError, KeyError) as exc:
                    raise SignatureError(
                        f"the rows of {Path(data).name} do not fit the models: "
                        f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]} "
                        "(name the label column with --target)"
                    ) from None
        return DiffResult(
            va.rev,
            vb.rev,
            added,
            removed,
            changed,
            params=_delta(va.params, vb.params),
            metrics=_delta(va.metrics, vb.metrics),
            signature=signature.changes(va.artifact.get("signature"), vb.artifact.get("signature")),
            tensors=tensors,
            model=model,
            predictions=predictions,
        )

    def _tensor_diff(self, rel: str, ma: FileManifest, mb: FileManifest) -> TensorDiff | None:
        """Tensor-level diff when both files are safetensors (only changed tensors read)."""
        if not ma.chunks or not mb.chunks:
            return None
        head_a, head_b = self.store.get(ma.chunks[0].id), self.store.get(mb.chunks[0].id)
        if not (_looks_like_header(head_a) and _looks_like_header(head_b)):
            return None

        def same(a: TensorInfo, b: TensorInfo) -> bool:
            ca = self.store.chunks_of_range(ma, a.begin, a.end)
            cb = self.store.chunks_of_range(mb, b.begin, b.end)
            return bool(ca) and [c.id for c in ca] == [c.id for c in cb]

        try:
            return tensordiff.compare(
                rel,
                bytes(head_a),
                bytes(head_b),
                lambda lo, hi: self.store.read_range(ma, lo, hi),
                lambda lo, hi: self.store.read_range(mb, lo, hi),
                same,
            )
        except (ValueError, KeyError, struct.error):
            return None

    # -- maintenance ----------------------------------------------------------------

    def fsck(self, progress: ProgressStart = _no_progress, *, repair: bool = False) -> FsckReport:
        """Verify every stored object against its hash and every version against its tree.

        Holds the store lock (shared; exclusive with ``repair``) so gc cannot move
        objects underneath, and reads the versions before listing objects, so a
        commit landing meanwhile is either fully seen or not at all. ``repair`` moves
        damaged objects to quarantine/: committing the original files again then
        stores them afresh.
        """
        if repair:
            self.registry.check_writable()
        # The registry first: a damaged one cannot say which objects are in use.
        damage = self.registry.integrity_problems()
        salvaged = None
        if damage and not repair:
            return FsckReport(0, 0, damage, 0)
        if damage:
            salvaged = self._salvage_open_registry()
        lock = locks.exclusive if repair else locks.shared
        with lock(self._lock_path):
            report, bad = self._fsck(progress)
            if salvaged is not None:
                report = dataclasses.replace(
                    report,
                    problems=[*damage, *salvaged.problems(), *report.problems],
                    salvaged=salvaged.to_dict(),
                )
            if bad and self.store.trust is not None:
                # Damage that left a file's stat alone (the media, a write through a
                # shared map) is what fsck exists to find: loads must hash it again.
                self.store.trust.prune(lambda oid: oid not in bad)
            if repair and bad:
                self.store.quarantine(bad)
        return report

    def _fsck(self, progress: ProgressStart) -> tuple[FsckReport, set[ObjectId]]:
        rows = self.registry.tree_ids()
        artifact_rows = self.registry.artifact_ids()
        ids = set(self.store.iter_ids())
        tick = progress("verify objects", len(ids))
        bad: dict[ObjectId, str] = {}
        for oid in sorted(ids):
            try:
                self.store.get(oid)
            except StoreError as exc:
                bad[oid] = str(exc)
            if tick:
                tick(1)
        problems: list[str] = list(self.store.damaged_packs.values())
        seen_bad: set[ObjectId] = set()
        live: set[ObjectId] = set()
        for model, number, tree_hex in rows:
            rev = f"{model}:{number}"
            tid = ObjectId(tree_hex)
            live.add(tid)
            try:
                tree = self.store.tree(tid)
            except StoreError as exc:
                problems.append(f"{rev}: its tree: {exc}")
                seen_bad.add(tid)
                continue
            for rel, entry in tree.entries.items():
                live.add(entry.file)
                try:
                    manifest = self.store.file_manifest(entry.file)
                except StoreError as exc:
                    problems.append(f"{rev}: file {rel}: {exc}")
                    seen_bad.add(entry.file)
                    continue
                if sum(c.size for c in manifest.chunks) != entry.size:
                    problems.append(f"{rev}: file {rel}: chunk sizes do not add up to its size")
                for chunk in manifest.chunks:
                    live.add(chunk.id)
                    if chunk.id in bad:
                        problems.append(f"{rev}: file {rel}: {bad[chunk.id]}")
                        seen_bad.add(chunk.id)
                    elif chunk.id not in ids:
                        problems.append(
                            f"{rev}: file {rel}: object {chunk.id.short} is missing from the store"
                        )
        for model, number, hex_id in artifact_rows:
            oid = ObjectId(hex_id)
            live.add(oid)
            if oid in bad:
                problems.append(f"{model}:{number}: its profile: {bad[oid]}")
                seen_bad.add(oid)
            elif oid not in ids:
                problems.append(f"{model}:{number}: its profile {oid.short} is missing")
        problems.extend(
            f"unreferenced {msg}"
            for oid, msg in sorted(bad.items())
            if oid not in seen_bad and oid not in live
        )
        return FsckReport(len(ids), len(rows), problems, len(ids - live)), set(bad)

    def upgrade(self, progress: ProgressStart = _no_progress) -> UpgradeReport:
        """Bring the repository to this release's format (``FORMAT``).

        Format 2 stores large raw objects page-aligned, so that state dicts load in
        place: the config says format 2 first (releases knowing only format 1 then
        refuse the repository instead of misreading it), then the objects of the old
        layout are rewritten. Run again after an interruption, it finishes the job.

        Stop every process of an older release first: one that opened the repository
        before the upgrade would take the rewritten objects for damaged ones (and
        `fsck --repair` would move them aside). Processes of this release follow the
        upgrade at their next commit."""
        self.registry.check_writable()
        if self._control is None:
            raise UsageError("an in-memory repository has no format to upgrade")
        with locks.exclusive(self._lock_path):
            config = self._read_config(self._control)
            before = int(config["format"])
            try:
                old = self.store.unaligned()
            except StoreError as exc:
                raise type(exc)(
                    f"{exc}; nothing was upgraded — run `modelkeep fsck --repair` first"
                ) from None
            if before < FORMAT:
                # Durable before any object changes: a release that cannot read the new
                # layout must find the new format first.
                _write_config(self._control, {**config, "format": FORMAT})
            tick = progress("upgrade", sum(n for _, n in old))
            size = self.store.align_pages((oid for oid, _ in old), tick)
        return UpgradeReport(before, FORMAT, len(old), size)

    def gc(self) -> GcReport:
        """Delete objects no version references. Safe beside running commits: it holds
        the store lock exclusively, so no commit is between writing and publishing."""
        self.registry.check_writable()
        with locks.exclusive(self._lock_path):
            trees = [ObjectId(tid) for _, _, tid in self.registry.tree_ids()]
            try:
                live = self.store.referenced_by(trees)
                live.update(ObjectId(oid) for _, _, oid in self.registry.artifact_ids())
            except StoreError as exc:
                raise type(exc)(
                    f"{exc}; gc cannot tell what is in use and removed nothing — "
                    "run `modelkeep fsck`"
                ) from None
            removed, freed = self.store.collect_garbage(live)
            temp = 0
            if isinstance(self.store.backend, LocalBackend):
                temp = self.store.backend.clean_temp(older_than=0)
            if self._control is not None:
                # Loaded models are checked out here; they are re-made on demand.
                shutil.rmtree(self._control / "cache", ignore_errors=True)
        return GcReport(removed, freed, temp)


# Only permission bits travel with a version: never setuid, setgid or sticky.
_MODE_BITS = 0o777
# The mode of a model file saved from memory (as a file saved under umask 022 has).
_SAVED_MODE = 0o644
# A tree entry that is a symlink: git's mode for one; its content is the target.
_LINK_MODE = stat.S_IFLNK | 0o777


@dataclass(frozen=True, slots=True)
class _Link:
    """A symlink inside a committed folder, kept as its target text."""

    target: str

    @property
    def parts(self) -> tuple[memoryview, ...]:
        return (memoryview(os.fsencode(self.target)),)

    @property
    def size(self) -> int:
        return len(os.fsencode(self.target))


def _page_aligned(config: dict[str, Any]) -> bool:
    """Whether a repository of this config stores large raw objects page-aligned."""
    return int(config["format"]) >= 2


def _write_config(control: Path, config: dict[str, Any]) -> None:
    """Replace ``config.json`` atomically and durably (temp file, fsync, rename, fsync of
    the folder)."""
    path = control / "config.json"
    tmp = path.with_name(f"config.json.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(config, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(control, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sqlite_url(control: Path) -> str:
    # URL.create quotes the path: a folder named "a?b" or "50%" stays one path.
    from sqlalchemy import URL

    return URL.create("sqlite", database=str(control / "registry.db")).render_as_string()


def _escaping_link(links: Mapping[str, str]) -> str | None:
    """The first link (relative path in a tree) whose target, followed through the
    tree's own links as the kernel would follow them, leaves the tree; None if none
    does. Reading the text alone is not enough: ``d/L -> ..`` stays inside, and so
    does ``M -> d/L/..`` read as text, but M leads to the tree's parent."""
    for rel in sorted(links):
        folder = list(PurePosixPath(rel).parent.parts)
        if _leaves(folder, links[rel], links):
            return rel
    return None


def _leaves(folder: list[str], target: str, links: Mapping[str, str]) -> bool:
    if not target or "\x00" in target:
        return True
    stack = list(folder)
    pending = list(PurePosixPath(target).parts)
    hops = 0
    while pending:
        part = pending.pop(0)
        if part.startswith("/"):
            return True  # absolute: never inside a folder that can be anywhere
        if part == ".":
            continue
        if part == "..":
            if not stack:
                return True
            stack.pop()
            continue
        stack.append(part)
        inner = links.get("/".join(stack))
        if inner is not None:
            hops += 1
            if hops > 40 or not inner:  # a loop, as ELOOP would say
                return True
            stack.pop()
            pending[:0] = PurePosixPath(inner).parts
    return False


def _non_folder_on_the_way(dest: Path, target: Path) -> Path | None:
    """The first folder of ``target`` inside ``dest`` that is a file or a symlink."""
    for parent in reversed(target.relative_to(dest).parents[:-1]):
        here = dest / parent
        if here.is_symlink() or (here.exists() and not here.is_dir()):
            return here
    return None


def _replace_with_link(target: Path, link: _Link) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.mk-tmp"
    os.symlink(link.target, tmp)
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _stat_key(path: Path) -> list[int] | None:
    try:
        st = path.lstat()
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode]


def _finite(value: Any) -> bool:
    """A real number a float holds (a 400-digit int overflows math.isfinite)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _is_toml(text: str) -> bool:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return True


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


def _looks_like_header(head: bytes | memoryview) -> bool:
    """The first chunk of a safetensors file is its whole header (see store.chunking)."""
    if len(head) < 10:
        return False
    (length,) = struct.unpack_from("<Q", head, 0)
    return len(head) == 8 + length and bytes(head[8:9]) == b"{"


def _is_paths(source: Any) -> bool:
    if isinstance(source, str | os.PathLike):
        return True
    return isinstance(source, list | tuple) and all(
        isinstance(p, str | os.PathLike) for p in source
    )


def _delta(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
