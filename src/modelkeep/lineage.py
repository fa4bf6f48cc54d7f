"""Where a version came from: author, code (git) and environment."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import cache
from pathlib import Path

from modelkeep.registry.records import CodeRef

# Packages whose versions decide whether a model loads and behaves the same.
ML_PACKAGES = (
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "skops",
    "joblib",
    "torch",
    "safetensors",
    "onnx",
    "onnxruntime",
    "xgboost",
    "lightgbm",
    "catboost",
    "tensorflow",
    "keras",
    "jax",
    "transformers",
    "modelkeep",
)


def _git(cwd: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@cache
def author() -> str:
    """MODELKEEP_AUTHOR, else git's user.name <user.email>, else user@host."""
    if env := os.environ.get("MODELKEEP_AUTHOR"):
        return env
    name = _git(Path.cwd(), "config", "user.name")
    if name:
        email = _git(Path.cwd(), "config", "user.email")
        return f"{name} <{email}>" if email else name
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def code_ref(cwd: Path | None = None) -> CodeRef | None:
    """The git commit of the work tree around ``cwd`` and whether it is dirty."""
    cwd = cwd or Path.cwd()
    # One call for the top folder, the commit and the branch (each git call costs
    # a process start, tens of ms on a busy machine); it fails outside a work tree
    # and in one without commits.
    out = _git(cwd, "rev-parse", "--show-toplevel", "HEAD", "--abbrev-ref", "HEAD")
    lines = out.splitlines() if out else []
    if len(lines) != 3:
        return None
    top, commit, branch = lines
    # Untracked files do not make a tree dirty (as in `git describe --dirty`).
    status = _git(cwd, "status", "--porcelain", "--untracked-files=no")
    return CodeRef(
        commit=commit,
        dirty=bool(status),
        repository=top,
        branch=branch if branch and branch != "HEAD" else None,
    )


@cache
def _platform() -> dict[str, str]:
    import platform

    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
    }


def environment() -> dict[str, object]:
    """Python, platform and the versions of installed ML packages."""
    from modelkeep.formats.base import versions

    return {**_platform(), "packages": versions(*ML_PACKAGES)}
