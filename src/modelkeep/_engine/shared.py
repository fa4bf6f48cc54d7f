"""A repository whose registry and objects live at URLs: PostgreSQL (or a SQLite file)
and an S3 bucket (or a folder, e.g. on a shared file system).

The registry is the authority: it keeps the repository's id and settings (format,
chunking, default branch) in its ``meta`` table, where a folder keeps ``config.json``.
The store holds a marker, ``repository.json``, naming the same id, so that a bucket
(or prefix) is never taken for another repository's. A folder may point at both with a
small ``.modelkeep/config.json`` (``{"format", "db", "store", "s3_endpoint"}``, never a
password); ``Repo.open(db=..., store=...)`` needs no folder at all.

Locks: on PostgreSQL the store lock is an advisory lock in the database, which every
machine sharing the repository sees; with a SQLite registry (one machine) it is the
file lock beside the database file.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from modelkeep._engine.context import Context
from modelkeep.errors import (
    Hint,
    RepositoryExistsError,
    RepositoryFormatError,
    RepositoryNotFoundError,
    UsageError,
)
from modelkeep.registry import Registry
from modelkeep.registry.db import without_password
from modelkeep.store import ChunkParams, LocalBackend, ObjectStore, locks

if TYPE_CHECKING:
    import contextlib

    from modelkeep.registry.salvage import Salvaged
    from modelkeep.store.backends import Backend

ENV_DB = "MODELKEEP_DB"
ENV_STORE = "MODELKEEP_STORE"
ENV_ENDPOINT = "MODELKEEP_S3_ENDPOINT"
ENV_CACHE = "MODELKEEP_CACHE"
ENV_CACHE_SIZE = "MODELKEEP_CACHE_SIZE"
ENV_GC_GRACE = "MODELKEEP_GC_GRACE"
# An hour: far longer than any commit takes between its first object and its version.
DEFAULT_GC_GRACE = 3600.0
MARKER = "repository.json"
DEFAULT_CACHE_BYTES = 8 << 30

_DB_SCHEMES = ("postgresql", "postgres", "sqlite")


class Location(TypedDict, total=False):
    """Where ``Repo.open`` / ``Repo.init`` find a repository with no folder, or put a
    new one's registry (``db``) and objects (``store``)."""

    db: str | None
    store: str | None
    s3_endpoint: str | None


@dataclass(frozen=True)
class Where:
    """Where a shared repository lives. ``db`` is a database URL (its password, if
    given, is used but never recorded); ``store`` an ``s3://BUCKET/PREFIX`` URL or an
    absolute folder path."""

    db: str
    store: str
    s3_endpoint: str | None = None


def check_db_url(url: str) -> str:
    """``url`` if it names a database modelkeep can keep a registry in."""
    scheme = url.partition("://")[0].split("+")[0].lower() if "://" in url else ""
    if scheme not in _DB_SCHEMES:
        raise UsageError(
            f"{without_password(url)!r} is not a database URL modelkeep can use; give "
            "postgresql://USER@HOST:PORT/DATABASE or sqlite:///PATH"
        )
    if scheme.startswith("postgres") and not urllib.parse.urlsplit(url).path.strip("/"):
        raise UsageError(
            f"{without_password(url)!r} names no database; give "
            "postgresql://USER@HOST:PORT/DATABASE"
        )
    return url


def check_store_url(url: str) -> str:
    """``url`` as the store's location: ``s3://BUCKET[/PREFIX]`` or an absolute folder."""
    if url.startswith("s3://"):
        bucket = url[5:].split("/", 1)[0]
        if not bucket:
            raise UsageError(f"{url!r} names no bucket; give s3://BUCKET/PREFIX")
        return url.rstrip("/")
    if url.startswith("file://"):
        url = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    elif "://" in url:
        raise UsageError(
            f"{url!r}: unknown store URL scheme; give s3://BUCKET/PREFIX or a folder path"
        )
    return str(Path(url).expanduser().resolve())


