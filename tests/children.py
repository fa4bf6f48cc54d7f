"""Child interpreters for tests of many processes on one repository: each is a fresh
``python -c SCRIPT ARGS...`` with its own ``Repo``, as separate commands or machines
would be. Imported by name from the test folders (``tests/`` is on the path)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def spawn(script: str, *args: object, cwd: Path, author: str, **env: str) -> subprocess.Popen[str]:
    """Start ``script`` with ``args``; a fixed author, and no git work tree above
    ``cwd`` to describe, so lineage stays quick and quiet. ``env`` adds variables."""
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        cwd=cwd,
        env={
            **os.environ,
            "MODELKEEP_AUTHOR": author,
            "GIT_CEILING_DIRECTORIES": str(cwd),
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float) -> str:
    """The child's stdout once it exited 0; its stderr in the failure otherwise."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"child timed out; stderr:\n{err}") from None
    assert proc.returncode == 0, f"child failed ({proc.returncode}); stderr:\n{err}"
    return out
