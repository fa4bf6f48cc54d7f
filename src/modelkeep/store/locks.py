"""The store lock: writers share it, gc holds it alone.

A commit finds that a chunk exists and skips writing it; if gc deleted that chunk
before the commit published its version, the version would name a missing
object. Writers therefore hold the lock shared from their first write until the
version is published, and gc takes it exclusively.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@contextlib.contextmanager
def _flock(path: Path | None, mode: int) -> Iterator[None]:
    if path is None:  # in-memory repositories have one process
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:
        # A user who may only read the repository: flock needs no write access, and
        # a reader's shared lock still keeps gc out while it reads.
        fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def shared(path: Path | None) -> contextlib.AbstractContextManager[None]:
    return _flock(path, fcntl.LOCK_SH)


def exclusive(path: Path | None) -> contextlib.AbstractContextManager[None]:
    return _flock(path, fcntl.LOCK_EX)
