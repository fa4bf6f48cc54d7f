"""Finding, creating and opening a repository folder, and its ``config.json``.

A repository is a folder holding ``.modelkeep/``: ``config.json`` (the format, the
chunking parameters, the default branch), ``store/`` and ``registry.db``. The config is
written last by ``init``: until it exists, the folder is not a repository.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelkeep._engine import shared
from modelkeep._engine.context import Context, LocalContext, MemoryContext
from modelkeep.errors import (
    Hint,
    ReadOnlyRepositoryError,
    RepositoryExistsError,
    RepositoryFormatError,
    RepositoryNotFoundError,
    UsageError,
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


def open_local(path: str | os.PathLike[str] | None = None) -> Context:
    """The repository at or above ``path`` (default: MODELKEEP_REPO, or the cwd). A
    folder whose config names a database or a store opens those (``shared.py``); with
    no folder found, MODELKEEP_DB and MODELKEEP_STORE name a repository with none."""
    try:
        root = find(Path(path) if path is not None else None)
    except RepositoryNotFoundError:
        env = shared.from_environment(None, None, None)
        if path is None and not os.environ.get(ENV_REPO) and env[0] and env[1]:
            return open_urls(None, None)
        raise
    control = root / REPO_DIR
    config = read_config(control)
    if "db" in config or "store" in config:
        return shared.SharedContext(root, _where(control, config), control)
    return LocalContext(root, control, config, sqlite_url(control))


def _where(control: Path, config: dict[str, Any]) -> shared.Where:
    """Where a folder's config points; what it does not name stays in the folder."""
    db_url = config.get("db") or sqlite_url(control)
    store = config.get("store") or str(control / "store")
    return shared.Where(db_url, store, config.get("s3_endpoint"))


def open_urls(db_url: str | None, store: str | None, endpoint: str | None = None) -> Context:
    """A repository by its URLs alone (or MODELKEEP_DB / MODELKEEP_STORE), no folder."""
    db_url, store, endpoint = shared.from_environment(db_url, store, endpoint)
    if db_url is None or store is None:
        raise UsageError(
            "a repository without a folder needs both its database and its store URL",
            hint=Hint(
                cli="give --db and --store (or set MODELKEEP_DB and MODELKEEP_STORE)",
                api="give db= and store= (or set MODELKEEP_DB and MODELKEEP_STORE)",
            ),
        )
    where = shared.Where(shared.check_db_url(db_url), shared.check_store_url(store), endpoint)
    return shared.SharedContext(Path.cwd(), where)


def init(
    path: str | os.PathLike[str] | None = ".",
    params: ChunkParams | None = None,
    *,
    db_url: str | None = None,
    store: str | None = None,
    s3_endpoint: str | None = None,
) -> Context:
    """Create a repository in ``path`` (made if missing) and open it. With a database
    or a store URL (or MODELKEEP_DB / MODELKEEP_STORE), the registry and the objects
    live there and the folder only points at them; with no folder (``path=None``),
    nothing is written locally at all."""
    db_url, store, s3_endpoint = shared.from_environment(db_url, store, s3_endpoint)
    if db_url is not None or store is not None or path is None:
        return _init_shared(path, params, db_url, store, s3_endpoint)
    return init_folder(path, params)


def init_folder(path: str | os.PathLike[str], params: ChunkParams | None = None) -> Context:
    """A repository all in ``path`` (SQLite and objects in its folder), whatever
    MODELKEEP_DB and MODELKEEP_STORE say."""
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


def _init_shared(
    path: str | os.PathLike[str] | None,
    params: ChunkParams | None,
    db_url: str | None,
    store: str | None,
    s3_endpoint: str | None,
) -> Context:
    root = Path(path).resolve() if path is not None else None
    control = root / REPO_DIR if root is not None else None
    if control is not None and (control / "config.json").exists():
        raise RepositoryExistsError(f"{root} already holds a modelkeep repository")
    if control is None and (db_url is None or store is None):
        return open_urls(db_url, store, s3_endpoint)  # refuses, saying what is missing
    recorded: dict[str, Any] = {}
    if db_url is not None:
        recorded["db"] = shared.check_db_url(db_url)
    if store is not None:
        recorded["store"] = shared.check_store_url(store)
    if s3_endpoint:
        recorded["s3_endpoint"] = s3_endpoint
    # Checked and made before the folder gets its pointer, which is written last; a
    # folder this call made goes again when anything fails.
    made = root is not None and not root.exists()
    made_control = control is not None and not control.exists()
    try:
        if control is not None:
            control.mkdir(parents=True, exist_ok=True)
            where = _where(control, recorded)
        else:
            where = shared.Where(recorded["db"], recorded["store"], s3_endpoint)
        shared.create(where, params or ChunkParams(), FORMAT, DEFAULT_BRANCH)
    except BaseException:
        if made and root is not None:
            shutil.rmtree(root, ignore_errors=True)
        elif made_control and control is not None:
            shutil.rmtree(control, ignore_errors=True)
        raise
    if control is None:
        return shared.SharedContext(Path.cwd(), where)
    # Only what was given is recorded (a folder that moves keeps its own parts), and
    # never a password.
    recorded.update({"db": db.without_password(db_url)} if db_url else {})
    write_config(control, {"format": FORMAT, **recorded})
    return shared.SharedContext(root or Path.cwd(), where, control)


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
    config = read_config(control)
    if config.get("db"):
        raise UsageError(
            f"the registry of {root} is the database {config['db']}: salvage works on a "
            "SQLite file only; restore the database from its server's backups"
        )
    db = control / "registry.db"
    if not os.access(db, os.W_OK) or not os.access(control, os.W_OK | os.X_OK):
        raise ReadOnlyRepositoryError(
            f"salvaging {db} writes a new registry, and you may only read it; run it as "
            "a user who can write there"
        )
    with locks.exclusive(control / "lock"):
        return rebuild(db)
