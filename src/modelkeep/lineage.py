"""Where a version came from: author, code (git) and environment; and who acts."""

from __future__ import annotations

import contextlib
import contextvars
import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from modelkeep.errors import UsageError
from modelkeep.registry.acting import ACTING, Acting
from modelkeep.registry.records import CodeRef

_SENT: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("sent", default={})  # noqa: B039 - never mutated

if TYPE_CHECKING:
    from collections.abc import Iterator

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


# What the registry's columns hold (actor, events.token_id, events.address).
_LIMITS = {"user": 256, "token_id": 32, "address": 64}


@contextlib.contextmanager
def acting_as(
    user: str, token_id: str | None = None, address: str | None = None
) -> Iterator[Acting]:
    """Run the calls inside on behalf of ``user`` (authenticated with token
    ``token_id``, from client ``address``): ``author()`` is ``user`` there, and every
    event written records the three. Per context (thread, asyncio task), so a team
    server wraps each request's engine calls in one."""
    for what, value in (("user", user), ("token_id", token_id), ("address", address)):
        if value is None and what != "user":
            continue
        if not isinstance(value, str) or not value.strip() or not value.isprintable():
            raise UsageError(f"acting {what} must be non-empty printable text")
        if len(value) > _LIMITS[what]:
            raise UsageError(f"acting {what} is longer than {_LIMITS[what]} characters")
    now = Acting(user, token_id, address)
    reset = ACTING.set(now)
    try:
        yield now
    finally:
        ACTING.reset(reset)


@contextlib.contextmanager
def files_sent(shown: dict[str, str]) -> Iterator[None]:
    """Inside, a data file at a path of ``shown`` (a team server's temporary copy of a
    file a client sent) is recorded in lineage as its value (where the client had it),
    not as the temporary path, which is gone once the job ends."""
    reset = _SENT.set({**_SENT.get(), **shown})
    try:
        yield
    finally:
        _SENT.reset(reset)


def data_path(path: Path) -> str:
    """What lineage records as the place of data file ``path`` (see ``files_sent``)."""
    where = str(path.resolve())
    return _SENT.get().get(where, where)


def author() -> str:
    """The acting user inside ``acting_as``; else MODELKEEP_AUTHOR, else git's
    user.name <user.email>, else user@host (found once per process)."""
    now = ACTING.get()
    return now.user if now is not None else _own_author()


@cache
def _own_author() -> str:
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
