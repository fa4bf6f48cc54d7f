"""Objects on the wire: a stream of frames, each an object as stored.

A frame is a fixed header (the object's id, its codec, the payload's length) and the
payload. Objects travel as they are stored (compressed or not) and are verified on
arrival against their id, so neither side recompresses what it only passes on.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Protocol

from modelkeep.store.ids import ObjectId

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

HEADER = struct.Struct("<32sBQ")  # id, codec, payload length


class FrameError(ValueError):
    """A body that is not a sequence of whole frames."""


def header(oid: ObjectId, codec: int, length: int) -> bytes:
    return HEADER.pack(oid.raw, codec, length)


def split(body: bytes | memoryview) -> Iterator[tuple[ObjectId, int, memoryview]]:
    """The frames of a whole body, as views into it."""
    view = memoryview(body)
    at = 0
    while at < len(view):
        if len(view) - at < HEADER.size:
            raise FrameError(f"a frame header is cut short at byte {at}")
        raw, codec, length = HEADER.unpack_from(view, at)
        at += HEADER.size
        if length > len(view) - at:
            raise FrameError(f"a frame at byte {at} declares {length} bytes, more than remain")
        yield ObjectId.from_bytes(raw), codec, view[at : at + length]
        at += length


class Readable(Protocol):
    """A body to read from: ``readinto`` fills the buffer it is given (fewer bytes only
    at the end; 0 once it has ended), as ``http.client.HTTPResponse`` and files do."""

    def readinto(self, buffer: memoryview) -> int: ...


class FrameSink(Protocol):
    """Where ``read_frames`` puts the objects of a stream as they arrive: the payload is
    read straight into the sink's own buffer (``room``), so no layer between the
    socket and the sink copies it."""

    def begin(self, oid: ObjectId, codec: int, length: int) -> None: ...

    def room(self) -> memoryview:
        """Where the next bytes of the open object go: at least one byte, and no more
        than the object has still to come."""
        ...

    def filled(self, count: int) -> None:
        """The first ``count`` bytes of the last ``room`` now hold the object's next bytes."""
        ...

    def end(self) -> None: ...


def read_frames(source: Readable, sink: FrameSink) -> None:
    """The frames of a body, passed on as they arrive: an object's payload is never
    gathered here. FrameError if the body ends inside a frame."""
    head = bytearray(HEADER.size)
    while True:
        got = _read_full(source, memoryview(head))
        if got == 0:
            return
        if got < HEADER.size:
            raise FrameError("the body ends inside a frame header: it was cut short")
        raw, codec, left = HEADER.unpack(head)
        sink.begin(ObjectId.from_bytes(raw), codec, left)
        while left:
            room = sink.room()
            count = source.readinto(room[:left])
            if not count:
                raise FrameError("the body ends inside a frame: it was cut short")
            sink.filled(count)
            left -= count
        sink.end()


def _read_full(source: Readable, view: memoryview) -> int:
    at = 0
    while at < len(view):
        count = source.readinto(view[at:])
        if not count:
            break
        at += count
    return at


class Pieces:
    """A ``Readable`` over a body that arrives as an iterable of pieces of any size (an
    httpx stream, a test): each byte is copied once more than a ``readinto`` from a
    socket would."""

    def __init__(self, pieces: Iterable[bytes | memoryview]) -> None:
        self._pieces: Iterator[bytes | memoryview] = iter(pieces)
        self._rest = memoryview(b"")

    def readinto(self, buffer: memoryview) -> int:
        at = 0
        while at < len(buffer):
            if not self._rest:
                piece = next(self._pieces, None)
                if piece is None:
                    break
                self._rest = memoryview(piece).cast("B")
                continue
            take = min(len(self._rest), len(buffer) - at)
            buffer[at : at + take] = self._rest[:take]
            self._rest = self._rest[take:]
            at += take
        return at
