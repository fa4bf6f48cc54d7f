"""Damaged store files: checkout refuses to write wrong bytes and says what is broken.

Each test commits ``churn:1`` (a multi-chunk file, so several loose chunk objects,
plus small files that land in a pack) and ``churn:2`` (small files sharing nothing
with ``churn:1``), damages one stored object on disk and checks that

- ``checkout`` raises the right error naming the object (short id), the file in
  the version and the version,
- nothing with wrong bytes appears at the destination,
- ``fsck`` reports a problem naming the same three things, and leaves the
  undamaged version alone.
"""

from __future__ import annotations

import os
import random
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest

import modelkeep
from modelkeep.store import ObjectId

# Damages the store's files on disk; damage to objects in S3 is tested in
# tests/store/test_s3.py (every read verified, a damaged cache file fetched again).
pytestmark = pytest.mark.local_engine

BIG = "big.bin"
SMALL = {
    "config.json": b'{"layers": [64, 32, 16], "activation": "relu", "dropout": 0.1}\n' * 6,
    "notes.txt": b"trained on the march extract\n",
    "vocab.txt": b"\n".join(f"token-{i:05d}".encode() for i in range(300)),
}

# The on-disk pack format (modelkeep/store/objects.py), parsed independently here.
PACK_MAGIC = b"MKPACK1\n"
IDX_MAGIC = b"MKPIDX1\n"
IDX_ENTRY = struct.Struct("<32sQIB")  # id, offset, stored length, codec
IDX_FOOTER = struct.Struct("<QI8s")  # index offset, count, magic


@dataclass
class Committed:
    root: Path
    files: dict[str, bytes]  # churn:1, path -> content
    files_v2: dict[str, bytes]  # churn:2
    owner: dict[ObjectId, str]  # chunk or manifest id of churn:1 -> its path

    def open(self) -> modelkeep.Repo:
        return modelkeep.Repo(self.root)

    @property
    def store(self) -> Path:
        return self.root / ".modelkeep" / "store"


@pytest.fixture
def committed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Committed:
    monkeypatch.chdir(tmp_path)  # lineage: no git work tree around the commits
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    rng = random.Random(20240611)
    src = tmp_path / "src"
    src.mkdir()
    files = {BIG: rng.randbytes(6 << 20 | 12345), **SMALL}
    for name, data in files.items():
        (src / name).write_bytes(data)
    src2 = tmp_path / "src2"
    src2.mkdir()
    files_v2 = {"readme.md": b"# second version\n", "params.json": b'{"lr": 0.003}\n'}
    for name, data in files_v2.items():
        (src2 / name).write_bytes(data)

    root = tmp_path / "repo"
    with modelkeep.Repo.init(root) as repo:
        v1 = repo.commit("churn", src, "first")
        v2 = repo.commit("churn", src2, "second")
        assert (v1.rev, v2.rev) == ("churn:1", "churn:2")
        owner: dict[ObjectId, str] = {}
        for info in repo.files(v1):
            manifest = repo.store.file_manifest(ObjectId(info.content_id))
            owner[manifest.id] = info.path
            for chunk in manifest.chunks:
                owner[chunk.id] = info.path
        assert repo.fsck().ok
    return Committed(root, files, files_v2, owner)


def _loose_objects(store: Path) -> dict[ObjectId, Path]:
    out = {}
    for path in (store / "objects").rglob("*"):
        if path.is_file():
            out[ObjectId(path.parent.name + path.name)] = path
    return out


def _pack_entries(pack: Path) -> dict[ObjectId, tuple[int, int]]:
    """id -> (offset, length) of each object's payload in ``pack``."""
    blob = pack.read_bytes()
    assert blob.startswith(PACK_MAGIC)
    idx_off, count, magic = IDX_FOOTER.unpack_from(blob, len(blob) - IDX_FOOTER.size)
    assert magic == IDX_MAGIC
    out = {}
    for i in range(count):
        raw, off, length, _codec = IDX_ENTRY.unpack_from(blob, idx_off + i * IDX_ENTRY.size)
        assert len(PACK_MAGIC) <= off
        assert off + length <= idx_off
        out[ObjectId.from_bytes(raw)] = (off, length)
    return out


def _flip_byte(path: Path, offset: int) -> None:
    path.chmod(0o644)  # the store writes its files read-only
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def _names(message: str, oid: ObjectId, rel: str, rev: str = "churn:1") -> bool:
    return oid.short in message and rel in message and rev in message


def _assert_nothing_wrong_written(dest: Path, expected: dict[str, bytes], bad: str) -> None:
    """Whatever checkout left in ``dest`` is right; the damaged file is not there."""
    if not dest.exists():
        return
    leftovers = sorted(p.name for p in dest.rglob("*") if p.name.endswith(".mk-tmp"))
    assert leftovers == [], f"checkout left temp files: {leftovers}"
    assert not (dest / bad).exists(), f"{bad} was written although its content is damaged"
    for path in dest.rglob("*"):
        if path.is_file():
            rel = path.relative_to(dest).as_posix()
            assert path.read_bytes() == expected[rel], f"{rel} was written with wrong bytes"


