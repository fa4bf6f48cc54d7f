"""S3Backend and CachedBackend against a real S3 server (moto), no mocks.

moto keeps objects in memory: every test works under its own prefix of one bucket,
keeps its objects small and removes them when it ends.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

pytest.importorskip("obstore")

import services  # tests/ is on sys.path (tests/conftest.py)
from modelkeep.errors import CorruptObjectError, UnreachableError
from modelkeep.store import ChunkParams, MemoryBackend, ObjectId, ObjectStore, objects
from modelkeep.store import cache as cache_module
from modelkeep.store.cache import CachedBackend
from modelkeep.store.s3 import MULTIPART_THRESHOLD, PART_SIZE, S3Backend

if TYPE_CHECKING:
    from collections.abc import Callable

# Chunks of 64 KiB to 1 MiB: the small ones land in packs, the larger ones loose.
MEDIUM = ChunkParams(
    min_size=64 << 10, avg_size=256 << 10, max_size=1 << 20, max_tensor_chunk=1 << 20
)
MIB = 1 << 20


def _random(seed: int, size: int) -> bytes:
    return np.random.default_rng(seed).bytes(size)


@pytest.fixture(scope="module")
def bucket(s3_server: Any) -> str:
    return str(s3_server.new_bucket("s3test"))


@pytest.fixture
def s3(bucket: str) -> Any:
    backend = S3Backend.from_url(f"s3://{bucket}/t-{uuid.uuid4().hex[:10]}")
    yield backend
    for key in list(backend.list("")):
        backend.delete(key)


class Counting:
    """A backend that counts the requests (and bytes read) reaching the one it wraps;
    ``misses`` counts those that found no such key."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()
        self.bytes_read = 0
        self._lock = threading.Lock()

    def _call(self, name: str, fn: Any, *args: Any) -> Any:
        with self._lock:
            self.calls[name] += 1
        try:
            result = fn(*args)
        except FileNotFoundError:
            with self._lock:
                self.misses[name] += 1
            raise
        if isinstance(result, bytes | memoryview):
            with self._lock:
                self.bytes_read += len(result)
        return result

    def reset(self) -> None:
        self.calls.clear()
        self.misses.clear()
        self.bytes_read = 0

    @property
    def fetches(self) -> int:
        """Requests that found a blob (data or metadata); listings and misses aside."""
        return sum(n - self.misses[name] for name, n in self.calls.items() if name != "list")

    def get(self, key: str) -> bytes:
        return self._call("get", self.inner.get, key)  # type: ignore[no-any-return]

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        return self._call("get_range", self.inner.get_range, key, offset, length)  # type: ignore[no-any-return]

    def put(self, key: str, data: bytes | memoryview, header: bytes = b"") -> None:
        self._call("put", lambda: self.inner.put(key, data, header=header))

    def exists(self, key: str) -> bool:
        return bool(self._call("exists", self.inner.exists, key))

    def size(self, key: str) -> int:
        return int(self._call("size", self.inner.size, key))

    def delete(self, key: str) -> None:
        self._call("delete", self.inner.delete, key)

    def list(self, prefix: str) -> Any:
        return self._call("list", self.inner.list, prefix)

    def age_seconds(self, key: str) -> float:
        return float(self._call("age_seconds", self.inner.age_seconds, key))

    def sync(self) -> None:
        self.inner.sync()

    def local_path(self, key: str) -> str | None:
        return None


def _fetched_nothing(counted: Counting) -> None:
    """No byte and no metadata of any blob came from the remote store. What may reach
    it: listings of the packs (gc elsewhere may have removed some), and the probes the
    store makes for a loose copy of the objects it looks up before it has read the pack
    indexes — 404s that find nothing, so a cache could not answer them. They stop once
    the indexes are loaded: at most one per thread reading ahead."""
    assert counted.bytes_read == 0, counted.calls
    assert counted.fetches == 0, (counted.calls, counted.misses)
    probes = counted.misses["get"]
    assert probes <= 2 * objects._WORKERS, counted.misses
    assert counted.calls["list"] <= max(1, probes), counted.calls


