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


class FrameSink(Protocol):
    """Where ``read_frames`` puts the objects of a stream as they arrive."""

    def begin(self, oid: ObjectId, codec: int, length: int) -> None: ...

    def data(self, piece: memoryview) -> None: ...

    def end(self) -> None: ...


def read_frames(pieces: Iterable[bytes | memoryview], sink: FrameSink) -> None:
    """The frames of a body arriving in pieces of any size, passed on as they come:
    an object's payload is never gathered here. FrameError if the body ends inside a
    frame."""
    head = bytearray()
    left = -1  # payload bytes still to come of the open object; -1: none is open
    for piece in pieces:
        view = memoryview(piece).cast("B")
        while view:
            if left < 0:
                take = HEADER.size - len(head)
                head += view[:take]
                view = view[take:]
                if len(head) < HEADER.size:
                    break
                raw, codec, left = HEADER.unpack(head)
                head.clear()
                sink.begin(ObjectId.from_bytes(raw), codec, left)
            else:
                part = view[:left]
                view = view[left:]
                left -= len(part)
                sink.data(part)
            if left == 0:
                sink.end()
                left = -1
    if head or left >= 0:
        raise FrameError("the body ends inside a frame: it was cut short")
