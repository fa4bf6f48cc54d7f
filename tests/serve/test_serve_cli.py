"""`modelkeep serve` refuses a revision it cannot follow: one line on stderr, non-zero exit,
no traceback, and no server left running (a real subprocess, with a timeout)."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

TIMEOUT = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(repo, rev: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELKEEP_")}
    env["NO_COLOR"] = "1"
    args = ["modelkeep", "--repo", str(repo.root), "serve", rev, "--host", "127.0.0.1"]
    return subprocess.run(
        [*args, "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,  # a server that started would never return: this fails the test
        check=False,
    )


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    message = proc.stderr.strip()
    assert "\n" not in message, f"multi-line error:\n{proc.stderr}"
    assert message.startswith("error: "), message
    return message


@pytest.mark.parametrize(
    ("rev", "code", "words"),
    [
        ("churn@nope", 3, ["nope"]),  # an alias that does not exist: not found
        ("churn:2", 2, ["MODEL@ALIAS", "churn:2"]),  # a version, not an alias: usage
        ("fraud@production", 3, ["fraud"]),  # a model that does not exist
    ],
)
def test_serve_refuses_a_revision_it_cannot_follow(churn_repo, rev, code, words):
    proc = serve(churn_repo, rev)
    message = one_line_error(proc)
    assert proc.returncode == code, message
    for word in words:
        assert word in message