def _commit(store: ObjectStore, path: Path) -> tuple[Any, int]:
    with store.writer() as writer:
        manifest = store.store_file(path, writer)
    return manifest, writer.bytes_written


def _read_back(store: ObjectStore, manifest: Any) -> bytes:
    return b"".join(bytes(c) for c in store.iter_chunks(manifest))


# -- the backend's primitives ---------------------------------------------------------


def test_round_trip(s3: S3Backend) -> None:
    s3.put("objects/ab/cdef", memoryview(b"payload"), header=b"\x01")
    assert s3.get("objects/ab/cdef") == b"\x01payload"
    assert s3.get_range("objects/ab/cdef", 1, 3) == b"pay"
    assert s3.get_range("objects/ab/cdef", 0, 0) == b""
    assert s3.size("objects/ab/cdef") == 8
    assert s3.exists("objects/ab/cdef")
    assert 0 <= s3.age_seconds("objects/ab/cdef") < 60
    s3.put("packs/p1.pack", b"pack")
    assert sorted(s3.list("")) == ["objects/ab/cdef", "packs/p1.pack"]
    assert list(s3.list("objects/")) == ["objects/ab/cdef"]
    # A prefix that ends inside a name matches as the local backend's does.
    assert list(s3.list("packs/p")) == ["packs/p1.pack"]
    assert list(s3.list("objects/ab/cd")) == ["objects/ab/cdef"]
    assert list(s3.list("nothing/")) == []
    s3.delete("objects/ab/cdef")
    s3.delete("objects/ab/cdef")  # absent: not an error
    assert not s3.exists("objects/ab/cdef")
    assert s3.local_path("packs/p1.pack") is None
    s3.sync()


def test_missing_keys_and_short_ranges(s3: S3Backend) -> None:
    for call in (
        lambda: s3.get("objects/zz/none"),
        lambda: s3.get_range("objects/zz/none", 0, 4),
        lambda: s3.get_range("objects/zz/none", 0, 0),
        lambda: s3.size("objects/zz/none"),
        lambda: s3.age_seconds("objects/zz/none"),
    ):
        with pytest.raises(FileNotFoundError, match="objects/zz/none"):
            call()
    s3.put("objects/ab/short", b"12345")
    with pytest.raises(EOFError):
        s3.get_range("objects/ab/short", 3, 10)  # S3 would give back 2 bytes
    with pytest.raises(EOFError):
        s3.get_range("objects/ab/short", 50, 1)  # past the end: HTTP 416


def test_put_is_write_once(s3: S3Backend) -> None:
    """A key that exists holds what another writer stored: a second put returns
    quietly and leaves it as it is (If-None-Match: *)."""
    s3.put("quarantine/abc", b"first")
    s3.put("quarantine/abc", b"second")
    assert s3.get("quarantine/abc") == b"first"


def _race(writers: int, write: Callable[[], None]) -> list[BaseException]:
    """Run ``write`` in ``writers`` threads released at once; what they raised."""
    start = threading.Barrier(writers)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            start.wait()
            write()
        except BaseException as exc:  # reported by the caller, with the others
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_conditional_put_race(s3: S3Backend) -> None:
    data = _random(1, 512 << 10)
    assert _race(4, lambda: s3.put("objects/ra/ce", data, header=b"\x00")) == []
    assert s3.get("objects/ra/ce") == b"\x00" + data


def test_multipart_put(s3: S3Backend) -> None:
    """A payload above the threshold goes as parallel parts, header and data unjoined;
    it reads back whole, and across a part boundary."""
    data = _random(2, 20 * MIB)
    assert len(data) > MULTIPART_THRESHOLD
    s3.put("objects/bi/g", memoryview(data), header=b"\x00")
    assert s3.size("objects/bi/g") == len(data) + 1
    assert s3.get("objects/bi/g") == b"\x00" + data
    edge = PART_SIZE - 10
    assert s3.get_range("objects/bi/g", edge, 20) == (b"\x00" + data)[edge : edge + 20]
    s3.put("objects/bi/g", memoryview(data), header=b"\x00")  # exists: nothing sent
    s3.delete("objects/bi/g")


