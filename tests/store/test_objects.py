"""The object store: round trips, dedup, compression, corruption, missing objects and gc."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import blake3
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save

from modelkeep.errors import CorruptObjectError, ObjectMissingError
from modelkeep.store import (
    ChunkParams,
    LocalBackend,
    MemoryBackend,
    ObjectId,
    ObjectStore,
    TreeEntry,
    objects,
)
from modelkeep.store.chunking import safetensors_spans
from modelkeep.store.objects import PACK_LIMIT

if TYPE_CHECKING:
    from modelkeep.store import Backend, FileManifest, ObjectWriter

# Chunks of a few hundred KiB: some land in packs, some loose.
MEDIUM = ChunkParams(
    min_size=64 << 10, avg_size=256 << 10, max_size=1 << 20, max_tensor_chunk=1 << 20
)
SMALL = ChunkParams(
    min_size=1 << 10, avg_size=4 << 10, max_size=16 << 10, max_tensor_chunk=64 << 10
)
BACKENDS = ["memory", "local"]


def _make_backend(kind: str, root: Path) -> Backend:
    return MemoryBackend() if kind == "memory" else LocalBackend(root / "store")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return _make_backend(request.param, tmp_path)


def _random(seed: int, size: int) -> bytes:
    return np.random.default_rng(seed).bytes(size)


def _store(store: ObjectStore, data: bytes) -> tuple[FileManifest, int]:
    with store.writer() as writer:
        manifest = store.store_buffer(memoryview(data), writer)
    return manifest, writer.bytes_written


def _read(store: ObjectStore, manifest_id: ObjectId) -> bytes:
    manifest = store.file_manifest(manifest_id)
    return b"".join(bytes(c) for c in store.iter_chunks(manifest))


def _stored_bytes(backend: Backend) -> int:
    keys = [*backend.list("objects/"), *backend.list("packs/")]
    return sum(len(backend.get(k)) for k in keys)


def _loose_path(backend: LocalBackend, oid: ObjectId) -> Path:
    return backend.root / "objects" / oid.fanout()


def _flip(path: Path, position: int, mask: int = 0xFF) -> None:
    path.chmod(0o644)  # objects are written read-only
    data = bytearray(path.read_bytes())
    data[position] ^= mask
    path.write_bytes(bytes(data))


@st.composite
def contents(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["binary", "random", "compressible", "zeros"]))
    if kind == "binary":
        return draw(st.binary(max_size=2048))
    size = draw(
        st.one_of(
            st.integers(0, 2 * PACK_LIMIT + 4096),
            st.sampled_from([PACK_LIMIT - 1, PACK_LIMIT, PACK_LIMIT + 1, 3 * PACK_LIMIT]),
        )
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "random":
        return rng.bytes(size)
    if kind == "compressible":
        return (rng.integers(0, 4, size, dtype=np.uint8) + ord("a")).tobytes()
    return bytes(size)


# -- round trip -------------------------------------------------------------------


@pytest.mark.parametrize("kind", BACKENDS)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=contents())
def test_round_trip(kind: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        backend = _make_backend(kind, Path(tmp))
        store = ObjectStore(backend, MEDIUM)
        manifest, written = _store(store, data)

        assert manifest.size == len(data)
        assert sum(c.size for c in manifest.chunks) == len(data)
        assert manifest.id == store.manifest_of(memoryview(data))
        assert store.file_manifest(manifest.id) == manifest
        assert _read(store, manifest.id) == data
        if data:
            assert written > 0

        # A store opened afresh over the same backend reads the same bytes.
        reopened = ObjectStore(backend, MEDIUM)
        assert reopened.file_manifest(manifest.id) == manifest
        assert _read(reopened, manifest.id) == data

        # Storing it again, through either store, writes nothing.
        again, written_again = _store(store, data)
        assert again == manifest
        assert written_again == 0
        _, written_reopened = _store(ObjectStore(backend, MEDIUM), data)
        assert written_reopened == 0


def test_empty_file_round_trip(backend: Backend) -> None:
    store = ObjectStore(backend)
    manifest, _ = _store(store, b"")
    assert manifest.size == 0
    assert manifest.chunks == ()
    assert _read(ObjectStore(backend), manifest.id) == b""
    assert manifest.id == store.manifest_of(memoryview(b""))


def test_store_file_matches_store_buffer(tmp_path: Path, backend: Backend) -> None:
    store = ObjectStore(backend, SMALL)
    data = _random(3, 100_000)
    path = tmp_path / "model.bin"
    path.write_bytes(data)
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with store.writer() as writer:
        from_file = store.store_file(path, writer)
        from_empty = store.store_file(empty, writer)
    assert from_file.id == store.manifest_of(memoryview(data)) == store.manifest_of_file(path)
    assert len(from_file.chunks) > 1
    assert _read(store, from_file.id) == data
    assert from_empty.id == store.manifest_of_file(empty)
    assert _read(store, from_empty.id) == b""


def test_pack_limit_decides_packed_or_loose(backend: Backend) -> None:
    store = ObjectStore(backend)
    with store.writer() as writer:
        small = writer.add(_random(1, PACK_LIMIT - 1))
        large = writer.add(_random(2, PACK_LIMIT))
    loose = set(backend.list("objects/"))
    assert loose == {f"objects/{large.fanout()}"}
    assert len(list(backend.list("packs/"))) == 1
    assert bytes(ObjectStore(backend).get(small)) == _random(1, PACK_LIMIT - 1)


def test_a_large_chunk_that_compresses_small_is_packed(backend: Backend) -> None:
    # A loose object costs a file and an fsync: packing goes by the stored size.
    text = (np.random.default_rng(3).integers(0, 2, 4 * PACK_LIMIT, dtype=np.uint8) + 97).tobytes()
    store = ObjectStore(backend)
    with store.writer() as writer:
        oid = writer.add(text)
    assert list(backend.list("objects/")) == []
    assert len(list(backend.list("packs/"))) == 1
    assert bytes(ObjectStore(backend).get(oid)) == text


def test_a_batch_writes_its_pack_when_it_fills(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(objects, "PACK_FLUSH", 3 * 1000)
    blobs = [_random(100 + i, 1000) for i in range(7)]
    store = ObjectStore(backend)
    with store.writer() as writer:
        ids = [writer.add(b) for b in blobs]
        full = len(list(backend.list("packs/")))
    assert full == 2  # two full packs written during the batch, before close
    assert len(list(backend.list("packs/"))) == 3
    fresh = ObjectStore(backend)
    assert [bytes(fresh.get(i)) for i in ids] == blobs


def test_a_failed_loose_write_fails_the_batch(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "store")
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "tmp").write_text("a file where the temp folder goes")
    store = ObjectStore(backend)
    writer = store.writer()
    oid = writer.add(_random(5, 2 * PACK_LIMIT))  # written on an I/O thread
    with pytest.raises(FileExistsError):
        writer.close()
    assert not store.has(oid)


def test_segmented_parts_store_as_the_joined_file(backend: Backend) -> None:
    rng = np.random.default_rng(9)
    arrays = {
        "big": rng.standard_normal(40_000).astype(np.float32),  # over max_tensor_chunk
        "small": rng.standard_normal(100).astype(np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "ints": np.arange(50, dtype=np.int64),
    }
    joined = save(arrays)
    view = memoryview(joined)
    spans = safetensors_spans(view)
    assert spans is not None
    parts = [view[o : o + n] for o, n in spans]
    store = ObjectStore(backend, SMALL)
    with store.writer() as writer:
        from_parts = store.store_parts(parts, writer, segmented=True)
        whole = store.store_parts([view], writer)
        with pytest.raises(ValueError, match="one part"):
            store.store_parts(parts, writer)
    assert from_parts == whole
    assert whole.id == store.manifest_of(view)
    assert len(whole.chunks) > len(parts)  # the big tensor was cut by content
    assert _read(store, from_parts.id) == joined


@settings(max_examples=30, deadline=None)
@given(
    entries=st.dictionaries(
        st.text(min_size=1, max_size=20),
        st.tuples(
            st.binary(min_size=32, max_size=32), st.integers(0, 2**40), st.integers(0, 0o777)
        ),
        max_size=5,
    )
)
def test_tree_round_trip(entries: dict[str, tuple[bytes, int, int]]) -> None:
    store = ObjectStore(MemoryBackend())
    tree_entries = {p: TreeEntry(ObjectId.from_bytes(r), s, m) for p, (r, s, m) in entries.items()}
    with store.writer() as writer:
        tree = store.put_tree(tree_entries, writer)
    assert store.tree(tree.id).entries == tree_entries
    assert tree.size == sum(s for _, s, _ in entries.values())


def test_a_manifest_is_not_a_tree() -> None:
    store = ObjectStore(MemoryBackend())
    manifest, _ = _store(store, b"some bytes")
    with pytest.raises(CorruptObjectError, match=manifest.id.short):
        store.tree(manifest.id)
    chunk = manifest.chunks[0].id
    with pytest.raises(CorruptObjectError, match="not a file"):
        store.file_manifest(chunk)


# -- dedup ------------------------------------------------------------------------


def test_dedup_within_one_file() -> None:
    store = ObjectStore(MemoryBackend(), SMALL)
    block = _random(4, 50_000)
    # The same tensor twice in one safetensors file is stored once.
    buf = save({"a": np.frombuffer(block, np.uint8), "b": np.frombuffer(block, np.uint8)})
    manifest, written = _store(store, buf)
    assert manifest.chunks[1].id == manifest.chunks[2].id
    assert written < len(block) + 4096


def test_changing_3_of_32_tensors_stores_only_those(backend: Backend) -> None:
    rng = np.random.default_rng(8)
    tensors = {f"layer{i:02d}": rng.standard_normal((64, 64)).astype(np.float32) for i in range(32)}
    tensor_bytes = 64 * 64 * 4
    store = ObjectStore(backend)
    before, written_before = _store(store, save(tensors))
    assert written_before > 32 * tensor_bytes * 0.5

    for name in ("layer03", "layer17", "layer30"):
        tensors[name] = rng.standard_normal((64, 64)).astype(np.float32)
    after_buf = save(tensors)
    after, written_after = _store(store, after_buf)

    new_chunks = {c.id for c in after.chunks} - {c.id for c in before.chunks}
    assert len(new_chunks) == 3
    changed = {tensors[n].tobytes() for n in ("layer03", "layer17", "layer30")}
    assert {blake3.blake3(t).hexdigest() for t in changed} == {c.hex for c in new_chunks}
    # About three tensors' worth (compressed a little, or not), plus a manifest and a pack.
    assert 0.5 * 3 * tensor_bytes < written_after <= 3 * tensor_bytes + 8192
    assert _read(ObjectStore(backend), after.id) == after_buf


# -- compression ------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(bytes(1 << 20), id="zeros"),
        pytest.param(b"weights 0.000 1.000\n" * 60_000, id="text"),
        pytest.param(b"abc" * 30_000, id="small-text"),
    ],
)
def test_compressible_data_is_stored_compressed(backend: Backend, data: bytes) -> None:
    store = ObjectStore(backend)
    manifest, written = _store(store, data)
    assert written < len(data) / 10
    assert _stored_bytes(backend) < len(data) / 10
    assert _read(ObjectStore(backend), manifest.id) == data


@pytest.mark.parametrize("size", [1000, PACK_LIMIT - 1, 2 * PACK_LIMIT])
def test_random_data_is_stored_raw(backend: Backend, size: int) -> None:
    store = ObjectStore(backend)
    data = _random(size, size)
    manifest, written = _store(store, data)
    assert len(data) <= written < len(data) + 2048
    assert _stored_bytes(backend) == written
    # Raw: the bytes are there verbatim in one blob.
    blobs = [backend.get(k) for k in [*backend.list("objects/"), *backend.list("packs/")]]
    assert any(data in blob for blob in blobs)
    assert _read(store, manifest.id) == data


# -- corruption -------------------------------------------------------------------


@pytest.mark.parametrize("where", ["codec", "first", "middle", "last"])
def test_flipped_byte_in_loose_object_is_detected(tmp_path: Path, where: str) -> None:
    backend = LocalBackend(tmp_path / "store")
    store = ObjectStore(backend)
    data = _random(21, PACK_LIMIT + 100)
    with store.writer() as writer:
        oid = writer.add(data)
    path = _loose_path(backend, oid)
    assert path.is_file()
    start = path.read_bytes().index(data)
    position = {
        "codec": 0,
        "first": start,
        "middle": start + len(data) // 2,
        "last": start + len(data) - 1,
    }[where]
    _flip(path, position)
    for reader in (store, ObjectStore(backend)):
        with pytest.raises(CorruptObjectError, match=oid.short) as info:
            reader.get(oid)
        assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("compressible", [False, True])
def test_flipped_byte_in_packed_object_is_detected(tmp_path: Path, compressible: bool) -> None:
    backend = LocalBackend(tmp_path / "store")
    store = ObjectStore(backend)
    data = b"0123456789" * 500 if compressible else _random(22, 5000)
    other = _random(23, 3000)
    with store.writer() as writer:
        oid = writer.add(data)
        other_id = writer.add(other)
    (pack,) = (tmp_path / "store" / "packs").iterdir()
    blob = pack.read_bytes()
    # Raw: a byte inside its bytes; compressed: inside its zstd frame, past the frame header.
    position = blob.index(b"\x28\xb5\x2f\xfd") + 12 if compressible else blob.index(data) + 1234
    _flip(pack, position)
    for reader in (store, ObjectStore(backend)):
        with pytest.raises(CorruptObjectError, match=oid.short) as info:
            reader.get(oid)
        assert isinstance(info.value, ValueError)
        # Its neighbour in the pack is untouched and still reads.
        assert bytes(reader.get(other_id)) == other


@settings(max_examples=40, deadline=None)
@given(
    size=st.sampled_from([10, 1000, PACK_LIMIT + 1]),
    position=st.integers(0, 2**32),
    mask=st.integers(1, 255),
)
def test_any_flipped_byte_of_a_raw_object_is_detected(size: int, position: int, mask: int) -> None:
    backend = MemoryBackend()
    store = ObjectStore(backend)
    data = _random(size, size)
    with store.writer() as writer:
        oid = writer.add(data)
    key = next(iter([*backend.list("objects/"), *backend.list("packs/")]))
    blob = bytearray(backend.get(key))
    start = blob.index(data)
    blob[start + position % len(data)] ^= mask
    backend.put(key, bytes(blob))
    with pytest.raises(CorruptObjectError, match=oid.short):
        ObjectStore(backend).get(oid)


def test_flipped_zstd_header_bit_is_reported_as_corruption() -> None:
    backend = MemoryBackend()
    store = ObjectStore(backend)
    with store.writer() as writer:
        oid = writer.add(b"abc" * 300)
    (key,) = backend.list("packs/")
    blob = bytearray(backend.get(key))
    blob[len(b"MKPACK1\n") + 4] ^= 0x80  # frame header descriptor: content-size field width
    backend.put(key, bytes(blob))
    with pytest.raises(CorruptObjectError, match=oid.short):
        ObjectStore(backend).get(oid)


def test_truncated_or_emptied_loose_object_is_corrupt(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "store")
    store = ObjectStore(backend)
    with store.writer() as writer:
        a = writer.add(_random(30, PACK_LIMIT))
        b = writer.add(_random(31, PACK_LIMIT))
    for oid, keep in ((a, 1000), (b, 0)):
        path = _loose_path(backend, oid)
        path.chmod(0o644)
        path.write_bytes(path.read_bytes()[:keep])
        with pytest.raises(CorruptObjectError, match=oid.short):
            store.get(oid)


def test_truncated_pack_is_corrupt(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "store")
    with ObjectStore(backend).writer() as writer:
        oid = writer.add(b"small object" * 10)
    (pack,) = (tmp_path / "store" / "packs").iterdir()
    pack.chmod(0o644)
    pack.write_bytes(pack.read_bytes()[:-10])
    with pytest.raises(CorruptObjectError, match="pack"):
        ObjectStore(backend).get(oid)


# -- missing objects --------------------------------------------------------------


def test_never_stored_object_is_missing(backend: Backend) -> None:
    store = ObjectStore(backend)
    _store(store, b"something else")
    oid = ObjectId.of(b"never stored")
    assert not store.has(oid)
    with pytest.raises(ObjectMissingError, match=oid.short) as info:
        store.get(oid)
    assert isinstance(info.value, LookupError)


def test_deleted_objects_are_missing(backend: Backend) -> None:
    store = ObjectStore(backend)
    with store.writer() as writer:
        loose = writer.add(_random(40, PACK_LIMIT + 1))
        packed = writer.add(_random(41, 100))
    assert store.has(loose)
    assert store.has(packed)
    store.get(packed)  # the pack is indexed now
    for key in [*backend.list("objects/"), *backend.list("packs/")]:
        backend.delete(key)
    for oid in (loose, packed):
        with pytest.raises(ObjectMissingError, match=oid.short):
            store.get(oid)
        with pytest.raises(LookupError):
            ObjectStore(backend).get(oid)


# -- garbage collection -----------------------------------------------------------


def _add_file(store: ObjectStore, writer: ObjectWriter, data: bytes) -> FileManifest:
    return store.store_buffer(memoryview(data), writer)


def test_collect_garbage_removes_unreferenced_objects(backend: Backend) -> None:
    store = ObjectStore(backend)
    live_data = {"small": _random(50, 1000), "big": _random(51, PACK_LIMIT + 10)}
    dead_data = {"small": _random(52, 1200), "big": _random(53, PACK_LIMIT + 20)}
    with store.writer() as writer:  # one batch: live and dead small objects share a pack
        live_files = {k: _add_file(store, writer, v) for k, v in live_data.items()}
        dead_files = {k: _add_file(store, writer, v) for k, v in dead_data.items()}
        tree = store.put_tree(
            {k: TreeEntry(m.id, m.size, 0o644) for k, m in live_files.items()}, writer
        )
    assert len(list(backend.list("packs/"))) == 1

    live = store.referenced_by([tree.id])
    expected_live = (
        {tree.id}
        | {m.id for m in live_files.values()}
        | {c.id for m in live_files.values() for c in m.chunks}
    )
    assert live == expected_live
    dead = set(store.iter_ids()) - live
    assert dead == {m.id for m in dead_files.values()} | {
        c.id for m in dead_files.values() for c in m.chunks
    }

    # Young objects are kept when gc asks for a minimum age.
    assert store.collect_garbage(live, min_age=3600) == (0, 0)
    assert _read(store, dead_files["big"].id) == dead_data["big"]

    removed, freed = store.collect_garbage(live)
    assert removed == len(dead)
    assert freed >= len(dead_data["big"]) + len(dead_data["small"])

    for reader in (store, ObjectStore(backend)):
        for name, manifest in live_files.items():
            assert _read(reader, manifest.id) == live_data[name]
        assert reader.tree(tree.id) == tree
        for oid in dead:
            with pytest.raises(ObjectMissingError):
                reader.get(oid)
    assert set(ObjectStore(backend).iter_ids()) == live
    assert list(backend.list("objects/")) == [
        f"objects/{c.id.fanout()}" for c in live_files["big"].chunks
    ]
    # Nothing left to collect.
    assert store.collect_garbage(live) == (0, 0)


def test_collect_garbage_of_everything(backend: Backend) -> None:
    store = ObjectStore(backend)
    manifest, _ = _store(store, _random(60, PACK_LIMIT * 2))
    removed, _ = store.collect_garbage(set())
    assert removed == 1 + len(manifest.chunks)
    assert list(backend.list("objects/")) == []
    assert list(backend.list("packs/")) == []
    # Storing it again after gc writes it again.
    _, written = _store(store, _random(60, PACK_LIMIT * 2))
    assert written > PACK_LIMIT * 2


# -- ids ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", "abc", "0" * 63, "0" * 65, "A" * 64, "g" * 64, " " + "0" * 63, "0" * 63 + "\n"],
)
def test_object_id_rejects_bad_hex(text: str) -> None:
    with pytest.raises(ValueError, match="not a blake3 object id"):
        ObjectId(text)


def test_object_id_values() -> None:
    empty = ObjectId.of(b"")
    assert empty.hex == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    assert ObjectId.from_bytes(empty.raw) == empty
    assert empty.short == empty.hex[:12]
    assert empty.fanout() == f"{empty.hex[:2]}/{empty.hex[2:]}"
    assert str(empty) == empty.hex
    big = _random(70, 5 << 20)  # hashed on several threads: same digest
    assert ObjectId.of(big).hex == blake3.blake3(big).hexdigest()
    assert ObjectId.of(memoryview(big)) == ObjectId.of(bytearray(big))


# -- backends ---------------------------------------------------------------------


def test_backends_agree_on_basic_operations(backend: Backend) -> None:
    backend.put("objects/ab/cd", b"one")
    backend.put("packs/x.pack", memoryview(b"two"))
    assert backend.get("objects/ab/cd") == b"one"
    assert backend.get_range("packs/x.pack", 1, 2) == b"wo"
    with pytest.raises(EOFError):
        backend.get_range("packs/x.pack", 1, 5)
    with pytest.raises(FileNotFoundError):
        backend.get("objects/zz/zz")
    assert backend.exists("packs/x.pack")
    assert sorted(backend.list("objects/")) == ["objects/ab/cd"]
    assert sorted(backend.list("pack")) == ["packs/x.pack"]
    backend.put("objects/ab/cd", b"replaced")
    assert backend.get("objects/ab/cd") == b"replaced"
    backend.delete("objects/ab/cd")
    backend.delete("objects/ab/cd")  # absent: not an error
    assert not backend.exists("objects/ab/cd")
    assert backend.age_seconds("packs/x.pack") >= 0


def test_local_backend_lists_every_key_for_empty_prefix(tmp_path: Path) -> None:
    (tmp_path / "not-in-the-store.txt").write_text("x")
    backend = LocalBackend(tmp_path / "store")
    backend.put("objects/ab/cd", b"one")
    assert sorted(backend.list("")) == ["objects/ab/cd"]


def test_local_backend_cleans_old_temp_files(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "store")
    backend.put("objects/ab/cd", b"one")
    stale = tmp_path / "store" / "tmp" / "crashed.tmp"
    stale.write_bytes(b"partial")
    old = os.stat(stale).st_mtime - 3600
    os.utime(stale, (old, old))
    assert backend.clean_temp(older_than=60) == 1
    assert not stale.exists()
    assert backend.get("objects/ab/cd") == b"one"
