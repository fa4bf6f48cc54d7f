"""Where a repository lives: the one place that knows.

A ``Context`` holds a repository's object store, its registry and its lock, and says
where loads may cache files. ``LocalContext`` is a ``.modelkeep`` folder (SQLite and
objects on disk, a file lock); ``MemoryContext`` keeps everything in memory (one
process: its lock is a no-op). Services above see only this interface, so a context
for PostgreSQL and an object store takes its place without them changing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelkeep.errors import UsageError
from modelkeep.registry import Registry
from modelkeep.store import ChunkParams, LocalBackend, MemoryBackend, ObjectStore, locks

if TYPE_CHECKING:
    from modelkeep.registry.salvage import Salvaged


class Context:
    """A repository's parts, wherever they are. Subclasses say where."""

    root: Path  # the folder commands run from: default checkouts land under it
    store: ObjectStore
    registry: Registry

    @property
    def read_only(self) -> bool:
        """Whether this process may only read the repository."""
        return self.registry.read_only

    def shared(self) -> contextlib.AbstractContextManager[None]:
        """The store lock, shared: held by writers from their first object to the
        version row, so gc cannot delete an object they found present."""
        return contextlib.nullcontext()

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        """The store lock, alone: gc, upgrade and repairs."""
        return contextlib.nullcontext()

    def store_location(self) -> str:
        """Where the objects are, as a user names it."""
        return "memory"

    def gc_grace(self) -> float:
        """Seconds an unreferenced object is kept by gc (the store lock already keeps
        gc from a commit in flight; a shared store adds a grace period on top)."""
        return 0.0

    def cache_dir(self) -> Path:
        """Where loads check versions out (verified once, then trusted by stat)."""
        raise NotImplementedError

    def holds(self, path: Path) -> bool:
        """Whether ``path`` is the repository's own storage (never to be committed)."""
        return False

    def follow_upgrade(self) -> None:
        """Before a write: take up a format another process upgraded the store to."""

    def config(self) -> dict[str, Any]:
        """The repository's settings (format, chunking, default branch)."""
        raise NotImplementedError

    def write_format(self, fmt: int) -> None:
        """Record a new repository format, durably, before objects change layout."""
        raise UsageError("an in-memory repository has no format to upgrade")

    def drop_cache(self) -> None:
        """Forget checked-out loads (gc: they are made again on demand)."""
        shutil.rmtree(self.cache_dir(), ignore_errors=True)

    def salvage_registry(self) -> Salvaged:
        """Rebuild a damaged registry from every row that can still be read, and go on
        with the new one (``modelkeep.registry.salvage``)."""
        raise UsageError("an in-memory registry cannot be salvaged")

    def close(self) -> None:
        self.registry.dispose()


class LocalContext(Context):
    """A ``.modelkeep`` folder: objects in ``store/``, SQLite in ``registry.db``."""

    def __init__(self, root: Path, control: Path, config: dict[str, Any], registry_url: str):
        from modelkeep._engine import layout

        self.root = root
        self.control = control
        self._lock = control / "lock"
        self.store = ObjectStore(
            LocalBackend(control / "store"),
            ChunkParams.from_json(config["chunking"]),
            page_aligned=layout.page_aligned(config),
        )
        self.registry = Registry(registry_url)
        self.registry.check_schema()
        if (control / "policies").is_dir() and not self.read_only:
            self._import_policy_files()

    def _import_policy_files(self) -> None:
        """Policies were files under ``.modelkeep/policies`` before they were kept in
        the registry: each is imported once (unless the registry has one for that
        model already), then the folder is renamed ``policies.imported``."""
        from modelkeep import lineage
        from modelkeep.errors import ModelNotFoundError

        folder = self.control / "policies"
        with self.exclusive():
            if not folder.is_dir():
                return  # another process imported them meanwhile
            for path in sorted(folder.iterdir()):
                if path.name.startswith(".") or path.suffix not in (".toml", ".yaml"):
                    continue
                try:
                    if self.registry.policy(path.stem) is not None:
                        continue
                    text = path.read_text(encoding="utf-8")
                    self.registry.set_policy(
                        path.stem,
                        text,
                        path.suffix[1:],
                        actor=lineage.author(),
                        message=f"imported from {path}",
                        details={"imported": str(path)},
                    )
                except (ModelNotFoundError, UnicodeDecodeError):
                    continue  # a policy of a model that is no more, or not text: kept aside
            os.replace(folder, self.control / "policies.imported")

    def shared(self) -> contextlib.AbstractContextManager[None]:
        return locks.shared(self._lock)

    def store_location(self) -> str:
        return str(self.control / "store")

    def holds(self, path: Path) -> bool:
        here = self.control.resolve()
        real = path.resolve()
        return here == real or here in real.parents

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        return locks.exclusive(self._lock)

    def cache_dir(self) -> Path:
        if not self.read_only:
            return self.control / "cache"
        # A user who may only read the repository loads through a cache of their own.
        key = hashlib.sha256(str(self.control.resolve()).encode()).hexdigest()[:16]
        base = Path(tempfile.gettempdir()) / f"modelkeep-cache-{os.getuid()}" / key
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        return base

    def config(self) -> dict[str, Any]:
        from modelkeep._engine import layout

        return layout.read_config(self.control)

    def salvage_registry(self) -> Salvaged:
        from modelkeep._engine import layout

        url = self.registry.url
        self.registry.dispose()
        try:
            return layout.salvage(self.root)
        finally:
            self.registry = Registry(url)

    def follow_upgrade(self) -> None:
        # A repository opened at format 1 may have been upgraded since (upgrade holds
        # the lock exclusively, so under the shared lock the config is settled).
        from modelkeep._engine import layout

        if not self.store.page_aligned and layout.page_aligned(self.config()):
            self.store.align_from_now()

    def write_format(self, fmt: int) -> None:
        from modelkeep._engine import layout

        layout.write_config(self.control, {**self.config(), "format": fmt})

    def __repr__(self) -> str:
        return f"LocalContext({str(self.root)!r})"


class MemoryContext(Context):
    """Everything in memory, for tests and experiments: one process, no lock."""

    def __init__(self, params: ChunkParams | None = None) -> None:
        self.root = Path.cwd()
        self.store = ObjectStore(MemoryBackend(), params or ChunkParams())
        self.registry = Registry("sqlite+pysqlite:///:memory:")
        self.registry.create()
        self.registry.check_schema()
        self._cache = Path(tempfile.gettempdir()) / f"modelkeep-memory-{os.getpid()}-{id(self)}"

    def cache_dir(self) -> Path:
        return self._cache

    def config(self) -> dict[str, Any]:
        raise UsageError("an in-memory repository has no format to upgrade")

    def __repr__(self) -> str:
        return "MemoryContext()"