def test_multipart_race(s3: S3Backend) -> None:
    data = _random(3, 10 * MIB)
    assert _race(2, lambda: s3.put("objects/bi/race", data)) == []
    assert s3.get("objects/bi/race") == data
    s3.delete("objects/bi/race")


# -- the object store over S3 ------------------------------------------------------------


def test_object_store_over_s3(s3: S3Backend, tmp_path: Path) -> None:
    content = _random(4, 3 * MIB)
    path = tmp_path / "model.bin"
    path.write_bytes(content)
    store = ObjectStore(s3, MEDIUM, page_aligned=False)
    manifest, written = _commit(store, path)
    assert len(manifest.chunks) > 3
    assert written >= len(content)
    assert any(k.startswith("packs/") for k in s3.list("packs/"))
    assert any(k.startswith("objects/") for k in s3.list("objects/"))

    fresh = ObjectStore(s3, MEDIUM, page_aligned=False)  # another process, say
    assert _read_back(fresh, fresh.file_manifest(manifest.id)) == content
    out = tmp_path / "out.bin"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        fresh.write_file(manifest, fd)
    finally:
        os.close(fd)
    assert out.read_bytes() == content

    again, written = _commit(fresh, path)
    assert again == manifest
    assert written == 0


def test_pack_index_is_read_from_the_end(s3: S3Backend) -> None:
    """Opening a store reads a few KB per pack (its index), not the pack; an index
    larger than one tail read takes a second read."""
    small = [_random(100 + i, 3000) for i in range(1600)]  # 1,600 index entries: 72 KB
    ids = [ObjectId.of(blob) for blob in small]
    ObjectStore(s3, MEDIUM, page_aligned=False).write_pack(
        {oid: (objects.RAW, blob) for oid, blob in zip(ids, small, strict=True)}
    )
    (pack,) = list(s3.list("packs/"))
    assert s3.size(pack) > 4 * MIB

    counted = Counting(s3)
    fresh = ObjectStore(counted, MEDIUM, page_aligned=False)
    assert fresh.has(ids[0])
    assert counted.calls["get"] == 0
    assert counted.calls["get_range"] == 3  # the magic, the tail, the rest of the index
    assert counted.bytes_read < 160 << 10
    picked = range(0, len(ids), 200)
    assert all(bytes(fresh.get(ids[i])) == small[i] for i in picked)


def test_damaged_pack_reads_as_corrupt(s3: S3Backend) -> None:
    store = ObjectStore(s3, MEDIUM, page_aligned=False)
    with store.writer() as writer:
        oid = writer.add(_random(5, 4000))
    (pack,) = list(s3.list("packs/"))
    blob = s3.get(pack)
    s3.delete(pack)
    s3.put(pack, blob[:-4] + b"XXXX")  # the footer's magic
    fresh = ObjectStore(s3, MEDIUM, page_aligned=False)
    with pytest.raises(CorruptObjectError, match="damaged index"):
        fresh.get(oid)


# -- the local read cache ------------------------------------------------------------------


