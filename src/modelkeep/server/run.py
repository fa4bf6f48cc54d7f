"""Starting the team server: open the repository, then hand the app to uvicorn.

With ``workers`` above 1, uvicorn starts that many processes, each of which opens the
repository itself (``worker_app``: a connection pool or SQLite connections cannot cross a
process boundary), told where by the environment variable ``MODELKEEP_SERVER_WHERE``. Every worker
sees every other's changes: SQLite's and PostgreSQL's own, checked per request (see
``server.app``). A limit on failed authentications is then counted per worker.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any, Unpack

from modelkeep.server.app import create_app

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi import FastAPI

    from modelkeep._engine.shared import Location

log = logging.getLogger("modelkeep.server")
# Where the workers' repository is, for the workers: a JSON object of Repo.open's
# arguments (a database URL's password, if it holds one, stays in this process tree).
_WHERE = "MODELKEEP_SERVER_WHERE"


def serve(
    repo_path: str | Path | None,
    host: str = "127.0.0.1",
    port: int = 8900,
    log_level: str = "warning",
    workers: int = 1,
    **where: Unpack[Location],
) -> None:
    """Serve the repository at ``repo_path`` (or at the ``db``/``store`` URLs) until
    interrupted, in ``workers`` processes. Requests need a token made with ``modelkeep
    token create``."""
    import uvicorn

    from modelkeep.repo import Repo

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # No access log: a line per request costs more than answering a resolve, and every
    # change is in the event log with who made it.
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,
    }
    repo = Repo.open(repo_path, **where)
    try:
        if not repo.tokens.list():
            log.warning("no token exists yet: every request but health is refused")
        if workers <= 1:
            uvicorn.run(create_app(repo), **options)
            return
    finally:
        repo.close()  # with workers: each opens its own
    os.environ[_WHERE] = json.dumps(
        {"path": None if repo_path is None else str(repo_path), **where}
    )
    uvicorn.run(f"{__name__}:worker_app", factory=True, workers=workers, **options)


def worker_app() -> FastAPI:
    """The app of one worker process, over the repository ``serve`` named."""
    from modelkeep.repo import Repo

    where = json.loads(os.environ[_WHERE])
    path = where.pop("path")
    return create_app(Repo.open(path, **where), close_repo=True)
