"""Starting the team server: open the repository, then hand the app to uvicorn."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Unpack

from modelkeep.server.app import create_app

if TYPE_CHECKING:
    from pathlib import Path

    from modelkeep._engine.shared import Location


def serve(
    repo_path: str | Path | None,
    host: str = "127.0.0.1",
    port: int = 8900,
    log_level: str = "warning",
    **where: Unpack[Location],
) -> None:
    """Serve the repository at ``repo_path`` (or at the ``db``/``store`` URLs) until
    interrupted. Requests need a token made with ``modelkeep token create``."""
    import uvicorn

    from modelkeep.repo import Repo

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    repo = Repo.open(repo_path, **where)
    try:
        if not repo.tokens.list():
            logging.getLogger("modelkeep.server").warning(
                "no token exists yet: every request but health is refused"
            )
        uvicorn.run(create_app(repo), host=host, port=port, log_level=log_level)
    finally:
        repo.close()
