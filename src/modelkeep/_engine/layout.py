"""Finding, creating and opening a repository folder, and its ``config.json``.

A repository is a folder holding ``.modelkeep/``: ``config.json`` (the format, the
chunking parameters, the default branch), ``store/`` and ``registry.db``. The config is
written last by ``init``: until it exists, the folder is not a repository.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelkeep._engine.context import LocalContext, MemoryContext
from modelkeep.errors import (
    Hint,
    ReadOnlyRepositoryError,
    RepositoryExistsError,
    RepositoryFormatError,
    RepositoryNotFoundError,
)
from modelkeep.registry import Registry, db
from modelkeep.store import ChunkParams

if TYPE_CHECKING:
    from modelkeep.registry.salvage import Salvaged

REPO_DIR = ".modelkeep"
# 2: large raw objects may be page-aligned (codec RAW_PAGE), which releases knowing
# only format 1 could not read. A format-1 repository is still written as format 1.
FORMAT = 2
ENV_REPO = "MODELKEEP_REPO"
DEFAULT_BRANCH = "main"


def find(start: Path | None = None) -> Path:
    """The folder holding ``.modelkeep``: ``start`` or MODELKEEP_REPO or the cwd, upwards."""
    if start is None and os.environ.get(ENV_REPO):
        start = Path(os.environ[ENV_REPO])
    if start is not None and not start.is_dir():
        # A mistyped --repo must not silently open the repository above it.
        raise RepositoryNotFoundError(
            f"{start}: no such folder; give the folder that holds .modelkeep "
            "(or create a repository there)",
            hint=Hint(cli="`modelkeep init` creates one", api="Repo.init(path) creates one"),
        )
    origin = (start or Path.cwd()).resolve()
    if origin.name == REPO_DIR:
        origin = origin.parent
    for folder in (origin, *origin.parents):
        if (folder / REPO_DIR / "config.json").is_file():
            return folder
    raise RepositoryNotFoundError(
        f"no modelkeep repository at {origin} or any folder above it; create one, or "
        "name the folder of one (or set MODELKEEP_REPO)",
        hint=Hint(
            cli="`modelkeep init` creates one; --repo PATH names one",
            api="Repo.init(path) creates one; Repo(path) opens one",
        ),
    )


def read_config(control: Path) -> dict[str, Any]:
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


def write_config(control: Path, config: dict[str, Any]) -> None:
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


def page_aligned(config: dict[str, Any]) -> bool:
    """Whether the format stores large raw objects page-aligned (format 2 and later)."""
    return int(config["format"]) >= 2


def sqlite_url(control: Path) -> str:
    return db.sqlite_url(str(control / "registry.db"))


def open_local(path: str | os.PathLike[str] | None = None) -> LocalContext:
    """The repository at or above ``path`` (default: MODELKEEP_REPO, or the cwd)."""
    root = find(Path(path) if path is not None else None)
    control = root / REPO_DIR
    config = read_config(control)
    return LocalContext(root, control, config, sqlite_url(control))


def init(path: str | os.PathLike[str] = ".", params: ChunkParams | None = None) -> LocalContext:
    """Create a repository in ``path`` (made if missing) and open it."""
    root = Path(path).resolve()
    control = root / REPO_DIR
    if (control / "config.json").exists():
        raise RepositoryExistsError(f"{root} already holds a modelkeep repository")
    (control / "store").mkdir(parents=True, exist_ok=True)
    created = Registry(sqlite_url(control))
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
    write_config(control, config)
    return open_local(root)


def memory(params: ChunkParams | None = None) -> MemoryContext:
    """A throw-away repository in memory."""
    return MemoryContext(params)


def salvage(path: str | os.PathLike[str] | None = None) -> Salvaged:
    """Rebuild the damaged registry of the repository at ``path`` from every row that
    can still be read (``modelkeep.registry.salvage``; the damaged file is kept beside
    it), without opening it first: it may be too damaged to open."""
    from modelkeep.registry.salvage import salvage as rebuild
    from modelkeep.store import locks

    root = find(Path(path) if path is not None else None)
    control = root / REPO_DIR
    read_config(control)
    db = control / "registry.db"
    if not os.access(db, os.W_OK) or not os.access(control, os.W_OK | os.X_OK):
        raise ReadOnlyRepositoryError(
            f"salvaging {db} writes a new registry, and you may only read it; run it as "
            "a user who can write there"
        )
    with locks.exclusive(control / "lock"):
        return rebuild(db)
