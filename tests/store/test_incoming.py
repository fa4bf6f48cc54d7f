"""Objects arriving as a stream of frames (a download): split anywhere, stored as
they come, counted only once whole and verified; a damaged, short or long one is
refused and leaves nothing behind, not even a temp file."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from modelkeep.errors import CorruptObjectError
from modelkeep.store import LocalBackend, MemoryBackend, ObjectId, ObjectStore
from modelkeep.store.frames import FrameError, Pieces, header, read_frames, split
from modelkeep.store.objects import PACK_LIMIT, RAW, ZSTD

MIB = 1 << 20


class _Collect:
    """A FrameSink that keeps what it is given, offering ``room`` bytes at a time."""

    def __init__(self, room: int = 7) -> None:
        self.objects: list[tuple[ObjectId, int, bytes]] = []
        self._open: tuple[ObjectId, int, bytearray] | None = None
        self._room = bytearray(room)
        self._left = 0

    def begin(self, oid: ObjectId, codec: int, length: int) -> None:
        assert self._open is None
        self._open = (oid, codec, bytearray())
        self._left = length

    def room(self) -> memoryview:
        assert self._open is not None
        assert self._left > 0
        return memoryview(self._room)[: self._left]

    def filled(self, count: int) -> None:
        assert self._open is not None
        assert 0 < count <= min(self._left, len(self._room))
        self._open[2].extend(self._room[:count])
        self._left -= count

    def end(self) -> None:
        assert self._open is not None
        assert self._left == 0
        oid, codec, data = self._open
        self.objects.append((oid, codec, bytes(data)))
        self._open = None


def _body(payloads: list[bytes]) -> bytes:
    return b"".join(header(ObjectId.of(p), RAW, len(p)) + p for p in payloads)


def _pieces(body: bytes, cuts: list[int]) -> list[bytes]:
    at = sorted({min(c, len(body)) for c in cuts} | {0, len(body)})
    return [body[a:b] for a, b in itertools.pairwise(at)]


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=30),
    room=st.integers(min_value=1, max_value=400),
)
def test_frames_split_anywhere_read_as_the_whole_body_splits(
    payloads: list[bytes], cuts: list[int], room: int
) -> None:
    body = _body(payloads)
    sink = _Collect(room)
    read_frames(Pieces(_pieces(body, cuts)), sink)
    assert sink.objects == [(oid, codec, bytes(p)) for oid, codec, p in split(body)]


@pytest.mark.parametrize("cut", [1, 20, 40, 41, 45])
def test_a_body_cut_short_inside_a_frame_is_a_frame_error(cut: int) -> None:
    body = _body([b"abcdefgh"])  # a 41-byte header, then 8 bytes
    with pytest.raises(FrameError, match="cut short"):
        read_frames(Pieces([body[:cut]]), _Collect())


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return ObjectStore(LocalBackend(tmp_path / "store"))
    return ObjectStore(MemoryBackend())


def _temp_files(store: ObjectStore) -> list[str]:
    return list(store.backend.list("tmp/"))


def _arrive(
    store: ObjectStore, oid: ObjectId, codec: int, payload: bytes, step: int, by: str = "write"
) -> None:
    """``payload`` given to ``write`` ``step`` bytes at a time, or read into ``room``
    (as a download is) at most ``step`` bytes at a time."""
    with store.writer() as writer:
        incoming = writer.receive(oid, codec, len(payload))
        if by == "write":
            for at in range(0, len(payload), step):
                incoming.write(payload[at : at + step])
        else:
            source = Pieces([payload])
            while room := incoming.room():
                incoming.filled(source.readinto(room[:step]))
        incoming.done()


@pytest.mark.parametrize("by", ["write", "room"])
@pytest.mark.parametrize("size", [0, 1000, PACK_LIMIT, 3 * MIB + 5])
def test_an_object_arriving_in_pieces_is_stored_as_it_is(
    store: ObjectStore, size: int, by: str
) -> None:
    data = os.urandom(size)
    oid = ObjectId.of(data)
    _arrive(store, oid, RAW, data, step=65536 + 3, by=by)
    assert store.get(oid) == data
    assert _temp_files(store) == []


def test_a_large_compressed_object_arriving_in_pieces_is_verified_decoded(
    store: ObjectStore,
) -> None:
    data = b"modelkeep " * (MIB // 4)
    packed = zstandard.ZstdCompressor().compress(data)
    _arrive(store, ObjectId.of(data), ZSTD, packed, step=4096)
    assert store.get(ObjectId.of(data)) == data


@pytest.mark.parametrize("size", [1000, 3 * MIB])
@pytest.mark.parametrize("fault", ["flipped", "short", "long", "wrong id"])
def test_a_damaged_object_is_refused_and_leaves_nothing(
    store: ObjectStore, size: int, fault: str
) -> None:
    data = os.urandom(size)
    oid = ObjectId.of(data)
    sent = bytearray(data)
    if fault == "wrong id":
        oid = ObjectId.of(data + b"x")
    if fault == "flipped":
        sent[size // 2] ^= 0x40
    pieces = {"short": [sent[:-1]], "long": [sent + b"!"]}.get(fault, [sent])

    def arrive() -> None:
        with store.writer() as writer:
            incoming = writer.receive(oid, RAW, len(data))
            for piece in pieces:
                incoming.write(bytes(piece))
            incoming.done()

    with pytest.raises(CorruptObjectError, match=oid.short):
        arrive()
    assert not store.has(oid)
    assert _temp_files(store) == []


def test_an_aborted_object_leaves_nothing(store: ObjectStore) -> None:
    data = os.urandom(2 * MIB)
    oid = ObjectId.of(data)
    with store.writer() as writer:
        incoming = writer.receive(oid, RAW, len(data))
        incoming.write(data[:MIB])
        incoming.abort()
    assert not store.has(oid)
    assert _temp_files(store) == []


def test_an_announced_length_beyond_any_object_is_refused(store: ObjectStore) -> None:
    with store.writer() as writer, pytest.raises(CorruptObjectError, match="announced"):
        writer.receive(ObjectId.of(b"x"), RAW, 1 << 40)
