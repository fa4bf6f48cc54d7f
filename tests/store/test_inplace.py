"""Large raw objects are page-aligned files that can be mapped in place, trusted by the
ledger only while their file is unchanged since it was written or verified."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from modelkeep.errors import CorruptObjectError
from modelkeep.store import ChunkRef, LocalBackend, ObjectId, ObjectStore, objects
from modelkeep.store.inplace import StoredFile
from modelkeep.store.trust import Ledger

if TYPE_CHECKING:
    from modelkeep.store import FileManifest

MIB = 1 << 20


def _random(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _store(root: Path) -> ObjectStore:
    return ObjectStore(LocalBackend(root))


def _put(store: ObjectStore, data: bytes) -> ObjectId:
    with store.writer() as w:
        return w.add(data)


def _loose(root: Path, oid: ObjectId) -> Path:
    return root / "objects" / oid.fanout()


def _tamper(path: Path, offset: int) -> None:
    path.chmod(0o644)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_a_large_raw_object_is_a_page_then_its_bytes(tmp_path: Path) -> None:
    store = _store(tmp_path)
    data = _random(2 * MIB)
    oid = _put(store, data)
    raw = _loose(tmp_path, oid).read_bytes()
    assert len(raw) == 4096 + len(data)
    assert raw[0] == objects.RAW_PAGE
    assert raw[1:4096] == bytes(4095)
    assert raw[4096:] == data
    assert bytes(store.get(oid)) == data
    # A checkout streams it (one pass, hashed) into a file.
    manifest = store.store_buffer(memoryview(data), store.writer())
    out = tmp_path / "out.bin"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT)
    try:
        store.write_file(manifest, fd)
    finally:
        os.close(fd)
    assert out.read_bytes() == data


def test_small_or_compressible_objects_keep_the_one_byte_header(tmp_path: Path) -> None:
    store = _store(tmp_path)
    raw_small = _random(512 << 10, seed=1)  # loose (above the pack limit), below MAP_MIN
    # Four bits of entropy per byte: zstd halves it, still too large for a pack.
    nibbles = np.random.default_rng(1).integers(0, 16, 2 * MIB, dtype=np.uint8).tobytes()
    for data, codec in ((raw_small, objects.RAW), (nibbles, objects.ZSTD)):
        oid = _put(store, data)
        blob = _loose(tmp_path, oid).read_bytes()
        assert blob[0] == codec
        assert bytes(store.get(oid)) == data
        assert store.mapped(ChunkRef(oid, len(data))) is None  # read, not mapped


def test_a_loose_object_of_the_old_layout_still_reads(tmp_path: Path) -> None:
    """Stores written before page headers hold large raw objects behind one byte."""
    store = _store(tmp_path)
    data = _random(2 * MIB, seed=2)
    oid = ObjectId.of(data)
    path = _loose(tmp_path, oid)
    path.parent.mkdir(parents=True)
    path.write_bytes(bytes([objects.RAW]) + data)
    assert bytes(store.get(oid)) == data
    assert store.mapped(ChunkRef(oid, len(data))) is None
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
    try:
        store.write_file(store.store_buffer(memoryview(data), store.writer()), fd)
    finally:
        os.close(fd)
    assert (tmp_path / "out").read_bytes() == data


def test_a_written_object_maps_trusted_and_copy_on_write(tmp_path: Path) -> None:
    store = _store(tmp_path)
    data = _random(2 * MIB, seed=3)
    oid = _put(store, data)
    assert store.trust is not None
    assert store.trust.knows(oid, _loose(tmp_path, oid).stat())  # recorded when written
    mm = store.mapped(ChunkRef(oid, len(data)))
    assert mm is not None
    assert bytes(mm) == data
    mm[0] = data[0] ^ 0xFF  # private: the store's file is not changed
    assert _loose(tmp_path, oid).read_bytes()[4096:] == data
    assert bytes(store.get(oid)) == data


def test_a_changed_file_is_hashed_again_and_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    data = _random(2 * MIB, seed=4)
    oid = _put(store, data)
    _tamper(_loose(tmp_path, oid), 4096 + MIB)
    with pytest.raises(CorruptObjectError, match="content does not match"):
        store.mapped(ChunkRef(oid, len(data)))
    # Another process, with a ledger read afresh, refuses it too.
    with pytest.raises(CorruptObjectError):
        _store(tmp_path).mapped(ChunkRef(oid, len(data)))


def test_a_truncated_file_is_not_mapped_and_get_says_so(tmp_path: Path) -> None:
    store = _store(tmp_path)
    data = _random(2 * MIB, seed=5)
    oid = _put(store, data)
    path = _loose(tmp_path, oid)
    path.chmod(0o644)
    os.truncate(path, 4096 + MIB)
    assert store.mapped(ChunkRef(oid, len(data))) is None
    with pytest.raises(CorruptObjectError):
        StoredFile(store, _manifest(store, data)).read(0, 10)


def _manifest(store: ObjectStore, data: bytes) -> FileManifest:
    # The manifest of a one-chunk file without storing anything new.
    from modelkeep.store import FileManifest

    return FileManifest(ObjectId.of(b"m"), len(data), (ChunkRef(ObjectId.of(data), len(data)),))


def test_without_a_ledger_an_object_is_hashed_once_then_trusted(tmp_path: Path) -> None:
    store = _store(tmp_path)
    data = _random(2 * MIB, seed=6)
    oid = _put(store, data)
    (tmp_path / "verified").unlink()
    fresh = _store(tmp_path)
    assert fresh.trust is not None
    assert not fresh.trust.knows(oid, _loose(tmp_path, oid).stat())
    mm = fresh.mapped(ChunkRef(oid, len(data)))
    assert mm is not None
    assert bytes(mm) == data
    assert Ledger(tmp_path / "verified").knows(oid, _loose(tmp_path, oid).stat())


def test_a_copied_store_is_verified_on_its_new_disk(tmp_path: Path) -> None:
    store = _store(tmp_path / "a")
    data = _random(2 * MIB, seed=7)
    oid = _put(store, data)
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # the ledger comes along, stale
    copy = _store(tmp_path / "b")
    assert copy.trust is not None
    assert not copy.trust.knows(oid, _loose(tmp_path / "b", oid).stat())
    _tamper(_loose(tmp_path / "b", oid), 4096 + 10)
    with pytest.raises(CorruptObjectError):
        copy.mapped(ChunkRef(oid, len(data)))


def test_the_ledger_skips_torn_lines_and_reads_other_writers(tmp_path: Path) -> None:
    a, b = Ledger(tmp_path / "verified"), Ledger(tmp_path / "verified")
    one, two = (tmp_path / "one", tmp_path / "two")
    one.write_bytes(b"1")
    two.write_bytes(b"2")
    oid1, oid2 = ObjectId.of(b"1"), ObjectId.of(b"2")
    assert not b.knows(oid1, one.stat())
    a.record([(oid1, one.stat())])
    with open(tmp_path / "verified", "ab") as f:
        f.write(b"not a line\n" + oid2.hex.encode() + b" 1 2")  # garbage, then a torn line
    assert b.knows(oid1, one.stat())
    assert not b.knows(oid2, two.stat())
    with open(tmp_path / "verified", "ab") as f:
        f.write(b"\n")  # the torn line, completed, is still not a valid entry
    a.record([(oid2, two.stat())])
    assert b.knows(oid2, two.stat())


def test_gc_prunes_the_ledger(tmp_path: Path) -> None:
    store = _store(tmp_path)
    keep = _put(store, _random(2 * MIB, seed=8))
    drop = _put(store, _random(2 * MIB, seed=9))
    text = (tmp_path / "verified").read_text()
    assert keep.hex in text
    assert drop.hex in text
    store.collect_garbage({keep})
    text = (tmp_path / "verified").read_text()
    assert keep.hex in text
    assert drop.hex not in text
    assert store.trust is not None
    assert store.trust.knows(keep, _loose(tmp_path, keep).stat())


def test_a_stored_file_reads_ranges_across_chunks(tmp_path: Path) -> None:
    store = _store(tmp_path)
    data = _random(9 * MIB, seed=10)
    with store.writer() as w:
        manifest = store.store_buffer(memoryview(data), w)
    assert len(manifest.chunks) > 2
    file = StoredFile(store, manifest)
    for begin, end in ((0, 10), (MIB - 5, 5 * MIB + 7), (0, len(data)), (len(data), len(data))):
        view = file.view(begin, end)
        assert bytes(view) == data[begin:end]
        assert not view.readonly
    with pytest.raises(ValueError, match="outside"):
        file.view(0, len(data) + 1)


def test_packed_objects_are_read_together_and_verified(tmp_path: Path) -> None:
    store = _store(tmp_path)
    small = [_random(10_000, seed=20 + i) for i in range(5)]
    with store.writer() as w:
        ids = [w.add(d) for d in small]
    got = store.get_packed(ids)
    assert {oid: bytes(v) for oid, v in got.items()} == dict(zip(ids, small, strict=True))
    # Not in a pack: left to get().
    loose = _put(store, _random(2 * MIB, seed=30))
    assert loose not in store.get_packed([loose, ids[0]])
    # A damaged member is refused, not returned.
    (pack,) = (tmp_path / "packs").glob("*.pack")
    at = store._packed[ids[2]]
    _tamper(pack, at.offset + 5)
    with pytest.raises(CorruptObjectError, match=ids[2].short):
        store.get_packed(ids)


@pytest.mark.parametrize("layout", ["page", "one-byte"])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_checkout_copy_of_a_damaged_raw_object_is_refused(
    tmp_path: Path, layout: str, where: str
) -> None:
    """Raw loose objects are copied by the kernel and hashed after: the damage is found."""
    store = _store(tmp_path)
    data = _random(2 * MIB, seed=40)
    oid = ObjectId.of(data)
    if layout == "page":
        _put(store, data)
        header = 4096
    else:
        path = _loose(tmp_path, oid)
        path.parent.mkdir(parents=True)
        path.write_bytes(bytes([objects.RAW]) + data)
        header = 1
    at = {"first": 0, "middle": MIB, "last": 2 * MIB - 1}[where]
    _tamper(_loose(tmp_path, oid), header + at)
    manifest = _manifest(store, data)
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(CorruptObjectError, match=oid.short):
            store.write_file(manifest, fd)
    finally:
        os.close(fd)


def test_a_checkout_onto_another_file_system_copies_through_a_buffer(tmp_path: Path) -> None:
    """copy_file_range refuses to cross file systems (EXDEV): the bytes still arrive."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another file system than the temp folder")
    store = _store(tmp_path)
    data = _random(3 * MIB, seed=50)
    _put(store, data)
    out = shm / f"modelkeep-test-{os.getpid()}.bin"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT)
    try:
        store.write_file(_manifest(store, data), fd)
        assert out.read_bytes() == data
    finally:
        os.close(fd)
        out.unlink()
