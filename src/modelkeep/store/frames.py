"""Objects on the wire: a stream of frames, each an object as stored.

A frame is a fixed header (the object's id, its codec, the payload's length) and the
payload. Objects travel as they are stored (compressed or not) and are verified on
arrival against their id, so neither side recompresses what it only passes on.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from modelkeep.store.ids import ObjectId

if TYPE_CHECKING:
    from collections.abc import Iterator

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