def from_environment(
    db_url: str | None, store: str | None, endpoint: str | None
) -> tuple[str | None, str | None, str | None]:
    """The arguments, or else MODELKEEP_DB / MODELKEEP_STORE / MODELKEEP_S3_ENDPOINT."""
    return (
        db_url or os.environ.get(ENV_DB) or None,
        store or os.environ.get(ENV_STORE) or None,
        endpoint or os.environ.get(ENV_ENDPOINT) or None,
    )


def _cache_root(repository_id: str) -> Path:
    base = os.environ.get(ENV_CACHE) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "modelkeep"
    )
    return Path(base) / repository_id


def _cache_bytes() -> int:
    raw = os.environ.get(ENV_CACHE_SIZE, "")
    try:
        return int(raw) if raw else DEFAULT_CACHE_BYTES
    except ValueError:
        raise UsageError(f"{ENV_CACHE_SIZE}={raw!r} is not a number of bytes") from None


def open_backend(where: Where, cache: Path | None) -> Backend:
    """The store's backend; a remote one behind a bounded local read cache."""
    if not where.store.startswith("s3://"):
        return LocalBackend(Path(where.store))
    from modelkeep.store.cache import CachedBackend
    from modelkeep.store.s3 import S3Backend

    remote = S3Backend.from_url(where.store, endpoint=where.s3_endpoint)
    if cache is None:
        return remote
    return CachedBackend(remote, cache / "objects", _cache_bytes())


def _read_marker(backend: Backend, where: Where) -> dict[str, Any] | None:
    try:
        raw = backend.get(MARKER)
    except FileNotFoundError:
        return None
    try:
        marker: dict[str, Any] = json.loads(bytes(raw))
        str(marker["repository"])
    except (ValueError, KeyError, TypeError):
        raise RepositoryFormatError(
            f"{where.store}/{MARKER} is not a modelkeep repository marker; this store "
            "holds something else: choose another bucket or prefix"
        ) from None
    return marker


def _lock_file(registry: Registry, control: Path | None) -> Path | None:
    if registry.file is not None:
        return Path(registry.file).with_name("lock")
    return control / "lock" if control is not None else None


