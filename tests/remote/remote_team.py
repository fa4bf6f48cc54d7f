"""A team server and its clients for the tests of push, fetch, pull and clone.

The server is a real `modelkeep server` process (``server_process``) over a
repository opened by its folder; clients are repositories in other folders with the
server as ``origin``. Model files are written here: safetensors files of independent
1 MiB tensors (each its own chunk) and files of random bytes, all under tmp_path."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from safetensors.numpy import save_file

import modelkeep
from inprocess_cli import Result
from modelkeep.store import ObjectId
from server_process import ServerProcess, start_server

MIB = 1 << 20
# The `cli` fixture: `modelkeep --repo ROOT ARGS` in this process.
Cli = Callable[..., Result]
# The `client` fixture: `client(name)` is a new repository with the server as origin.
Client = Callable[[str], modelkeep.Repo]
API = "/api/v1"
# The server's users: a token for each (plaintext), made before it starts.
TOKENS = {
    "admin": ("root", "admin", "*"),
    "alice": ("alice", "write", "*"),
    "bob": ("bob", "write", "*"),
    "reader": ("rita", "read", "*"),
    "carol": ("carol", "write", "churn*"),
}


@dataclass
class Team:
    """A running team server over the repository in ``root``."""

    root: Path
    tokens: dict[str, str]
    server: ServerProcess
    _stack: contextlib.ExitStack = field(repr=False)

    @property
    def url(self) -> str:
        return self.server.url

    @contextlib.contextmanager
    def repo(self) -> Iterator[modelkeep.Repo]:
        """The server's repository, opened afresh by its folder (as another process
        would see it), closed after."""
        repo = modelkeep.Repo(self.root)
        try:
            yield repo
        finally:
            repo.close()

    def http(self, method: str, path: str, token: str | None, **kw: Any) -> httpx.Response:
        """A request to ``/api/v1{path}`` with ``token`` (the raw path is sent as given)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kw.pop("headers", {}))
        url = httpx.URL(self.url).copy_with(raw_path=(API + path).encode())
        return httpx.request(method, url, headers=headers, timeout=30, **kw)

    def restart(self, *, kill: bool = False) -> None:
        """Stop the server (SIGKILL with ``kill``) and start it again on the same port
        and repository, so that clients' remotes stay right."""
        port = self.server.port
        if kill:
            self.server.kill()
        self._stack.close()
        self._stack = contextlib.ExitStack()
        self.server = self._stack.enter_context(start_server(self.root, port))

    def close(self) -> None:
        self._stack.close()


def start_team(root: Path, setup: Callable[[modelkeep.Repo], None] | None = None) -> Team:
    """A repository in ``root`` with a token per user of TOKENS (and whatever ``setup``
    commits in it), then a server over it."""
    repo = modelkeep.Repo.init(root)
    try:
        tokens = {key: repo.tokens.create(*spec)[1] for key, spec in TOKENS.items()}
        if setup is not None:
            setup(repo)
    finally:
        repo.close()
    stack = contextlib.ExitStack()
    server = stack.enter_context(start_server(root))
    return Team(root, tokens, server, stack)


@dataclass(frozen=True)
class Snapshot:
    """What a repository holds: versions, refs, events, objects."""

    versions: dict[str, list[modelkeep.Version]]
    refs: dict[str, list[Any]]
    events: int
    objects: frozenset[ObjectId]


def snapshot(repo: modelkeep.Repo) -> Snapshot:
    names = sorted(m.name for m in repo.models())
    return Snapshot(
        versions={n: repo.log(n) for n in names},
        refs={n: repo.refs(n) for n in names},
        events=len(repo.events()),
        objects=frozenset(repo.store.iter_ids()),
    )


# -- model files -----------------------------------------------------------------------


def tensor(seed: int, size: int = MIB) -> np.ndarray:
    """``size`` random bytes as float32 (incompressible: stored, and sent, as they are)."""
    return np.frombuffer(np.random.default_rng(seed).bytes(size), dtype=np.float32).copy()


def tensors(count: int, seed: int, size: int = MIB) -> dict[str, np.ndarray]:
    return {f"layer{i:02d}": tensor(seed * 1000 + i, size) for i in range(count)}


def write_model(
    folder: Path, weights: dict[str, np.ndarray], extra: dict[str, bytes] | None = None
) -> Path:
    """``folder`` holding ``model.safetensors`` (and ``extra`` files), replaced whole."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    save_file(weights, str(folder / "model.safetensors"))
    for name, data in (extra or {}).items():
        (folder / name).write_bytes(data)
    return folder


def write_random(folder: Path, size: int, seed: int) -> Path:
    """``folder`` holding one file of ``size`` random bytes (many chunks, none alike)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "weights.bin").write_bytes(np.random.default_rng(seed).bytes(size))
    return folder


def files_of(repo: modelkeep.Repo, rev: str, dest: Path) -> dict[str, str]:
    """The version's files, checked out into ``dest`` (a new folder): path → SHA-256."""
    assert not dest.exists(), dest
    repo.checkout(rev, dest)
    found = {}
    for p in sorted(dest.rglob("*")):
        if p.is_file():
            digest = hashlib.sha256()
            with p.open("rb") as f:
                while block := f.read(MIB):
                    digest.update(block)
            found[p.relative_to(dest).as_posix()] = digest.hexdigest()
    return found


def kill_server_mid_transfer(
    team: Team, root: Path, token: str, args: list[str], objects: Iterable[ObjectId], store: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``modelkeep --repo ROOT ARGS`` (a push or a pull) as a process with ``token``,
    SIGKILL the server as soon as any of ``objects`` lands in ``store`` (the receiving
    side's ``ObjectStore``), and return how the process ended."""
    env = {**os.environ, "MODELKEEP_TOKEN": token, "NO_COLOR": "1"}
    argv = [sys.executable, "-m", "modelkeep", "--repo", str(root), *args]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    wanted = set(objects)
    try:
        deadline = time.monotonic() + 60
        while not wanted & set(store.iter_ids()):
            assert proc.poll() is None, f"{args[0]} ended before any object arrived: {proc}"
            assert time.monotonic() < deadline, "no object arrived in 60 s"
            time.sleep(0.001)
        team.server.kill()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)
