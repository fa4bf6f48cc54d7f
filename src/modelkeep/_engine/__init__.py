"""The engine: services over one ``Context`` (where a repository lives).

Private: users import ``modelkeep.Repo``, the facade whose every method delegates to
a service here. Jobs (update, serve, monitor, deploy) take an ``Engine``; the engine
imports no job and no face.

    Engine(ctx)
    ├── versions     resolve, log, show, files, load, profile        versions.py
    ├── commits      the commit pipeline, datasets                   commit.py
    │                (files, folders and symlinks gathered: sources.py)
    ├── refs         branches, aliases, tags, promote, rollback, events   refs.py
    ├── worktree     checkout, status                                worktree.py
    ├── compare      diff                                            compare.py
    ├── exchange     identities, object negotiation, publishing      exchange.py
    └── maintenance  fsck, gc, upgrade, registry salvage             maintenance.py
    context.py: Context, LocalContext, MemoryContext · layout.py: find, init, config
"""

from modelkeep._engine.engine import Engine

__all__ = ["Engine"]
