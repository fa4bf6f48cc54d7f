"""``Engine``: one context and the services that work on it."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Unpack

from modelkeep._engine import layout
from modelkeep.errors import UsageError

if TYPE_CHECKING:
    import os
    from collections.abc import Callable

    from modelkeep._engine.commit import Commits
    from modelkeep._engine.compare import Compare
    from modelkeep._engine.context import Context
    from modelkeep._engine.exchange import Exchange
    from modelkeep._engine.maintenance import Maintenance
    from modelkeep._engine.refs import Refs
    from modelkeep._engine.shared import Location
    from modelkeep._engine.versions import Versions
    from modelkeep._engine.worktree import WorkTree
    from modelkeep.store import ChunkParams

    # Progress bars: started with a label and a total, then told how much was done.
    Progress = Callable[[int], None]
    ProgressStart = Callable[[str, int], Progress | None]


def no_progress(_label: str, _total: int) -> None:
    """No progress bar (the Python API's default)."""


class Engine:
    """A repository's services over its context. Services reach each other through
    it (``self.e.versions.resolve``), as dulwich's functions take one repo."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # Each service is imported and made on first use: a command that lists versions
    # never pays for the commit pipeline's imports (formats, lineage, profiles).

    @functools.cached_property
    def versions(self) -> Versions:
        from modelkeep._engine.versions import Versions

        return Versions(self)

    @functools.cached_property
    def commits(self) -> Commits:
        from modelkeep._engine.commit import Commits

        return Commits(self)

    @functools.cached_property
    def refs(self) -> Refs:
        from modelkeep._engine.refs import Refs

        return Refs(self)

    @functools.cached_property
    def worktree(self) -> WorkTree:
        from modelkeep._engine.worktree import WorkTree

        return WorkTree(self)

    @functools.cached_property
    def compare(self) -> Compare:
        from modelkeep._engine.compare import Compare

        return Compare(self)

    @functools.cached_property
    def exchange(self) -> Exchange:
        from modelkeep._engine.exchange import Exchange

        return Exchange(self)

    @functools.cached_property
    def maintenance(self) -> Maintenance:
        from modelkeep._engine.maintenance import Maintenance

        return Maintenance(self)

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, **where: Unpack[Location]) -> Engine:
        if where.get("db") is not None or where.get("store") is not None:
            if path is not None:
                raise UsageError("give a repository's folder or its URLs, not both")
            urls = (where.get("db"), where.get("store"), where.get("s3_endpoint"))
            return cls(layout.open_urls(*urls))
        return cls(layout.open_local(path))

    @classmethod
    def init(
        cls,
        path: str | os.PathLike[str] | None = ".",
        params: ChunkParams | None = None,
        **where: Unpack[Location],
    ) -> Engine:
        return cls(
            layout.init(
                path,
                params,
                db_url=where.get("db"),
                store=where.get("store"),
                s3_endpoint=where.get("s3_endpoint"),
            )
        )

    @classmethod
    def memory(cls, params: ChunkParams | None = None) -> Engine:
        return cls(layout.memory(params))

    def close(self) -> None:
        self.ctx.close()


class Service:
    """One concern of the engine."""

    def __init__(self, engine: Engine) -> None:
        self.e = engine

    @property
    def ctx(self) -> Context:
        # Read each time: a salvage replaces the context's registry.
        return self.e.ctx