def _assert_fsck_names(committed: Committed, oid: ObjectId, rel: str, what: str) -> None:
    with committed.open() as repo:
        report = repo.fsck()
    assert not report.ok
    assert any(_names(p, oid, rel) and what in p for p in report.problems), report.problems
    # churn:2 shares nothing with churn:1: it must not be reported.
    assert not any("churn:2" in p for p in report.problems), report.problems
    assert report.versions_checked == 2


def _assert_v2_intact(committed: Committed, dest: Path) -> None:
    with committed.open() as repo:
        repo.checkout("churn:2", dest)
    got = {p.name: p.read_bytes() for p in dest.iterdir()}
    assert got == committed.files_v2


# -- loose objects ------------------------------------------------------------------


def _big_loose_chunks(committed: Committed) -> list[tuple[ObjectId, Path]]:
    loose = _loose_objects(committed.store)
    chunks = sorted((oid, path) for oid, path in loose.items() if committed.owner.get(oid) == BIG)
    assert len(chunks) >= 2, "the big file should be stored as several loose chunks"
    return chunks


@pytest.mark.parametrize("where", ["codec byte", "middle", "last byte"])
def test_flipped_byte_in_loose_chunk(committed: Committed, tmp_path: Path, where: str) -> None:
    oid, path = _big_loose_chunks(committed)[1]
    size = path.stat().st_size
    _flip_byte(path, {"codec byte": 0, "middle": size // 2, "last byte": size - 1}[where])

    dest = tmp_path / "out"
    with committed.open() as repo, pytest.raises(modelkeep.CorruptObjectError) as info:
        repo.checkout("churn:1", dest)
    assert _names(str(info.value), oid, BIG), str(info.value)
    _assert_nothing_wrong_written(dest, committed.files, BIG)
    _assert_fsck_names(committed, oid, BIG, "corrupt")
    _assert_v2_intact(committed, tmp_path / "v2")


def test_flipped_loose_chunk_keeps_existing_file(committed: Committed, tmp_path: Path) -> None:
    """With --force over an existing file, a failed write leaves the old file as it was."""
    oid, path = _big_loose_chunks(committed)[0]
    _flip_byte(path, path.stat().st_size // 3)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / BIG).write_bytes(b"the previous weights")

    with committed.open() as repo, pytest.raises(modelkeep.CorruptObjectError) as info:
        repo.checkout("churn:1", dest, force=True)
    assert _names(str(info.value), oid, BIG), str(info.value)
    assert (dest / BIG).read_bytes() == b"the previous weights"
    assert not [p for p in dest.iterdir() if p.name.endswith(".mk-tmp")]


def test_deleted_loose_chunk(committed: Committed, tmp_path: Path) -> None:
    oid, path = _big_loose_chunks(committed)[-1]
    path.unlink()

    dest = tmp_path / "out"
    with committed.open() as repo, pytest.raises(modelkeep.ObjectMissingError) as info:
        repo.checkout("churn:1", dest)
    assert _names(str(info.value), oid, BIG), str(info.value)
    _assert_nothing_wrong_written(dest, committed.files, BIG)
    _assert_fsck_names(committed, oid, BIG, "missing")
    _assert_v2_intact(committed, tmp_path / "v2")


# -- packed objects -----------------------------------------------------------------


def _packed(committed: Committed, oid: ObjectId) -> tuple[Path, int, int]:
    for pack in (committed.store / "packs").glob("*.pack"):
        entries = _pack_entries(pack)
        if oid in entries:
            return (pack, *entries[oid])
    raise AssertionError(f"object {oid.short} is in no pack")


def _target(committed: Committed, kind: str) -> tuple[ObjectId, str]:
    """The id of a small file's only chunk, or of the big file's manifest."""
    with committed.open() as repo:
        infos = {i.path: i for i in repo.files("churn:1")}
        if kind == "small-file chunk":
            manifest = repo.store.file_manifest(ObjectId(infos["config.json"].content_id))
            assert len(manifest.chunks) == 1
            return manifest.chunks[0].id, "config.json"
        return ObjectId(infos[BIG].content_id), BIG


@pytest.mark.parametrize("kind", ["small-file chunk", "file manifest"])
def test_flipped_byte_in_pack_payload(committed: Committed, tmp_path: Path, kind: str) -> None:
    oid, rel = _target(committed, kind)
    assert not (committed.store / "objects" / oid.fanout()).exists()
    pack, offset, length = _packed(committed, oid)
    assert length > 0
    _flip_byte(pack, offset + length // 2)

    dest = tmp_path / "out"
    with committed.open() as repo, pytest.raises(modelkeep.CorruptObjectError) as info:
        repo.checkout("churn:1", dest)
    assert _names(str(info.value), oid, rel), str(info.value)
    _assert_nothing_wrong_written(dest, committed.files, rel)
    _assert_fsck_names(committed, oid, rel, "corrupt")
    _assert_v2_intact(committed, tmp_path / "v2")


def test_truncated_pack_is_reported_by_fsck(committed: Committed) -> None:
    oid, _rel = _target(committed, "small-file chunk")
    pack, _offset, _length = _packed(committed, oid)
    pack.chmod(0o644)
    os.truncate(pack, pack.stat().st_size - 7)  # the footer is gone

    with committed.open() as repo:
        report = repo.fsck()
    assert not report.ok
    assert any(pack.name in p for p in report.problems), report.problems