class SharedContext(Context):
    """A registry and a store reached by URL (``Where``); ``control`` is the folder of
    a ``.modelkeep/config.json`` that points at them, if the repository has one."""

    def __init__(self, root: Path, where: Where, control: Path | None = None) -> None:
        self.root = root
        self.where = where
        self.control = control
        self.registry = Registry(where.db)
        try:
            self.registry.check_schema()
            settings = self.registry.settings()
        except BaseException:
            self.registry.dispose()
            raise
        if "repository" not in settings:
            self.registry.dispose()
            raise RepositoryNotFoundError(
                f"{self.registry.where} holds no modelkeep repository; create one there",
                hint=Hint(
                    cli="`modelkeep init --db URL --store URL` creates one",
                    api="Repo.init(db=..., store=...) creates one",
                ),
            )
        self.id = settings["repository"]
        self._settings = settings
        backend = open_backend(where, _cache_root(self.id))
        marker = _read_marker(backend, where)
        if marker is None or marker["repository"] != self.id:
            self.registry.dispose()
            what = "no repository" if marker is None else f"repository {marker['repository']}"
            raise RepositoryFormatError(
                f"the store {where.store} holds {what}, not the repository "
                f"{self.id} of {self.registry.where}; give the store this registry was "
                "created with"
            )
        local = isinstance(backend, LocalBackend)
        self.store = ObjectStore(
            backend,
            ChunkParams.from_json(json.loads(settings["chunking"])),
            # Page alignment serves memory-mapped loads from local files only.
            page_aligned=local and int(settings["format"]) >= 2,
        )
        self._lock = _lock_file(self.registry, control)

    def _store_lock(self, exclusive: bool) -> contextlib.AbstractContextManager[None]:
        if self.registry.db.postgres:
            return self.registry.db.advisory_lock(exclusive)
        return (locks.exclusive if exclusive else locks.shared)(self._lock)

    def shared(self) -> contextlib.AbstractContextManager[None]:
        return self._store_lock(False)

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        return self._store_lock(True)

    def store_location(self) -> str:
        return self.where.store

    def gc_grace(self) -> float:
        # Defence in depth beside the store lock: a commit whose lock connection the
        # server dropped (the advisory lock goes with it) still finds its young objects.
        raw = os.environ.get(ENV_GC_GRACE, "")
        try:
            grace = float(raw) if raw else DEFAULT_GC_GRACE
        except ValueError:
            grace = -1.0
        if not grace >= 0:
            raise UsageError(f"{ENV_GC_GRACE}={raw!r} is not a number of seconds (>= 0)")
        return grace

    def cache_dir(self) -> Path:
        if self.control is not None and os.access(self.control, os.W_OK):
            return self.control / "cache"
        folder = _cache_root(self.id) / "checkouts"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        return folder

    def holds(self, path: Path) -> bool:
        real = path.resolve()
        mine = [self.control] if self.control is not None else []
        if not self.where.store.startswith("s3://"):
            mine.append(Path(self.where.store))
        return any(real == p.resolve() or p.resolve() in real.parents for p in mine)

    def config(self) -> dict[str, Any]:
        return {
            "format": int(self._settings["format"]),
            "chunking": json.loads(self._settings["chunking"]),
            "default_branch": self._settings["default_branch"],
        }

    def write_format(self, fmt: int) -> None:
        self.registry.set_settings({"format": str(fmt)})
        self._settings["format"] = str(fmt)

    def follow_upgrade(self) -> None:
        if isinstance(self.store.backend, LocalBackend) and not self.store.page_aligned:
            self._settings = self.registry.settings()
            if int(self._settings["format"]) >= 2:
                self.store.align_from_now()

    def salvage_registry(self) -> Salvaged:
        if self.registry.file is None:
            raise UsageError(
                f"the registry {self.registry.where} is a database server's: salvage works "
                "on a SQLite file only; restore the database from its server's backups"
            )
        from modelkeep.registry.salvage import salvage

        url = self.registry.url
        self.registry.dispose()
        try:
            with self.exclusive():
                return salvage(Path(self.registry.file))
        finally:
            self.registry = Registry(url)

    def __repr__(self) -> str:
        return f"SharedContext({without_password(self.where.db)!r}, {self.where.store!r})"


def create(where: Where, params: ChunkParams, fmt: int, default_branch: str) -> None:
    """Create a repository at ``where``: both ends are checked before anything is made.

    Order: the registry's schema and settings, then the store's marker. An init that
    stopped between the two is finished by the next one (an empty registry whose
    store has no marker yet); a registry or store of another repository is refused."""
    registry = Registry(where.db)
    try:
        existing = registry.settings().get("repository") if registry.holds_schema() else None
        backend = open_backend(where, None)
        check = getattr(backend, "check", None)
        if check is not None:
            check()
        marker = _read_marker(backend, where)
        if marker is not None:
            raise RepositoryExistsError(
                f"the store {where.store} already holds a modelkeep repository "
                f"({marker['repository']}); open it, or choose another bucket or prefix"
            )
        if existing is not None and registry.version_total() > 0:
            raise RepositoryExistsError(
                f"the database {registry.where} already holds a modelkeep repository; "
                "open it, or give an empty database"
            )
        if isinstance(backend, LocalBackend):
            Path(where.store).mkdir(parents=True, exist_ok=True)
        registry.create()
        repository = existing or uuid.uuid4().hex
        registry.set_settings(
            {
                "repository": repository,
                "format": str(fmt),
                "chunking": json.dumps(params.to_json()),
                "default_branch": default_branch,
            }
        )
        body = json.dumps({"repository": repository, "registry": registry.where}).encode()
        backend.put(MARKER, body)
    finally:
        registry.dispose()
