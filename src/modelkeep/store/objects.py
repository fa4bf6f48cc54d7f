"""The object store: content-addressed, chunked, compressed when it pays, packed when small.

Layout above a backend:

- ``objects/ab/cdef…``  a loose object: one codec byte, then the payload; or, for a
  large uncompressed one, a page whose first byte is the codec, then the payload, so
  that the payload can be mapped into memory page-aligned (tensors are read in place).
- ``packs/<name>.pack`` many small objects written together, with an index at the end.

Object kinds share one id space: chunks (raw file bytes), file manifests
(ordered chunk ids + sizes) and trees (path → manifest, size, mode). Every read is
verified against the id before a byte is returned; a mapped read (``mapped``) trusts a
loose file this machine verified before while its stat is unchanged (``trust.Ledger``).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import mmap
import os
import struct
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import zstandard

from modelkeep.errors import CorruptObjectError, ObjectMissingError
from modelkeep.store.backends import open_blob
from modelkeep.store.chunking import Chunker, ChunkParams
from modelkeep.store.ids import ObjectId, hasher
from modelkeep.store.trust import Ledger, stat_key

if TYPE_CHECKING:
    from collections.abc import Callable, Container, Iterable, Iterator, Sequence
    from concurrent.futures import Future, ThreadPoolExecutor

    from modelkeep.store.backends import Backend, Blob

    Progress = Callable[[int], None]

RAW, ZSTD, RAW_PAGE = 0, 1, 2
# A raw loose object at least this large gets a whole page of header (RAW_PAGE), so
# that it can be mapped in place: 4 KiB on 1 MiB is 0.4 %.
MAP_MIN = 1 << 20
_PAGE = 4096
_PAGE_HEADER = bytes([RAW_PAGE]) + bytes(_PAGE - 1)
# Objects stored (after compression) in fewer bytes than this go into the batch's pack
# instead of a file of their own: a file costs an fsync, so a 1 MiB chunk that
# compresses to 200 KiB is packed too.
PACK_LIMIT = 256 << 10
# A batch writes its pack once this many bytes wait for it (and starts another), so a
# large compressible file is not held in memory whole.
PACK_FLUSH = 64 << 20
_SAMPLE = 64 << 10
# Compress only when it saves at least this share. Trained float32 weights save
# about 7 % under zstd, which does not pay for decompressing them at every checkout;
# text, sparse and quantised data save far more and are compressed.
_MIN_SAVING = 0.10
# zstd level 1. The chunks of a 98 MiB scikit-learn forest (skops) take 0.31 s of CPU
# at level 1 and keep 19.8 MiB; level 3 takes 0.44 s for 18.0 MiB, level -1 0.27 s for
# 21.4 MiB. Ids name uncompressed content, so the level can change freely.
_LEVEL = 1
_PACK_MAGIC = b"MKPACK1\n"
_IDX_MAGIC = b"MKPIDX1\n"
_IDX_ENTRY = struct.Struct("<32sQIB")  # id, offset, stored length, codec
_IDX_FOOTER = struct.Struct("<QI8s")  # index offset, count, magic
# The last bytes of a pack read to find its index: the footer and an index of up to
# 1,450 objects (a pack of small ones) in one range read; a larger index takes a second.
_PACK_TAIL = 64 << 10
# No object is ever this large (chunks are at most a few tens of MiB, manifests
# a few MiB even for huge files); anything claiming more is damaged.
_MAX_OBJECT = 1 << 30
_WORKERS = max(2, min(8, os.cpu_count() or 2))
# Large objects being written at once, and waiting to be: a flush mostly waits on the
# disk, so more run than there are cores (24 files of 20 MiB, each written and
# fsynced: 0.39-0.47 s from 2 threads, 0.27-0.33 s from 4, on a 2-core machine).
_IO_THREADS = 4
_IO_QUEUE = 8
_SPILL = 1 << 20  # bytes of an arriving object hashed and written at once


def _pool(workers: int, prefix: str = "") -> ThreadPoolExecutor:
    # Imported here: a command that only reads the registry never starts a thread.
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(workers, thread_name_prefix=prefix)


@dataclass(frozen=True, slots=True)
class ChunkRef:
    id: ObjectId
    size: int


@dataclass(frozen=True, slots=True)
class FileManifest:
    """A file's content: its chunks in order. Its own id names the content."""

    id: ObjectId
    size: int
    chunks: tuple[ChunkRef, ...]

    def starts(self) -> list[int]:
        """Where each chunk begins in the file."""
        return list(itertools.accumulate((c.size for c in self.chunks), initial=0))[:-1]


@dataclass(frozen=True, slots=True)
class TreeEntry:
    file: ObjectId
    size: int
    mode: int


@dataclass(frozen=True, slots=True)
class Tree:
    """A version's content: relative POSIX path → file manifest, size and mode."""

    id: ObjectId
    entries: dict[str, TreeEntry] = field(hash=False)

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries.values())


@dataclass(frozen=True, slots=True)
class _PackedAt:
    pack: str
    offset: int
    length: int
    codec: int


def _encode_manifest(size: int, chunks: Iterable[ChunkRef]) -> bytes:
    body = {"type": "file", "size": size, "chunks": [[c.id.hex, c.size] for c in chunks]}
    return json.dumps(body, separators=(",", ":")).encode()


