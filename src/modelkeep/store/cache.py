"""A bounded, verified local read cache in front of a remote backend.

``CachedBackend(inner, folder, max_bytes)`` is itself a ``Backend``. Reads of the
immutable, content-addressed keys (``objects/…``, ``packs/….pack``) are served from
files under ``folder`` once fetched, so loading the same version again on this machine
fetches nothing from the remote store. Everything else — writes, deletes, listings,
ages, existence — goes to ``inner``.

Each cache file is a header (magic, payload length, BLAKE3 of the payload) and the
payload, written to a temp file and renamed into place. A file whose length or digest
does not match is deleted and fetched again: a truncated or damaged cache file is never
served, and it heals instead of failing every read until someone clears the cache.
Files are not fsynced: after a power cut a file may come back short or empty, and the
check above catches exactly that, so the cache need not pay for durability.

Layout under ``folder``::

    blobs/<key>                      a whole blob
    ranges/<key>/<offset>+<length>   a range of a large blob
    ranges/<key>/size                a large blob's length (so a new process asks nothing)
    tmp/                             files being written

Eviction is least-recently-used by file mtime (touched on use, at most once a minute),
in a batch down to 80 % of ``max_bytes`` when a write takes the total over it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import struct
import threading
import time
import uuid
from typing import TYPE_CHECKING

from modelkeep.store.ids import ObjectId

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from modelkeep.store.backends import Backend

# A blob this small is fetched whole at its first range read and served from the file
# afterwards: a pack of small objects is read object by object (and its index first),
# so one request replaces dozens. A larger blob (a pack of up to 64 MiB, a large
# chunk) is cached range by range instead, keyed by (offset, length): the store asks
# for the same ranges every time it loads the same version (they come from the pack
# index), so they hit, and a load never downloads a whole large pack to use a part.
WHOLE_BLOB_MAX = 4 << 20
_LOW_WATER = 0.8
_TOUCH_AFTER = 60.0  # seconds: an mtime fresher than this is left alone
_STALE_TMP = 3600.0  # seconds: a temp file this old was left by a crashed writer
_MAGIC = b"MKCACHE1"
_HEADER = struct.Struct("<8sQ32s")  # magic, payload length, BLAKE3 of the payload
_SIZE = struct.Struct("<Q")
# Only content-addressed keys are cached: their bytes never change under one name.
_CACHEABLE = re.compile(r"(objects|packs)(/[A-Za-z0-9._-]+)+")
_STRIPES = 64


def _cacheable(key: str) -> bool:
    return bool(_CACHEABLE.fullmatch(key)) and ".." not in key.split("/")


class CachedBackend:
    """A read cache over ``inner`` in ``folder``, at most about ``max_bytes`` on disk.

    For write-once backends (S3): a cached blob is trusted to be what the key still
    names. Safe from many threads and from several processes sharing ``folder``.
    """

    def __init__(self, inner: Backend, folder: Path, max_bytes: int) -> None:
        self.inner = inner
        self.folder = folder
        self.max_bytes = max_bytes
        # Bytes of cacheable objects fetched from ``inner`` (what the cache did not save).
        self.fetched_bytes = 0
        self._tmp = folder / "tmp"
        self._lock = threading.Lock()
        self._evicting = threading.Lock()
        # Two threads missing the same key fetch it once (the store reads the objects of
        # one small pack from several threads at once).
        self._fetch_locks = [threading.Lock() for _ in range(_STRIPES)]
        self._total: int | None = None  # bytes on disk; counted at the first write
        # Files verified by this process, by identity: a file is never rewritten in
        # place (a new one is renamed over it), so the same inode and size is the same
        # content, hashed once per process, not at every read.
        self._verified: dict[str, tuple[int, int, int]] = {}
        self._sizes: dict[str, int] = {}

    # -- files ----------------------------------------------------------------------

    def _blob_path(self, key: str) -> Path:
        return self.folder / "blobs" / key

    def _range_dir(self, key: str) -> Path:
        return self.folder / "ranges" / key

    def _fetch_lock(self, path: Path) -> threading.Lock:
        return self._fetch_locks[hash(str(path)) % _STRIPES]

    def _open_valid(self, path: Path) -> tuple[int, int, bytes, bool] | None:
        """An open descriptor of a cache file whose header is sound, its payload length
        and digest, and whether this process has verified the payload already; None
        when absent (or damaged: then it is deleted). The caller closes the fd."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            raw = os.pread(fd, _HEADER.size, 0)
            if len(raw) == _HEADER.size:
                magic, length, digest = _HEADER.unpack(raw)
                if magic == _MAGIC and st.st_size == _HEADER.size + length:
                    if time.time() - st.st_mtime > _TOUCH_AFTER:
                        with contextlib.suppress(OSError):
                            os.utime(path)  # recently used: evicted last
                    ident = (st.st_dev, st.st_ino, st.st_size)
                    return fd, length, digest, self._verified.get(str(path)) == ident
        except OSError:
            pass
        os.close(fd)
        self._discard(path)
        return None

    def _read(self, path: Path, offset: int = 0, length: int | None = None) -> bytes | None:
        """The payload of a valid cache file, or ``length`` bytes of it from ``offset``;
        None when there is none (a damaged one is deleted); EOFError for a range
        past its end. The whole payload is hashed at its first use in this process."""
        opened = self._open_valid(path)
        if opened is None:
            return None
        fd, size, digest, trusted = opened
        try:
            ident = os.fstat(fd)
            want = size - offset if length is None else length
            if offset + want > size:
                raise EOFError(f"wanted {want} bytes at {offset} of {size}")
            if trusted:
                data = _pread_all(fd, want, _HEADER.size + offset)
                ok = len(data) == want
            elif want == size:  # the whole payload: read once, hashed as read
                data = _pread_all(fd, size, _HEADER.size)
                ok = len(data) == size and ObjectId.of(data).raw == digest
            else:
                whole = _pread_all(fd, size, _HEADER.size)
                ok = len(whole) == size and ObjectId.of(whole).raw == digest
                data = whole[offset : offset + want]
        finally:
            os.close(fd)
        if not ok:
            self._discard(path)
            return None
        self._verified[str(path)] = (ident.st_dev, ident.st_ino, ident.st_size)
        return data

    def _write(self, path: Path, payload: bytes) -> None:
        """Store ``payload`` at ``path`` atomically. Never fails the read that fetched
        it: a full disk or a read-only folder only means no caching."""
        if len(payload) + _HEADER.size > self.max_bytes // 2:
            return  # it would push out everything else, and itself next
        header = _HEADER.pack(_MAGIC, len(payload), ObjectId.of(payload).raw)
        tmp = self._tmp / f"{uuid.uuid4().hex}.tmp"
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                for part in (header, payload):
                    view = memoryview(part)
                    while view:
                        view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        self._added(len(header) + len(payload))

    def _discard(self, path: Path) -> None:
        self._verified.pop(str(path), None)
        with contextlib.suppress(OSError):
            path.unlink()

    # -- eviction ---------------------------------------------------------------------

    def _added(self, n: int) -> None:
        with self._lock:
            if self._total is not None:
                self._total += n
                if self._total <= self.max_bytes:
                    return
        self.evict()

    def _files(self) -> Iterator[tuple[float, int, str]]:
        for top in ("blobs", "ranges"):
            for dirpath, _dirs, files in os.walk(self.folder / top):
                for name in files:
                    path = os.path.join(dirpath, name)
                    with contextlib.suppress(OSError):
                        st = os.stat(path)
                        yield st.st_mtime, st.st_size, path

    def evict(self) -> int:
        """Bring the cache under ``max_bytes`` (to 80 % of it, so that eviction runs
        in batches, not at every write), oldest use first; returns the bytes removed.
        Another thread already evicting makes this a no-op."""
        if not self._evicting.acquire(blocking=False):
            return 0
        try:
            files = sorted(self._files())
            total = sum(size for _, size, _ in files)
            removed = 0
            if total > self.max_bytes:
                goal = self.max_bytes * _LOW_WATER
                for _, size, path in files:
                    if total - removed <= goal:
                        break
                    self._verified.pop(path, None)
                    with contextlib.suppress(OSError):
                        os.unlink(path)  # a reader that has it open keeps its bytes
                        removed += size
            self._clean_tmp()
            with self._lock:
                self._total = total - removed
            return removed
        finally:
            self._evicting.release()

    def _clean_tmp(self) -> None:
        now = time.time()
        with contextlib.suppress(OSError):
            for entry in os.scandir(self._tmp):
                with contextlib.suppress(OSError):
                    if now - entry.stat().st_mtime > _STALE_TMP:
                        os.unlink(entry.path)

    def clear(self) -> None:
        """Remove every cached file."""
        for top in ("blobs", "ranges", "tmp"):
            shutil.rmtree(self.folder / top, ignore_errors=True)
        with self._lock:
            self._verified.clear()
            self._sizes.clear()
            self._total = 0

    # -- the Backend protocol --------------------------------------------------------

    def get(self, key: str) -> bytes:
        if not _cacheable(key):
            return self.inner.get(key)
        path = self._blob_path(key)
        data = self._read(path)
        if data is not None:
            return data
        with self._fetch_lock(path):
            data = self._read(path)  # another thread may have fetched it meanwhile
            if data is None:
                data = bytes(self.inner.get(key))
                self.fetched_bytes += len(data)
                self._write(path, data)
        self._sizes[key] = len(data)
        return data

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        if not _cacheable(key):
            return self.inner.get_range(key, offset, length)
        whole = self._blob_path(key)
        try:
            data = self._read(whole, offset, length)
        except EOFError:
            raise EOFError(f"{key}: wanted {length} bytes at {offset}") from None
        if data is not None:
            return data
        size = self.size(key)
        if size <= WHOLE_BLOB_MAX and size + _HEADER.size <= self.max_bytes // 2:
            blob = self.get(key)
            data = blob[offset : offset + length]
            if len(data) != length:
                raise EOFError(f"{key}: wanted {length} bytes at {offset}, got {len(data)}")
            return data
        part = self._range_dir(key) / f"{offset}+{length}"
        data = self._read(part)
        if data is not None and len(data) == length:
            return data
        with self._fetch_lock(part):
            data = self._read(part)
            if data is None or len(data) != length:
                data = bytes(self.inner.get_range(key, offset, length))
                self.fetched_bytes += len(data)
                if len(data) != length:  # a backend must raise EOFError; never cache less
                    raise EOFError(f"{key}: wanted {length} bytes at {offset}, got {len(data)}")
                self._write(part, data)
        return data

    def size(self, key: str) -> int:
        """From the cache when it knows (a content-addressed key's length never
        changes), else from ``inner``: a new process reading a large pack's index then
        asks the remote store nothing."""
        if not _cacheable(key):
            return self.inner.size(key)
        known = self._sizes.get(key)
        if known is not None:
            return known
        # A whole blob's header says its length (checked against the file's).
        opened = self._open_valid(self._blob_path(key))
        if opened is not None:
            os.close(opened[0])
            size = opened[1]
        else:
            record = self._range_dir(key) / "size"
            raw = self._read(record)
            if raw is not None and len(raw) == _SIZE.size:
                size = int(_SIZE.unpack(raw)[0])
            else:
                size = self.inner.size(key)
                if size > WHOLE_BLOB_MAX:  # a small one is cached whole at first use
                    self._write(record, _SIZE.pack(size))
        self._sizes[key] = size
        return size

    def put(self, key: str, data: bytes | memoryview, header: bytes = b"") -> None:
        # Written through only, not kept: the machine that commits has the files
        # already, and a second local copy of every commit would cost disk writes and
        # push out what loads need.
        self.inner.put(key, data, header=header)

    def exists(self, key: str) -> bool:
        # Always asked of the remote store, even for a key cached here: gc on another
        # machine may have deleted it, and a writer that believed the cache would skip
        # storing an object a new version then references.
        return self.inner.exists(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)
        if _cacheable(key):
            self._sizes.pop(key, None)
            self._discard(self._blob_path(key))
            shutil.rmtree(self._range_dir(key), ignore_errors=True)

    def list(self, prefix: str) -> Iterator[str]:
        return self.inner.list(prefix)

    def age_seconds(self, key: str) -> float:
        return self.inner.age_seconds(key)

    def sync(self) -> None:
        self.inner.sync()

    def local_path(self, key: str) -> str | None:
        return None  # cache files carry a header: no kernel-side copies from them


def _pread_all(fd: int, length: int, offset: int) -> bytes:
    """``length`` bytes from ``offset``, or fewer only at the end of the file (one
    pread may return less than asked, e.g. above 2 GiB on Linux)."""
    data = os.pread(fd, length, offset)
    if len(data) == length or not data:
        return data
    parts = [data]
    got = len(data)
    while got < length:
        more = os.pread(fd, length - got, offset + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)
