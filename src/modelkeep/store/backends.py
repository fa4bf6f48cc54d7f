"""Where bytes live: one small protocol, several backends.

A backend stores opaque blobs under slash-separated keys. Everything richer
(chunking, packing, verification) is written once, above, in ``objects.py``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator


class Backend(Protocol):
    """The primitives every backend implements."""

    def get(self, key: str) -> bytes:
        """The whole blob; ``FileNotFoundError`` when absent."""
        ...

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset``; ``FileNotFoundError`` when absent."""
        ...

    def put(self, key: str, data: bytes | memoryview, header: bytes = b"") -> None:
        """Store ``header + data`` atomically: readers see the old blob, or none, or the
        new one whole. (Two parts, so large payloads are never copied to prepend.)"""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove; absent keys are not an error."""
        ...

    def list(self, prefix: str) -> Iterator[str]:
        """Keys starting with ``prefix``, in no particular order."""
        ...

    def age_seconds(self, key: str) -> float:
        """Seconds since the blob was written (gc keeps young blobs)."""
        ...

    def size(self, key: str) -> int:
        """The blob's length in bytes, without reading it; ``FileNotFoundError`` when
        absent."""
        ...

    def sync(self) -> None:
        """Make every completed ``put`` durable (survive power loss)."""
        ...

    def local_path(self, key: str) -> str | None:
        """A path on local disk holding the blob, if the backend has one (for
        kernel-side copies); None otherwise."""
        ...


class Blob(Protocol):
    """A blob being written in pieces: no reader sees it before ``commit()``, and
    ``abort()`` leaves nothing behind."""

    size: int  # bytes written so far, header included

    def write(self, data: bytes | memoryview) -> None: ...

    def commit(self) -> None:
        """Store what was written, durably and atomically, as ``put`` does."""
        ...

    def abort(self) -> None: ...


def open_blob(backend: Backend, key: str, header: bytes = b"") -> Blob:
    """``key`` written in pieces: straight into a temp file on a local disk (a large
    object arriving over the network is never held whole in memory), gathered in
    memory for any other backend, which stores a blob in one ``put``."""
    if isinstance(backend, LocalBackend):
        return backend.open_blob(key, header)
    return _GatheredBlob(backend, key, header)


class _GatheredBlob:
    def __init__(self, backend: Backend, key: str, header: bytes) -> None:
        self._backend, self._key, self._header = backend, key, header
        self._data = bytearray()
        self.size = len(header)

    def write(self, data: bytes | memoryview) -> None:
        self._data += data
        self.size += memoryview(data).nbytes

    def commit(self) -> None:
        self._backend.put(self._key, memoryview(self._data), header=self._header)

    def abort(self) -> None:
        self._data = bytearray()


class FileBlob:
    """A temp file in a ``LocalBackend``, fsynced and renamed into place on commit."""

    def __init__(self, backend: LocalBackend, tmp: Path, final: Path) -> None:
        self._backend, self._tmp, self.final = backend, tmp, final
        self._fd: int | None = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        assert self._fd is not None, "write after commit or abort"
        view = memoryview(data).cast("B")
        self.size += view.nbytes
        while view:
            view = view[os.write(self._fd, view) :]

    def commit(self) -> None:
        assert self._fd is not None, "commit after commit or abort"
        try:
            os.fsync(self._fd)
            self._close()
            os.replace(self._tmp, self.final)
        except BaseException:
            self.abort()
            raise
        self._backend._committed(self.final)

    def abort(self) -> None:
        self._close()
        self._tmp.unlink(missing_ok=True)

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


class LocalBackend:
    """A folder on a local disk; atomic by temp file + fsync + rename."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / "tmp"
        self._dirty_dirs: set[Path] = set()
        self._lock = threading.Lock()
        # Held while folders are fsynced: a batch that finds nothing left to sync must
        # still wait for another batch's sync of its folders to finish.
        self._sync_lock = threading.Lock()

    def _path(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        fd = os.open(self._path(key), os.O_RDONLY)  # no buffered file object: one pread
        try:
            data = os.pread(fd, length, offset)
        finally:
            os.close(fd)
        if len(data) != length:
            raise EOFError(f"{key}: wanted {length} bytes at {offset}, got {len(data)}")
        return data

    def put(self, key: str, data: bytes | memoryview, header: bytes = b"") -> None:
        blob = self.open_blob(key, header)
        try:
            blob.write(data)
        except BaseException:
            blob.abort()  # a disk that filled up gets its space back
            raise
        blob.commit()

    def open_blob(self, key: str, header: bytes = b"") -> FileBlob:
        """``key`` written in pieces into a temp file, renamed into place by ``commit()``."""
        final = self._path(key)
        if not final.parent.is_dir():
            final.parent.mkdir(parents=True, exist_ok=True)
            # A new folder is durable only once its parent's entry for it is.
            with self._lock:
                self._dirty_dirs.add(final.parent.parent)
        self._tmp.mkdir(parents=True, exist_ok=True)
        blob = FileBlob(self, self._tmp / f"{uuid.uuid4().hex}.tmp", final)
        try:
            blob.write(header)
        except BaseException:
            blob.abort()
            raise
        return blob

    def _committed(self, final: Path) -> None:
        with self._lock:
            self._dirty_dirs.add(final.parent)

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def list(self, prefix: str) -> Iterator[str]:
        if not prefix or prefix.endswith("/"):
            base = self._path(prefix)
        else:
            base = self._path(prefix).parent
        if not base.is_dir():
            return
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key

    def age_seconds(self, key: str) -> float:
        return time.time() - self._path(key).stat().st_mtime

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def sync(self) -> None:
        with self._sync_lock:
            with self._lock:
                dirs, self._dirty_dirs = self._dirty_dirs, set()
            for d in dirs:
                fd = os.open(d, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

    def local_path(self, key: str) -> str | None:
        return str(self._path(key))

    def clean_temp(self, older_than: float) -> int:
        """Remove temp files left by crashed writers; returns how many."""
        removed = 0
        if self._tmp.is_dir():
            now = time.time()
            for tmp in self._tmp.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    if now - tmp.stat().st_mtime > older_than:
                        tmp.unlink()
                        removed += 1
        return removed


class MemoryBackend:
    """A dict; for fast unit tests."""

    def __init__(self) -> None:
        self.blobs: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes:
        try:
            return self.blobs[key][0]
        except KeyError:
            raise FileNotFoundError(key) from None

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        data = self.get(key)[offset : offset + length]
        if len(data) != length:
            raise EOFError(f"{key}: wanted {length} bytes at {offset}, got {len(data)}")
        return data

    def put(self, key: str, data: bytes | memoryview, header: bytes = b"") -> None:
        with self._lock:
            self.blobs[key] = (header + bytes(data), time.time())

    def exists(self, key: str) -> bool:
        return key in self.blobs

    def delete(self, key: str) -> None:
        with self._lock:
            self.blobs.pop(key, None)

    def list(self, prefix: str) -> Iterator[str]:
        return iter([k for k in list(self.blobs) if k.startswith(prefix)])

    def age_seconds(self, key: str) -> float:
        return time.time() - self.blobs[key][1]

    def size(self, key: str) -> int:
        return len(self.get(key))

    def sync(self) -> None:
        pass

    def local_path(self, key: str) -> str | None:
        return None