@pytest.fixture(params=["whole", "ranges"])
def whole_max(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Both ways the cache keeps packs: whole (small packs), or range by range."""
    limit = cache_module.WHOLE_BLOB_MAX if request.param == "whole" else 16 << 10
    monkeypatch.setattr(cache_module, "WHOLE_BLOB_MAX", limit)
    return limit


def _committed(s3: S3Backend, tmp_path: Path, seed: int = 6) -> tuple[Any, bytes]:
    content = _random(seed, 3 * MIB)
    path = tmp_path / f"model-{seed}.bin"
    path.write_bytes(content)
    manifest, _ = _commit(ObjectStore(s3, MEDIUM, page_aligned=False), path)
    return manifest, content


def _load(backend: Any, manifest_id: Any) -> bytes:
    """A load as a new process does it: a new store, the manifest, then every chunk."""
    store = ObjectStore(backend, MEDIUM, page_aligned=False)
    manifest = store.file_manifest(manifest_id)
    packed = store.get_packed(c.id for c in manifest.chunks)
    return b"".join(
        bytes(packed[c.id]) if c.id in packed else bytes(store.get(c.id)) for c in manifest.chunks
    )


def test_cache_second_load_fetches_nothing(s3: S3Backend, tmp_path: Path, whole_max: int) -> None:
    manifest, content = _committed(s3, tmp_path)
    counted = Counting(s3)
    folder = tmp_path / "cache"

    assert _load(CachedBackend(counted, folder, 64 * MIB), manifest.id) == content
    first = counted.fetches
    assert first > 0

    counted.reset()
    # A new CachedBackend over the same folder: a new process on the same machine.
    assert _load(CachedBackend(counted, folder, 64 * MIB), manifest.id) == content
    _fetched_nothing(counted)


def test_cache_never_serves_a_damaged_file(s3: S3Backend, tmp_path: Path, whole_max: int) -> None:
    manifest, content = _committed(s3, tmp_path, seed=7)
    counted = Counting(s3)
    folder = tmp_path / "cache"
    assert _load(CachedBackend(counted, folder, 64 * MIB), manifest.id) == content
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    assert files
    for i, f in enumerate(files):  # truncate half of them, flip a byte in the rest
        if i % 2:
            with open(f, "r+b") as fh:
                fh.truncate(max(1, f.stat().st_size // 2))
        else:
            raw = bytearray(f.read_bytes())
            raw[-1] ^= 0xFF
            f.write_bytes(bytes(raw))

    counted.reset()
    assert _load(CachedBackend(counted, folder, 64 * MIB), manifest.id) == content
    assert counted.calls["get"] + counted.calls["get_range"] > 0  # fetched again
    counted.reset()
    assert _load(CachedBackend(counted, folder, 64 * MIB), manifest.id) == content
    _fetched_nothing(counted)  # and healed


def test_cache_corruption_inside_the_remote_is_still_caught(s3: S3Backend, tmp_path: Path) -> None:
    """The cache checks its own files; the store still checks every object's hash, so
    bytes damaged before they reached the cache raise rather than load."""
    store = ObjectStore(s3, MEDIUM, page_aligned=False)
    with store.writer() as writer:
        oid = writer.add(_random(8, 512 << 10))  # loose: above the pack limit
    key = f"objects/{oid.fanout()}"
    blob = bytearray(s3.get(key))
    blob[100] ^= 0xFF
    s3.delete(key)
    s3.put(key, bytes(blob))
    cached = ObjectStore(CachedBackend(s3, tmp_path / "cache", 64 * MIB), page_aligned=False)
    with pytest.raises(CorruptObjectError):
        cached.get(oid)


def test_cache_bounded_and_write_through(s3: S3Backend, tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    cached = CachedBackend(s3, folder, max_bytes=1 * MIB)
    blobs = {f"objects/aa/{i:04d}": _random(200 + i, 100 << 10) for i in range(20)}
    for key, blob in blobs.items():
        cached.put(key, blob)  # straight to S3
        assert s3.get(key) == blob
    for key, blob in blobs.items():
        assert cached.get(key) == blob
        time.sleep(0.001)
    on_disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert on_disk <= 1 * MIB
    # The most recently used are the ones kept.
    assert (folder / "blobs" / "objects/aa/0019").exists()
    assert not (folder / "blobs" / "objects/aa/0000").exists()

    cached.delete("objects/aa/0019")
    assert not (folder / "blobs" / "objects/aa/0019").exists()
    assert not s3.exists("objects/aa/0019")
    with pytest.raises(FileNotFoundError):
        cached.get("objects/aa/0019")
    # Not content-addressed: never cached.
    cached.put("quarantine/x", b"damaged")
    assert cached.get("quarantine/x") == b"damaged"
    assert not (folder / "blobs" / "quarantine").exists()


def test_cache_over_memory_backend(tmp_path: Path) -> None:
    """The cache is a Backend like any other: the store's own round trip through it."""
    inner = Counting(MemoryBackend())
    cached = CachedBackend(inner, tmp_path / "cache", 64 * MIB)
    store = ObjectStore(cached, MEDIUM, page_aligned=False)
    content = _random(9, 2 * MIB)
    with store.writer() as writer:
        manifest = store.store_buffer(memoryview(content), writer)
    assert _read_back(store, manifest) == content
    inner.reset()
    assert _read_back(ObjectStore(cached, MEDIUM, page_aligned=False), manifest) == content
    _fetched_nothing(inner)


# -- errors ---------------------------------------------------------------------------------


def test_missing_bucket(s3_server: Any) -> None:
    backend = S3Backend.from_url("s3://mk-no-such-bucket/repo")
    for call in (
        backend.check,
        lambda: backend.get("objects/ab/cd"),
        lambda: backend.put("k", b"x"),
    ):
        with pytest.raises(UnreachableError) as info:
            call()
        message = str(info.value)
        assert "s3://mk-no-such-bucket/repo" in message
        assert s3_server.endpoint in message
        assert "create the bucket" in message
        assert "\n" not in message


def test_endpoint_down(bucket: str) -> None:
    endpoint = f"http://127.0.0.1:{services.free_port()}"  # nothing listens there
    backend = S3Backend.from_url(f"s3://{bucket}/repo", endpoint=endpoint)
    for call in (backend.check, lambda: backend.exists("objects/ab/cd")):
        began = time.monotonic()
        with pytest.raises(UnreachableError) as info:
            call()
        assert time.monotonic() - began < 10
        message = str(info.value)
        assert f"s3://{bucket}/repo" in message
        assert endpoint in message
        assert "is the endpoint up" in message


@pytest.fixture(scope="module")
def strict_s3(tmp_path_factory: pytest.TempPathFactory, s3_server: Any) -> Any:
    """A second moto server that checks credentials: moto accepts any unless told to
    authenticate after the first N requests (the one that creates the bucket)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "1")
        server = services.start_s3(tmp_path_factory.mktemp("moto-auth") / "moto.log")
    try:
        yield server, server.new_bucket("auth")
    finally:
        server.stop()


def test_wrong_credentials(strict_s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    server, bucket = strict_s3
    secret = "not-the-secret-" + uuid.uuid4().hex
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOTAKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    backend = S3Backend.from_url(f"s3://{bucket}/repo", endpoint=server.endpoint)
    for call in (
        backend.check,
        lambda: backend.get("objects/ab/cd"),
        lambda: backend.put("k", b"x"),
    ):
        with pytest.raises(UnreachableError) as info:
            call()
        message = str(info.value)
        assert f"s3://{bucket}/repo" in message
        assert "AWS_ACCESS_KEY_ID" in message
        assert secret not in message


def test_no_credentials(bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing in the environment or the profile files: obstore asks the instance
    metadata service, which is not there; the message says credentials are missing
    (not that the endpoint is down)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_METADATA_ENDPOINT", f"http://127.0.0.1:{services.free_port()}")
    backend = S3Backend.from_url(f"s3://{bucket}/repo")
    with pytest.raises(UnreachableError, match="found no credentials") as info:
        backend.check()
    assert f"s3://{bucket}/repo" in str(info.value)


def test_url_parsing(s3_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = S3Backend.from_url("s3://bkt/some/prefix/")
    assert (backend.bucket, backend.prefix, backend.url) == (
        "bkt",
        "some/prefix",
        "s3://bkt/some/prefix",
    )
    assert backend.endpoint == s3_server.endpoint  # MODELKEEP_S3_ENDPOINT
    monkeypatch.delenv("MODELKEEP_S3_ENDPOINT")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://elsewhere:9000")
    assert S3Backend.from_url("s3://bkt").endpoint == "http://elsewhere:9000"
    assert S3Backend.from_url("s3://bkt", endpoint="http://x:1").endpoint == "http://x:1"
    from modelkeep.errors import UsageError

    for bad in ("http://bkt/p", "s3:///p", "bkt/p"):
        with pytest.raises(UsageError):
            S3Backend.from_url(bad)
