"""A stored file read in place: its bytes handed out where they lie, never checked out.

Loading a model's weights from the store need not write them into a file and read that
back: each large chunk is mapped from its loose file (``ObjectStore.mapped``, verified
once per machine), each small one read and verified into memory of its own. A view of
either can back a tensor directly, as ``safetensors`` backs one with a map of its file.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from modelkeep.store.objects import MAP_MIN

if TYPE_CHECKING:
    from modelkeep.store.ids import ObjectId
    from modelkeep.store.objects import FileManifest, ObjectStore


class StoredFile:
    """Byte ranges of one stored file, as writable views (copy-on-write where mapped:
    a change to a view never reaches the store)."""

    def __init__(self, store: ObjectStore, manifest: FileManifest) -> None:
        self._store = store
        self._chunks = manifest.chunks
        self.size = manifest.size
        self._starts = manifest.starts()
        self._views: dict[int, memoryview] = {}
        self._small: dict[ObjectId, bytes | memoryview] | None = None

    def _chunk(self, i: int) -> memoryview:
        view = self._views.get(i)
        if view is None:
            chunk = self._chunks[i]
            data: bytes | bytearray | memoryview | None = self._store.mapped(chunk)
            if data is None:
                if self._small is None:  # the first small chunk fetches them all
                    self._small = self._store.get_packed(
                        c.id for c in self._chunks if c.size < MAP_MIN
                    )
                data = self._small.pop(chunk.id, None)
                if data is None:
                    data = self._store.get(chunk.id)
                # A copy of its own is writable, and becomes the tensor's memory.
                data = bytearray(data)
            view = memoryview(data)
            self._views[i] = view
        return view

    def view(self, begin: int, end: int) -> memoryview:
        """Bytes ``begin:end``: a view into the chunk that holds them all, else a copy
        gathered from the chunks they span. Raises ``ValueError`` outside the file."""
        if not 0 <= begin <= end <= self.size:
            raise ValueError(f"bytes {begin}:{end} are outside a file of {self.size}")
        if begin == end:
            return memoryview(bytearray())
        i = bisect.bisect_right(self._starts, begin) - 1
        lo = begin - self._starts[i]
        if lo + (end - begin) <= self._chunks[i].size:
            return self._chunk(i)[lo : lo + end - begin]
        out = memoryview(bytearray(end - begin))
        done = 0
        while done < len(out):
            piece = self._chunk(i)[lo : lo + len(out) - done]
            out[done : done + len(piece)] = piece
            done += len(piece)
            i, lo = i + 1, 0
            if done < len(out):
                self._views.pop(i - 1, None)  # a big tensor's pieces are not needed again
        return out

    def read(self, begin: int, end: int) -> bytes:
        return bytes(self.view(begin, end))
