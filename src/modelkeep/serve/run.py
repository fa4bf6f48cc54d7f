"""Starting a server: check the revision, load it, then hand the app to uvicorn."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelkeep.errors import PathNotFoundError, UsageError
from modelkeep.revision import parse_alias
from modelkeep.serve.app import DEFAULT_MAX_BODY, create_app
from modelkeep.serve.follower import Follower

if TYPE_CHECKING:
    from collections.abc import Iterator

    from starlette.applications import Starlette

ENV = "MODELKEEP_SERVE"
log = logging.getLogger("modelkeep.serve")


# Said once when a server starts with a shared feedback secret (deprecated).
DEPRECATION_WARNING = (
    "a shared feedback secret is deprecated and goes in the next release: feedback takes "
    "the repository's tokens (write scope on %s), and the secret is still taken until then"
)


def read_token_file(path: str | Path) -> str:
    """The shared feedback secret kept in ``path`` (surrounding whitespace stripped);
    deprecated: clients send a repository token with write scope instead.

    A file, not an option or an environment variable: a token on the command line is
    in every ``ps`` listing, and one in the environment is inherited by anything the
    server starts. A file others may read is allowed (secret volumes of Kubernetes and
    Docker are 0644/0444 by default) but logged as a warning."""
    path = Path(path)
    try:
        info = path.stat()
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PathNotFoundError(f"feedback token file {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"feedback token file {path} is a folder: give the file") from None
    except OSError as exc:
        raise UsageError(
            f"cannot read feedback token file {path} ({exc.strerror}): check its permissions"
        ) from None
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        token = None
    if token is None or any(not 0x21 <= ord(c) <= 0x7E for c in token):
        raise UsageError(
            f"feedback token file {path} must hold one token of printable ASCII, no spaces"
        )
    if not token:
        raise UsageError(f"feedback token file {path} is empty: write the token into it")
    if info.st_mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning(
            "feedback token file %s is readable by other users (mode %o): chmod 600 it",
            path,
            stat.S_IMODE(info.st_mode),
        )
    return token


def prepare(
    repo_path: str | Path | None,
    rev: str,
    max_body: int = DEFAULT_MAX_BODY,
    interval: float = 0.5,
    window_rows: int = 500,
    window_seconds: float = 30.0,
    monitoring: bool = True,
    shared: str | None = None,
    feedback_token: str | None = None,
    server: str | None = None,
) -> tuple[Follower, Starlette]:
    """A started follower (its first version loaded and warmed) and its app;
    ``shared`` is the folder workers of one server share (see ``serve``);
    ``server`` how ``modelkeep deployments`` names this server. Feedback takes the
    repository's tokens (write scope on the model); ``feedback_token``, deprecated, is
    a shared secret taken too."""
    from modelkeep._engine import Engine, layout
    from modelkeep.access.guard import TokenCheck
    from modelkeep.serve.peers import FolderPeers

    model, alias = parse_alias(rev)
    root = layout.find(None if repo_path is None else Path(repo_path))
    follower = Follower(
        lambda: Engine.open(root),
        model,
        alias,
        interval,
        window_rows=window_rows,
        window_seconds=window_seconds,
        monitoring=monitoring,
        peers=None if shared is None else FolderPeers(shared),
        server=server or f"local:{socket.gethostname()}:{os.getpid()}",
    )
    follower.start()
    # Its own engine: verified from the event loop's threads, apart from the follower's.
    tokens = TokenCheck.watching(lambda: Engine.open(root))
    return follower, create_app(follower, max_body, feedback_token, tokens=tokens)


@contextlib.contextmanager
def serve_in_thread(
    repo_path: str | Path, rev: str, **options: Any
) -> Iterator[tuple[str, Follower]]:
    """A real server on a free 127.0.0.1 port, in a thread (demo, tests, notebooks).
    Yields its base URL and follower; stops both on exit. ``options`` are ``prepare``'s;
    labels are taken with a repository token of write scope on the model."""
    import socket
    import threading
    import time

    import httpx
    import uvicorn

    follower, app = prepare(repo_path, rev, **options)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, name="modelkeep-serve", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                if httpx.get(f"{base}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"the server on {base} did not become ready")
            time.sleep(0.05)
        yield base, follower
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        follower.stop()


def app_from_env() -> Starlette:
    """uvicorn factory for worker processes: each worker follows the revision itself."""
    config = json.loads(os.environ[ENV])
    # The secret's file, not the secret, is in the environment: each worker reads it.
    token_file = config["feedback_token_file"]
    _, app = prepare(
        config["repo"],
        config["rev"],
        config["max_body"],
        config["interval"],
        config["window_rows"],
        config["window_seconds"],
        config["monitoring"],
        config["shared"],
        None if token_file is None else read_token_file(token_file),
        config["server"],
    )
    return app


def serve(
    repo_path: str | Path | None,
    rev: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    max_body: int = DEFAULT_MAX_BODY,
    interval: float = 0.5,
    log_level: str = "warning",
    window_rows: int = 500,
    window_seconds: float = 30.0,
    monitoring: bool = True,
    feedback_token_file: str | Path | None = None,
) -> None:
    """Serve ``rev`` until interrupted. Clients post labels with a repository token of
    write scope on the model (``Authorization: Bearer …``). ``feedback_token_file``
    (deprecated, goes in the next release): a file holding a shared secret taken too."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # A secret's file that cannot serve fails first, before loading anything.
    token = None if feedback_token_file is None else read_token_file(feedback_token_file)
    if token is not None:
        log.warning(DEPRECATION_WARNING, parse_alias(rev)[0])
    # Load (and so check) the revision in this process first: a bad revision or a
    # version that cannot load fails here, with a one-line error, before any worker.
    follower, app = prepare(
        repo_path,
        rev,
        max_body,
        interval,
        window_rows,
        window_seconds,
        monitoring,
        feedback_token=token,
        server=f"local:{socket.gethostname()}:{port}",
    )
    if workers <= 1:
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
        follower.stop()
        return
    follower.stop()
    import shutil
    import tempfile

    from modelkeep._engine import layout

    root = layout.find(None if repo_path is None else Path(repo_path))
    # What the workers share: prometheus-client's multiprocess files (so /metrics adds
    # up every worker), the label spool and the lock of the worker merging windows.
    shared = tempfile.mkdtemp(prefix="modelkeep-serve-")
    os.mkdir(os.path.join(shared, "prometheus"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(shared, "prometheus")
    os.environ[ENV] = json.dumps(
        {
            "repo": str(root),
            "rev": rev,
            "max_body": max_body,
            "interval": interval,
            "window_rows": window_rows,
            "window_seconds": window_seconds,
            "monitoring": monitoring,
            "shared": shared,
            "server": f"local:{socket.gethostname()}:{port}",
            "feedback_token_file": (
                None if feedback_token_file is None else str(Path(feedback_token_file).resolve())
            ),
        }
    )
    try:
        uvicorn.run(
            "modelkeep.serve.run:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            access_log=False,
        )
    finally:
        shutil.rmtree(shared, ignore_errors=True)
