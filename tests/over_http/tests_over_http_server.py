"""A `modelkeep server` process on 127.0.0.1 for these tests (started, waited for,
stopped)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass
class ServerProcess:
    url: str
    root: Path
    proc: subprocess.Popen[bytes]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def start_server(root: Path) -> Iterator[ServerProcess]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelkeep", "--repo", str(root), "server", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the team server did not start"
            time.sleep(0.1)
        yield ServerProcess(url, root, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
            if proc.stderr is not None:
                proc.stderr.close()