def _encode_tree(entries: dict[str, TreeEntry]) -> bytes:
    body = {
        "type": "tree",
        "entries": {
            p: {"file": e.file.hex, "size": e.size, "mode": e.mode}
            for p, e in sorted(entries.items())
        },
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


class _Compressor:
    """zstd, only when a sample of the input says it will pay."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _zc(self) -> zstandard.ZstdCompressor:
        zc: zstandard.ZstdCompressor | None = getattr(self._local, "zc", None)
        if zc is None:
            zc = self._local.zc = zstandard.ZstdCompressor(level=_LEVEL)
        return zc

    def encode(self, data: bytes | memoryview) -> tuple[int, bytes | memoryview]:
        if len(data) < 64:
            return RAW, data
        zc = self._zc()
        if len(data) > _SAMPLE:
            sample = data[:_SAMPLE]
            if len(zc.compress(sample)) > len(sample) * (1 - _MIN_SAVING):
                return RAW, data
        packed = zc.compress(data)
        if len(packed) > len(data) * (1 - _MIN_SAVING):
            return RAW, data
        return ZSTD, packed


def _decode(codec: int, payload: bytes | memoryview) -> bytes | memoryview:
    if codec == RAW:
        return payload
    if codec == ZSTD:
        # A damaged frame header can declare any size: check it before allocating.
        declared = zstandard.frame_content_size(payload)
        if not 0 <= declared <= _MAX_OBJECT:
            raise ValueError(f"implausible decompressed size {declared}")
        return zstandard.ZstdDecompressor().decompress(payload)
    raise ValueError(f"unknown codec {codec}")


def verified(oid: ObjectId, codec: int, payload: bytes | memoryview) -> bytes | memoryview:
    """The decoded payload of an object as stored (here or elsewhere), if it is the
    content ``oid`` names; CorruptObjectError otherwise."""
    try:
        data = _decode(codec, payload)
    except (zstandard.ZstdError, ValueError, MemoryError):
        raise CorruptObjectError(f"object {oid.short} is corrupted (cannot decode)") from None
    if ObjectId.of(data) != oid:
        raise CorruptObjectError(f"object {oid.short} is corrupted (content does not match)")
    return data


class ObjectWriter:
    """A batch of writes: large objects land as they come, small ones in one pack.

    A large object is written (temp file, fsync, rename) on a pool of I/O threads,
    so that while the disk flushes one object the next is hashed and written: the
    time of a flush is mostly waiting, and a file of many chunks would otherwise wait
    for each in turn. ``flush()`` waits for them; ``close()`` writes the pack, waits
    and makes the folders durable. Nothing written through a batch may be referenced
    by a published version until ``close()`` has returned.
    """

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self._pending: dict[ObjectId, tuple[int, bytes]] = {}
        self._pending_bytes = 0
        self._lock = threading.Lock()
        self._io: ThreadPoolExecutor | None = None
        self._writing: dict[ObjectId, Future[None]] = {}
        # Bounds the payloads waiting for an I/O thread (compressed ones are copies).
        self._room = threading.BoundedSemaphore(_IO_QUEUE)
        self.bytes_written = 0
        self._fresh: list[tuple[ObjectId, os.stat_result]] = []  # for the trust ledger

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self._drain(raise_errors=False)  # no write goes on after the batch failed
        finally:
            self._shutdown()

    def add(self, data: bytes | memoryview, oid: ObjectId | None = None) -> ObjectId:
        """Store ``data`` unless an object with its id exists; returns the id.

        ``data`` must stay unchanged and alive until ``flush()`` or ``close()``."""
        oid = oid or ObjectId.of(data)
        if self._known(oid):
            return oid
        codec, payload = self._store.compressor.encode(data)
        return self._add_encoded(oid, codec, payload)

    def add_stored(self, oid: ObjectId, codec: int, payload: bytes | memoryview) -> ObjectId:
        """Store an object as another store encoded it (``verified`` first: this
        trusts ``oid``), unless it exists: a received object is not encoded again."""
        if self._known(oid):
            return oid
        return self._add_encoded(oid, codec, payload)

    def _known(self, oid: ObjectId) -> bool:
        with self._lock:
            if oid in self._pending or oid in self._writing:
                return True
        return self._store.has(oid, refresh=False)

    def _add_encoded(self, oid: ObjectId, codec: int, payload: bytes | memoryview) -> ObjectId:
        if len(payload) < PACK_LIMIT:
            full = None
            with self._lock:
                if oid not in self._pending:
                    self._pending[oid] = (codec, bytes(payload))
                    self._pending_bytes += len(payload)
                if self._pending_bytes >= PACK_FLUSH:
                    full, self._pending, self._pending_bytes = self._pending, {}, 0
            if full:
                written = self._store.write_pack(full)
                with self._lock:
                    self.bytes_written += written
            return oid
        self._on_io(oid, lambda: self._put(oid, codec, payload))
        return oid

    def _on_io(self, oid: ObjectId, work: Callable[[], None]) -> bool:
        """Run ``work`` (the write of ``oid``) on an I/O thread, unless ``oid`` is being
        written already (False). Waits while the I/O queue is full: it bounds the
        payloads and open files waiting for their turn."""
        self._room.acquire()

        def run() -> None:
            try:
                work()
            finally:
                self._room.release()

        with self._lock:
            if oid in self._writing:
                self._room.release()
                return False
            if self._io is None:
                self._io = _pool(_IO_THREADS, "modelkeep-io")
            self._writing[oid] = self._io.submit(run)
        return True

    def _put(self, oid: ObjectId, codec: int, payload: bytes | memoryview) -> None:
        blob, mappable = self._open(oid, codec, len(payload))
        try:
            blob.write(payload)
        except BaseException:
            blob.abort()
            raise
        self._commit(oid, blob, mappable)

    def _open(self, oid: ObjectId, codec: int, length: int) -> tuple[Blob, bool]:
        """The loose file of a large object, being written; whether it is mappable."""
        mappable = self._store.page_aligned and codec == RAW and length >= MAP_MIN
        header = _PAGE_HEADER if mappable else bytes([codec])
        return open_blob(self._store.backend, _loose_key(oid), header), mappable

    def _commit(self, oid: ObjectId, blob: Blob, mappable: bool) -> None:
        blob.commit()
        path = self._store.backend.local_path(_loose_key(oid)) if mappable else None
        # The bytes just hashed are the bytes written: a mapped read may trust them.
        st = os.stat(path) if path is not None else None
        with self._lock:
            self.bytes_written += blob.size
            if st is not None:
                self._fresh.append((oid, st))

    def receive(self, oid: ObjectId, codec: int, length: int) -> Incoming:
        """An object arriving in pieces, as another store encoded it: a large raw one
        is hashed and written to its file as each piece comes, so that it is never
        whole in memory and the disk works while the network does. It counts only
        once ``done()`` has found it whole and verified."""
        return Incoming(self, oid, codec, length)

    def _commit_later(self, oid: ObjectId, blob: Blob, mappable: bool) -> None:
        """Make a fully written, verified blob durable on an I/O thread."""
        if not self._on_io(oid, lambda: self._commit(oid, blob, mappable)):
            blob.abort()  # the same object, twice in one batch

    def _drain(self, raise_errors: bool) -> None:
        with self._lock:
            writing, self._writing = self._writing, {}
        first: BaseException | None = None
        for future in writing.values():
            error = future.exception()
            if error is not None and first is None:
                first = error
        if first is not None and raise_errors:
            raise first

    def flush(self) -> None:
        """Wait until every large object added so far is written and durable."""
        self._drain(raise_errors=True)

    def close(self) -> None:
        try:
            self.flush()
            if self._pending:
                self.bytes_written += self._store.write_pack(self._pending)
                self._pending, self._pending_bytes = {}, 0
            self._store.backend.sync()
            if self._store.trust is not None:
                self._store.trust.record(self._fresh)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        if self._io is not None:
            self._io.shutdown()
            self._io = None


class Incoming:
    """One object arriving in pieces (``ObjectWriter.receive``): read each piece into
    ``room()`` (or ``write`` it) as it comes, then ``done()``; ``abort()`` if the stream
    breaks off."""

    def __init__(self, writer: ObjectWriter, oid: ObjectId, codec: int, length: int) -> None:
        if not 0 <= length <= _MAX_OBJECT:
            raise CorruptObjectError(f"object {oid.short} is announced at {length} bytes")
        self.oid, self.codec, self.length = oid, codec, length
        self._writer = writer
        self._left = length
        # Small ones go to the batch's pack, compressed ones are verified decoded:
        # both are gathered whole first, as they were before streaming.
        self._streams = codec == RAW and length >= PACK_LIMIT and not writer._known(oid)
        self._hasher = hasher() if self._streams else None
        self._blob: Blob | None = None
        self._mappable = False
        if self._streams:
            self._blob, self._mappable = writer._open(oid, codec, length)
        self._data = bytearray()
        # What the network reads into (``room``): an object that streams is hashed and
        # written from it a MiB at a time, one that is gathered is appended from it.
        self._buffer = bytearray(min(_SPILL, length))
        self._filled = 0

    def room(self) -> memoryview:
        """Where the object's next bytes go (read them in, then ``filled``)."""
        return memoryview(self._buffer)[self._filled : self._filled + self._left]

    def filled(self, count: int) -> None:
        """The first ``count`` bytes of the last ``room`` hold the object's next bytes."""
        assert 0 < count <= min(self._left, len(self._buffer) - self._filled)
        self._filled += count
        self._left -= count
        if self._blob is None:
            self._data += memoryview(self._buffer)[: self._filled]
            self._filled = 0
        # Hashed and written a MiB at a time, not per network read: each call lets go
        # of the GIL and must win it back, and four downloading threads that do that
        # every 64 KiB spend more time waiting for it than hashing.
        elif self._filled == len(self._buffer) or not self._left:
            self._spill()

    def write(self, piece: bytes | memoryview) -> None:
        """The object's next bytes, given rather than read into ``room``."""
        view = memoryview(piece).cast("B")
        if view.nbytes > self._left:
            self.abort()
            raise CorruptObjectError(f"object {self.oid.short} is longer than announced")
        while view:
            room = self.room()
            take = min(len(room), len(view))
            room[:take] = view[:take]
            self.filled(take)
            view = view[take:]

    def _spill(self) -> None:
        assert self._blob is not None
        assert self._hasher is not None
        full = memoryview(self._buffer)[: self._filled]
        self._hasher.update(full)
        self._blob.write(full)
        self._filled = 0

    def done(self) -> None:
        """Store it, if it is whole and the content its id names; CorruptObjectError
        (and nothing stored) otherwise."""
        if self._left:
            self.abort()
            raise CorruptObjectError(f"object {self.oid.short} ended {self._left} bytes short")
        if self._blob is None or self._hasher is None:
            verified(self.oid, self.codec, memoryview(self._data))
            self._writer.add_stored(self.oid, self.codec, bytes(self._data))
            self._data = bytearray()
            return
        if self._hasher.digest() != self.oid.raw:
            self.abort()
            raise CorruptObjectError(
                f"object {self.oid.short} is corrupted (content does not match)"
            )
        blob, self._blob = self._blob, None
        self._writer._commit_later(self.oid, blob, self._mappable)

    def abort(self) -> None:
        if self._blob is not None:
            self._blob.abort()
            self._blob = None
        self._data = bytearray()


T = TypeVar("T")


def _ahead(fetch: Callable[[ObjectId], T], manifest: FileManifest) -> Iterator[T]:
    """``fetch`` of each chunk, in order, running a few chunks ahead on a thread pool
    (hashing and decompression release the GIL)."""
    if len(manifest.chunks) <= 1:
        yield from (fetch(c.id) for c in manifest.chunks)
        return
    with _pool(_WORKERS) as pool:
        window = _WORKERS * 2
        futures = [pool.submit(fetch, c.id) for c in manifest.chunks[:window]]
        nxt = window
        while futures:
            result = futures.pop(0).result()
            if nxt < len(manifest.chunks):
                futures.append(pool.submit(fetch, manifest.chunks[nxt].id))
                nxt += 1
            yield result


@contextlib.contextmanager
def _mapped(path: Path) -> Iterator[memoryview]:
    """A read-only view of the whole file (mmap cannot map an empty file)."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            yield memoryview(b"")
            return
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        view = memoryview(mm)
        try:
            yield view
        finally:
            # Slices of the view may still live (in a failed write's traceback, a pool's
            # queue): the map then goes with them, and the error that got us here is the
            # one to report, not this.
            with contextlib.suppress(BufferError):
                view.release()
                mm.close()


# copy_file_range refuses these (another file system, a kernel or file system without
# it): the bytes then go through a buffer.
_NO_KERNEL_COPY = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM}
_BUFFER = 1 << 20


def _copy_range(src: int, dst: int, src_offset: int, dst_offset: int, size: int) -> None:
    """``size`` bytes of ``src`` from ``src_offset`` into ``dst`` at ``dst_offset``, by the
    kernel where it can."""
    done = 0
    kernel = hasattr(os, "copy_file_range")  # Linux only
    while done < size:
        at, to, want = src_offset + done, dst_offset + done, size - done
        if kernel:
            try:
                n = os.copy_file_range(src, dst, want, at, to)
            except OSError as exc:
                if exc.errno not in _NO_KERNEL_COPY:
                    raise
                n = 0
            if not n:  # refused, or nothing copied where bytes remain: the buffer decides
                kernel = False
                continue
        else:
            data = os.pread(src, min(_BUFFER, want), at)
            _pwrite_all(dst, data, to)
            n = len(data)
        if not n:
            raise CorruptObjectError("a store object ended early while being copied")
        done += n


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def _raw_payload_at(fd: int) -> int | None:
    """Where the payload of an open loose object file starts, if it is stored raw: after
    one codec byte (RAW), or after a page (RAW_PAGE); None for another codec."""
    codec = os.pread(fd, 1, 0)
    if codec == bytes([RAW]):
        return 1
    if codec == bytes([RAW_PAGE]):
        return _PAGE
    return None


def _loose_key(oid: ObjectId) -> str:
    return f"objects/{oid.fanout()}"


class ObjectStore:
    """Chunking, packing and verification, written once above any ``Backend``."""

    def __init__(
        self, backend: Backend, params: ChunkParams | None = None, *, page_aligned: bool = True
    ) -> None:
        self.backend = backend
        # Whether large raw objects are written page-aligned (RAW_PAGE) and may be mapped:
        # a repository of format 1 is also read by modelkeep releases that know only
        # RAW and ZSTD, so it keeps to those.
        self.page_aligned = page_aligned
        self.params = params or ChunkParams()
        self.chunker = Chunker(self.params)
        self.compressor = _Compressor()
        ledger = backend.local_path("verified")
        self.trust = Ledger(Path(ledger)) if ledger is not None and page_aligned else None
        self._packed: dict[ObjectId, _PackedAt] = {}
        self._known_packs: set[str] = set()
        self.damaged_packs: dict[str, str] = {}
        self._index_lock = threading.Lock()

    # -- primitives -------------------------------------------------------------

    def refresh(self) -> None:
        """Forget packs removed (by gc, perhaps on another machine): a writer calls it
        once it holds the store lock, so that ``has`` never vouches for an object from
        an index older than the lock. (New packs are still read only when an object is
        not found: a long-lived process would otherwise read every pack's index.)"""
        if self._known_packs:
            self._refresh_packs(load=False)

    def _refresh_packs(self, load: bool = True) -> None:
        """Bring the pack index in line with the backend: load new packs and forget
        packs that gc (perhaps in another process) has removed, so that ``has`` never
        vouches for an object that is gone."""
        with self._index_lock:
            present = {k for k in self.backend.list("packs/") if k.endswith(".pack")}
            gone = self._known_packs - present
            if gone:
                self._packed = {o: at for o, at in self._packed.items() if at.pack not in gone}
                self._known_packs -= gone
                for key in gone:
                    self.damaged_packs.pop(key, None)
            for key in present - self._known_packs if load else ():
                try:
                    self._load_pack_index(key)
                except CorruptObjectError as exc:
                    # Its objects read as missing; fsck names the pack itself.
                    self.damaged_packs[key] = str(exc)
                    self._known_packs.add(key)

    def _load_pack_index(self, key: str) -> None:
        """Read a pack's index from its end: its magic, footer and index only, so that
        a remote store fetches a few KB per pack, not the pack."""
        size = self.backend.size(key)
        if size < len(_PACK_MAGIC) + _IDX_FOOTER.size:
            raise CorruptObjectError(f"pack {key} is truncated or not a pack")
        tail_at = max(0, size - _PACK_TAIL)
        tail = self.backend.get_range(key, tail_at, size - tail_at)
        head = tail if tail_at == 0 else self.backend.get_range(key, 0, len(_PACK_MAGIC))
        if not head.startswith(_PACK_MAGIC):
            raise CorruptObjectError(f"pack {key} is truncated or not a pack")
        idx_off, count, magic = _IDX_FOOTER.unpack_from(tail, len(tail) - _IDX_FOOTER.size)
        idx_len = count * _IDX_ENTRY.size
        if magic != _IDX_MAGIC or idx_off + idx_len > size:
            raise CorruptObjectError(f"pack {key} has a damaged index")
        if idx_off >= tail_at:
            index, at = tail, idx_off - tail_at
        else:  # an index larger than the tail read: one more read, of the index alone
            index, at = self.backend.get_range(key, idx_off, idx_len), 0
        for i in range(count):
            raw, off, length, codec = _IDX_ENTRY.unpack_from(index, at + i * _IDX_ENTRY.size)
            self._packed[ObjectId.from_bytes(raw)] = _PackedAt(key, off, length, codec)
        self._known_packs.add(key)

    def write_pack(self, objects: dict[ObjectId, tuple[int, bytes]]) -> int:
        """Write ``objects`` (id → codec, payload) as one pack; returns its size."""
        parts = [_PACK_MAGIC]
        index = []
        offset = len(_PACK_MAGIC)
        for oid, (codec, payload) in sorted(objects.items()):
            parts.append(payload)
            index.append(_IDX_ENTRY.pack(oid.raw, offset, len(payload), codec))
            offset += len(payload)
        parts.extend(index)
        parts.append(_IDX_FOOTER.pack(offset, len(index), _IDX_MAGIC))
        blob = b"".join(parts)
        key = f"packs/{uuid.uuid4().hex}.pack"
        self.backend.put(key, blob)
        with self._index_lock:
            self._known_packs.add(key)
            off = len(_PACK_MAGIC)
            for oid, (codec, payload) in sorted(objects.items()):
                self._packed[oid] = _PackedAt(key, off, len(payload), codec)
                off += len(payload)
        return len(blob)

    def has(self, oid: ObjectId, *, refresh: bool = True) -> bool:
        if oid in self._packed or self.backend.exists(_loose_key(oid)):
            return True
        if refresh:
            self._refresh_packs()
        return oid in self._packed

    def _locate(
        self, oid: ObjectId, retry: bool = True, *, mapped: bool = False
    ) -> tuple[int, bytes | memoryview] | None:
        at = self._packed.get(oid)
        if at is None:
            try:
                blob = self._loose(oid, mapped)
            except FileNotFoundError:
                self._refresh_packs()
                at = self._packed.get(oid)
                if at is None:
                    return None
            else:
                if not blob:
                    return (RAW, b"\xff")  # an empty loose file can never verify
                if blob[0] == RAW_PAGE:
                    return RAW, memoryview(blob)[_PAGE:]
                return blob[0], memoryview(blob)[1:]
        try:
            return at.codec, self.backend.get_range(at.pack, at.offset, at.length)
        except (FileNotFoundError, EOFError):
            if not retry:
                return None
        # gc may have repacked the object since we indexed: look again, once.
        self._refresh_packs()
        return self._locate(oid, retry=False, mapped=mapped)

    def _loose(self, oid: ObjectId, mapped: bool) -> bytes | memoryview:
        """A loose object's file, whole: read, or (``mapped``, on a local disk) mapped,
        so that sending it costs no copy into fresh memory (loose files are never
        changed in place: they are replaced by rename, or deleted, which a map outlives)."""
        key = _loose_key(oid)
        path = self.backend.local_path(key) if mapped else None
        if path is None:
            return self.backend.get(key)
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return b""
            return memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))

    def get(self, oid: ObjectId) -> bytes | memoryview:
        """The object's bytes, verified; raises ObjectMissing/CorruptObject otherwise."""
        found = self._locate(oid)
        if found is None:
            if self.damaged_packs:
                # It may well be inside the damaged pack: say so rather than "missing".
                raise CorruptObjectError(
                    f"object {oid.short} cannot be read: "
                    + "; ".join(sorted(self.damaged_packs.values()))
                )
            raise ObjectMissingError(f"object {oid.short} is missing from the store")
        return verified(oid, *found)

    def stored(self, oid: ObjectId) -> tuple[int, bytes | memoryview]:
        """The object as stored (codec, payload), unverified: for sending it to
        another repository, which verifies it on arrival. A loose one on a local disk
        comes mapped (a server sending a clone measured a third less CPU)."""
        found = self._locate(oid, mapped=True)
        if found is None:
            raise ObjectMissingError(f"object {oid.short} is missing from the store")
        return found

    def get_packed(self, oids: Iterable[ObjectId]) -> dict[ObjectId, bytes | memoryview]:
        """Those of ``oids`` that lie in packs, verified, each pack read once: one read
        of the span holding them, unless other objects take up most of it (then one
        read each). The small tensors of a model lie in the pack of its commit."""
        by_pack: dict[str, list[tuple[ObjectId, _PackedAt]]] = {}
        for oid in oids:
            at = self._packed.get(oid)
            if at is not None:
                by_pack.setdefault(at.pack, []).append((oid, at))
        out: dict[ObjectId, bytes | memoryview] = {}
        for pack, members in by_pack.items():
            begin = min(at.offset for _, at in members)
            end = max(at.offset + at.length for _, at in members)
            if end - begin > 2 * sum(at.length for _, at in members):
                continue  # scattered: get() reads them one by one
            try:
                span = memoryview(self.backend.get_range(pack, begin, end - begin))
            except (FileNotFoundError, EOFError):
                continue  # repacked meanwhile: get() finds them again
            for oid, at in members:
                payload = span[at.offset - begin : at.offset - begin + at.length]
                out[oid] = verified(oid, at.codec, payload)
        return out

    def mapped(self, chunk: ChunkRef) -> memoryview | None:
        """The chunk's bytes mapped in place from its loose file, copy-on-write (writes
        to the map never reach the store), or None when it is not a page-aligned raw
        loose object on a local disk (then ``get`` reads it).

        Hashed unless the trust ledger knows the file unchanged since it was written
        or last verified here; a mismatch raises CorruptObjectError."""
        if self.trust is None or chunk.size < MAP_MIN:
            return None  # smaller objects are never stored page-aligned
        path = self.backend.local_path(_loose_key(chunk.id))
        if path is None:
            return None
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None  # packed, or missing: get() tells which
        try:
            st = os.fstat(fd)
            if _raw_payload_at(fd) != _PAGE or st.st_size != _PAGE + chunk.size:
                return None  # another layout, or damaged: get() verifies and says so
            # The whole file from offset 0 (a map's offset must be a multiple of the
            # allocation granularity, more than a page on some platforms); the payload
            # starts one page in, so it is page-aligned all the same.
            mm = mmap.mmap(fd, 0, access=mmap.ACCESS_COPY)
            view = memoryview(mm)[_PAGE:]
            if not self.trust.knows(chunk.id, st):
                if ObjectId.of(view) != chunk.id:
                    view.release()
                    mm.close()
                    raise CorruptObjectError(
                        f"object {chunk.id.short} is corrupted (content does not match)"
                    )
                # Trusted from now on only once durable: a copy never fsynced could come
                # back from a power cut with its stat but not its bytes. (A store that
                # cannot be synced, read-only say, is hashed at every map instead.)
                try:
                    os.fsync(fd)
                except OSError:
                    pass
                else:
                    if stat_key(os.fstat(fd)) == stat_key(st):
                        self.trust.record([(chunk.id, st)])
            return view
        finally:
            os.close(fd)

    def align_from_now(self) -> None:
        """Write large raw objects page-aligned, and map them, from now on (the
        repository has become format 2)."""
        self.page_aligned = True
        if self.trust is None and (ledger := self.backend.local_path("verified")):
            self.trust = Ledger(Path(ledger))

    def unaligned(self) -> list[tuple[ObjectId, int]]:
        """Large raw loose objects of the one-byte-header layout (which a repository of
        format 1 writes) and their sizes, each verified: a damaged one raises
        CorruptObjectError here, before anything is changed. Local disk only."""
        found = []
        for key in self.backend.list("objects/"):
            path = self.backend.local_path(key)
            if path is None:
                return []
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                if _raw_payload_at(fd) != 1 or os.fstat(fd).st_size - 1 < MAP_MIN:
                    continue
            finally:
                os.close(fd)
            oid = ObjectId(key[len("objects/") :].replace("/", ""))
            found.append((oid, len(self.get(oid))))
        return found

    def align_pages(self, oids: Iterable[ObjectId], progress: Progress | None = None) -> int:
        """Rewrite ``oids`` (from ``unaligned``) page-aligned, each read and verified
        again, then replaced by temp file, fsync, rename: a crash leaves each old or
        new, both readable. From now on this store writes and maps page-aligned
        objects. Returns the payload bytes rewritten. Needs the exclusive lock."""
        self.align_from_now()
        size = 0
        fresh: list[tuple[ObjectId, os.stat_result]] = []
        for oid in oids:
            key = _loose_key(oid)
            data = self.get(oid)
            self.backend.put(key, data, header=_PAGE_HEADER)
            path = self.backend.local_path(key)
            if path is not None:
                fresh.append((oid, os.stat(path)))
            size += len(data)
            if progress:
                progress(len(data))
        self.backend.sync()
        if self.trust is not None:
            self.trust.record(fresh)
        return size

    def iter_ids(self) -> Iterator[ObjectId]:
        """Every object in the store, loose and packed (duplicates possible)."""
        self._refresh_packs()
        yield from list(self._packed)
        for key in self.backend.list("objects/"):
            name = key[len("objects/") :].replace("/", "")
            try:
                yield ObjectId(name)
            except ValueError:
                continue

    def writer(self) -> ObjectWriter:
        """A write batch. Call it while holding the store lock shared: the pack index
        is refreshed here, and gc cannot change packs until the lock is released."""
        self._refresh_packs()  # once per batch, not once per chunk
        return ObjectWriter(self)

    # -- files and trees --------------------------------------------------------

    def _store_pieces(
        self,
        pieces: Iterable[memoryview],
        size: int,
        writer: ObjectWriter,
        progress: Progress | None,
    ) -> FileManifest:
        """Store each piece as one chunk (hashing, compressing and writing on a thread
        pool: all three release the GIL) and the manifest listing them in order.
        ``pieces`` may be lazy: the pool starts on the first while the rest are cut."""

        def put(piece: memoryview) -> ChunkRef:
            ref = ChunkRef(writer.add(piece), len(piece))
            if progress:
                progress(len(piece))
            return ref

        if size > self.params.max_size:  # more than one chunk, surely
            with _pool(_WORKERS) as pool:
                chunks = tuple(pool.map(put, pieces))
        else:
            chunks = tuple(put(p) for p in pieces)
        body = _encode_manifest(size, chunks)
        manifest = FileManifest(writer.add(body), size, chunks)
        writer.flush()  # the pieces may be views of a mapping about to close
        return manifest

    def store_buffer(
        self, buf: memoryview, writer: ObjectWriter, progress: Progress | None = None
    ) -> FileManifest:
        """Chunk, hash and store ``buf``; only chunks not already stored are written."""
        pieces = (buf[off : off + length] for off, length in self.chunker.iter_spans(buf))
        return self._store_pieces(pieces, len(buf), writer, progress)

    def store_parts(
        self,
        parts: Sequence[memoryview],
        writer: ObjectWriter,
        progress: Progress | None = None,
        *,
        segmented: bool = False,
    ) -> FileManifest:
        """Store a file held in memory as consecutive ``parts``, never joining them.

        ``segmented``: the parts are the file's format-aware segments — a safetensors
        header, then each tensor in file order, exactly what ``Chunker.spans`` finds in
        the joined bytes — so each is cut alone and the manifest is the one the joined
        file would get. Otherwise there must be one part, chunked as a file is.
        """
        if not segmented:
            if len(parts) != 1:
                raise ValueError("unsegmented content comes as one part")
            return self.store_buffer(parts[0], writer, progress)
        pieces = (
            part[off : off + length] for part in parts for off, length in self.chunker.cut(part)
        )
        return self._store_pieces(pieces, sum(len(p) for p in parts), writer, progress)

    def store_file(
        self, path: Path, writer: ObjectWriter, progress: Progress | None = None
    ) -> FileManifest:
        with _mapped(path) as view:
            return self.store_buffer(view, writer, progress)

    def manifest_of(self, buf: memoryview) -> ObjectId:
        """The id a buffer would have as a file, without storing anything."""
        chunks = [ChunkRef(ObjectId.of(buf[o : o + n]), n) for o, n in self.chunker.spans(buf)]
        return ObjectId.of(_encode_manifest(len(buf), chunks))

    def manifest_of_file(self, path: Path) -> ObjectId:
        with _mapped(path) as view:
            return self.manifest_of(view)

    def _json(self, oid: ObjectId, kind: str) -> dict[str, Any]:
        try:
            body = json.loads(bytes(self.get(oid)))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise CorruptObjectError(f"object {oid.short} is not a {kind}") from None
        if not isinstance(body, dict) or body.get("type") != kind:
            raise CorruptObjectError(f"object {oid.short} is not a {kind}")
        return body

    def file_manifest(self, oid: ObjectId) -> FileManifest:
        body = self._json(oid, "file")
        chunks = tuple(ChunkRef(ObjectId(h), n) for h, n in body["chunks"])
        return FileManifest(oid, int(body["size"]), chunks)

    def put_tree(self, entries: dict[str, TreeEntry], writer: ObjectWriter) -> Tree:
        return Tree(writer.add(_encode_tree(entries)), dict(sorted(entries.items())))

    def tree(self, oid: ObjectId) -> Tree:
        body = self._json(oid, "tree")
        entries = {
            p: TreeEntry(ObjectId(e["file"]), int(e["size"]), int(e["mode"]))
            for p, e in body["entries"].items()
        }
        return Tree(oid, entries)

    def iter_chunks(self, manifest: FileManifest) -> Iterator[bytes | memoryview]:
        """The file's chunks in order, verified, read ahead on a thread pool."""
        yield from _ahead(self.get, manifest)

    def _copy_chunk(self, chunk: ChunkRef, fd: int, offset: int) -> int:
        """Write one verified chunk into ``fd`` at ``offset``; returns its size.

        A raw loose object on local disk is copied by the kernel, then hashed where it
        lies. Anything else is read whole, verified, then written."""
        path = self.backend.local_path(_loose_key(chunk.id))
        src = None
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                src = os.open(path, os.O_RDONLY)
        if src is None:
            _pwrite_all(fd, self.get(chunk.id), offset)
            return chunk.size
        try:
            header = _raw_payload_at(src)
            if header is None:
                _pwrite_all(fd, self.get(chunk.id), offset)
                return chunk.size
            if os.fstat(src).st_size - header != chunk.size:
                raise CorruptObjectError(
                    f"object {chunk.id.short} is corrupted (its size does not match)"
                )
            # The kernel copies the bytes (as cp does), then the source is hashed where it
            # lies, on every core: a mismatch raises, and the caller discards the file.
            # Store files are never written in place, so the bytes hashed are the bytes
            # copied.
            _copy_range(src, fd, header, offset, chunk.size)
            with mmap.mmap(src, 0, access=mmap.ACCESS_READ) as mm:
                view = memoryview(mm)[header:]
                try:
                    got = ObjectId.of(view)
                finally:
                    view.release()
        finally:
            os.close(src)
        if got != chunk.id:
            raise CorruptObjectError(
                f"object {chunk.id.short} is corrupted (content does not match)"
            )
        return chunk.size

    def write_file(self, manifest: FileManifest, fd: int, progress: Progress | None = None) -> None:
        """Write the file's verified content into ``fd``, a regular file, from offset 0.

        Chunks are copied on a thread pool, each at its own offset (hashing and
        copying release the GIL). On an error the file holds part of the content,
        perhaps a chunk that did not verify: the caller discards it."""
        offsets = manifest.starts()

        def copy(i: int) -> int:
            return self._copy_chunk(manifest.chunks[i], fd, offsets[i])

        if len(manifest.chunks) > 1:
            with _pool(_WORKERS) as pool:
                sizes = pool.map(copy, range(len(manifest.chunks)))
                for n in sizes:
                    if progress:
                        progress(n)
        else:
            for i in range(len(manifest.chunks)):
                n = copy(i)
                if progress:
                    progress(n)

    def read_range(self, manifest: FileManifest, begin: int, end: int) -> bytes:
        """Bytes ``begin:end`` of a file, reading (and verifying) only the chunks needed."""
        parts = []
        offset = 0
        for chunk in manifest.chunks:
            lo, hi = offset, offset + chunk.size
            offset = hi
            if hi <= begin or lo >= end:
                continue
            data = self.get(chunk.id)
            parts.append(bytes(data[max(begin - lo, 0) : min(end, hi) - lo]))
            if hi >= end:
                break
        return b"".join(parts)

    def chunks_of_range(self, manifest: FileManifest, begin: int, end: int) -> tuple[ChunkRef, ...]:
        """The chunks holding bytes ``begin:end`` (equal tuples ⇒ equal bytes when the
        ranges are aligned to chunk boundaries, as safetensors tensors are)."""
        out = []
        offset = 0
        for chunk in manifest.chunks:
            lo, hi = offset, offset + chunk.size
            offset = hi
            if hi > begin and lo < end:
                out.append((chunk, lo - begin, hi - end))
        return tuple(c for c, _, _ in out) if out and out[0][1] == 0 and out[-1][2] == 0 else ()

    # -- maintenance ------------------------------------------------------------

    def walk(
        self, tree: ObjectId, *, partial: bool = False, skip: Container[ObjectId] = ()
    ) -> Iterator[tuple[ObjectId, int]]:
        """The objects ``tree`` reaches, each with its size (a chunk's; 0 for the tree
        and the file manifests): the tree, then each file's manifest and its chunks.
        ``partial``: a tree or manifest not here stands for itself alone (what it names
        is known once it is here). ``skip``: manifests not to walk again."""
        yield tree, 0
        if partial and not self.has(tree, refresh=False):
            return
        for entry in self.tree(tree).entries.values():
            if entry.file in skip:
                continue
            yield entry.file, 0
            if partial and not self.has(entry.file, refresh=False):
                continue
            yield from ((c.id, c.size) for c in self.file_manifest(entry.file).chunks)

    def referenced_by(self, tree_ids: Iterable[ObjectId]) -> set[ObjectId]:
        """Every object reachable from the given trees."""
        live: set[ObjectId] = set()
        for tid in tree_ids:
            if tid not in live:
                # A manifest is walked once however many versions share its file.
                for oid, _ in self.walk(tid, skip=live):
                    live.add(oid)
        return live

    def collect_garbage(self, live: set[ObjectId], min_age: float = 0.0) -> tuple[int, int]:
        """Delete objects not in ``live``; returns (objects removed, bytes freed).

        The caller must hold the store's exclusive lock so no writer is mid-batch.
        Packs holding garbage are rewritten into one pack of the live objects.
        """
        removed = freed = 0
        for key in list(self.backend.list("objects/")):
            oid = ObjectId(key[len("objects/") :].replace("/", ""))
            if oid not in live and self.backend.age_seconds(key) >= min_age:
                freed += self.backend.size(key)
                self.backend.delete(key)
                removed += 1
        self._refresh_packs()
        dead = {
            p
            for p, ids in self._pack_members().items()
            if any(o not in live for o in ids) and self.backend.age_seconds(p) >= min_age
        }
        dropped, dropped_bytes = self._rewrite_packs(dead, keep=live.__contains__)
        if removed and self.trust is not None:
            self.trust.prune(lambda oid: self.backend.exists(_loose_key(oid)))
        return removed + dropped, freed + dropped_bytes

    def _pack_members(self) -> dict[str, list[ObjectId]]:
        packs: dict[str, list[ObjectId]] = {}
        for oid, at in self._packed.items():
            packs.setdefault(at.pack, []).append(oid)
        return packs

    def _rewrite_packs(
        self, packs: set[str], keep: Callable[[ObjectId], bool], quarantine: bool = False
    ) -> tuple[int, int]:
        """Rewrite ``packs`` into one pack of the objects ``keep`` accepts; the rest are
        dropped (or, with ``quarantine``, saved under quarantine/). Returns (dropped,
        bytes). Needs the store's exclusive lock."""
        if not packs:
            return 0, 0
        members = self._pack_members()
        kept: dict[ObjectId, tuple[int, bytes]] = {}
        dropped = freed = 0
        for p in packs:
            for oid in members.get(p, []):
                at = self._packed[oid]
                payload = self.backend.get_range(p, at.offset, at.length)
                if keep(oid):
                    kept[oid] = (at.codec, payload)
                    continue
                if quarantine:
                    self.backend.put(f"quarantine/{oid.hex}", payload, header=bytes([at.codec]))
                dropped += 1
                freed += at.length
        if kept:
            self.write_pack(kept)
        self.backend.sync()
        with self._index_lock:
            for p in packs:
                for oid in members.get(p, []):
                    if oid in self._packed and self._packed[oid].pack == p:
                        del self._packed[oid]
                self._known_packs.discard(p)
        for p in packs:
            self.backend.delete(p)
        return dropped, freed

    def quarantine(self, oids: Iterable[ObjectId]) -> int:
        """Move damaged objects out of the store (to quarantine/), so that committing
        the original content again stores it afresh. Needs the exclusive lock."""
        bad = set(oids)
        moved = 0
        for oid in bad:
            key = _loose_key(oid)
            try:
                blob = self.backend.get(key)
            except FileNotFoundError:
                continue
            self.backend.put(f"quarantine/{oid.hex}", blob)
            self.backend.delete(key)
            moved += 1
        self._refresh_packs()
        packs = {at.pack for oid, at in self._packed.items() if oid in bad}
        dropped, _ = self._rewrite_packs(packs, keep=lambda o: o not in bad, quarantine=True)
        return moved + dropped
