"""A real `modelkeep server` process on 127.0.0.1 for tests: started on a free port
over a repository opened by its folder (whose config names its engines, so the same
call serves a local repository and, under MODELKEEP_TEST_ENGINE=pg-s3, one on
PostgreSQL + S3), waited for until it answers, and stopped (or killed with SIGKILL).

Its stderr goes to a file, not a pipe nobody reads (a full pipe would stall it)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

START_TIMEOUT = 60.0


@dataclass
class ServerProcess:
    url: str
    root: Path
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def stderr(self) -> str:
        """What the server wrote on stderr so far (its last 4,000 characters)."""
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, as a crash or the OOM killer ends it."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=20)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_up(server: ServerProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        assert server.proc.poll() is None, f"the team server exited:\n{server.stderr()}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/api/v1/health", timeout=1).status_code == 200:
                return
        assert time.monotonic() < deadline, f"the team server did not start:\n{server.stderr()}"
        time.sleep(0.05)


@contextlib.contextmanager
def start_server(root: Path, port: int | None = None) -> Iterator[ServerProcess]:
    """`modelkeep --repo ROOT server --port PORT` (a free port unless given), up when
    this yields; terminated (then killed) on exit, unless it is gone already."""
    port = port or free_port()
    fd, log = tempfile.mkstemp(prefix="modelkeep-server-", suffix=".log")
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelkeep", "--repo", str(root), "server", "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=fd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    os.close(fd)
    server = ServerProcess(f"http://127.0.0.1:{port}", root, port, proc, Path(log))
    try:
        _wait_until_up(server)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=20)
        server.log.unlink(missing_ok=True)
