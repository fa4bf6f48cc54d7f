"""``Engine``: one context and the services that work on it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelkeep._engine import layout

if TYPE_CHECKING:
    import os
    from collections.abc import Callable

    from modelkeep._engine.commit import Commits
    from modelkeep._engine.compare import Compare
    from modelkeep._engine.context import Context
    from modelkeep._engine.maintenance import Maintenance
    from modelkeep._engine.refs import Refs
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
        from modelkeep._engine.commit import Commits
        from modelkeep._engine.compare import Compare
        from modelkeep._engine.maintenance import Maintenance
        from modelkeep._engine.refs import Refs
        from modelkeep._engine.versions import Versions
        from modelkeep._engine.worktree import WorkTree

        self.ctx = ctx
        self.versions: Versions = Versions(self)
        self.commits: Commits = Commits(self)
        self.refs: Refs = Refs(self)
        self.worktree: WorkTree = WorkTree(self)
        self.compare: Compare = Compare(self)
        self.maintenance: Maintenance = Maintenance(self)

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> Engine:
        return cls(layout.open_local(path))

    @classmethod
    def init(cls, path: str | os.PathLike[str] = ".", params: ChunkParams | None = None) -> Engine:
        return cls(layout.init(path, params))

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
