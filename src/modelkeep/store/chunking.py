"""Where files are cut into chunks.

Format-aware split points come first: a safetensors file is cut at tensor
boundaries, so an unchanged tensor stays an unchanged chunk whatever happens to
its neighbours. Everything else (and any tensor too large for one chunk) is cut
by content-defined chunking (FastCDC), so an insertion does not shift every
later chunk.
"""

from __future__ import annotations

import functools
import json
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator


@dataclass(frozen=True, slots=True)
class ChunkParams:
    """Chunking settings; fixed per repository so identical files chunk identically."""

    min_size: int = 256 << 10
    avg_size: int = 1 << 20
    max_size: int = 4 << 20
    # A tensor up to this size is kept as one chunk.
    max_tensor_chunk: int = 64 << 20

    def to_json(self) -> dict[str, int]:
        return {
            "min_size": self.min_size,
            "avg_size": self.avg_size,
            "max_size": self.max_size,
            "max_tensor_chunk": self.max_tensor_chunk,
        }

    @classmethod
    def from_json(cls, data: dict[str, int]) -> ChunkParams:
        return cls(**data)


Span = tuple[int, int]  # (offset, length)

_SAFETENSORS_MAX_HEADER = 100 << 20


def safetensors_spans(buf: memoryview) -> list[Span] | None:
    """Header + one span per tensor (in file order), or None if not safetensors."""
    size = len(buf)
    if size < 10:
        return None
    (header_len,) = struct.unpack_from("<Q", buf, 0)
    if header_len > _SAFETENSORS_MAX_HEADER or 8 + header_len > size:
        return None
    if bytes(buf[8:9]) != b"{":
        return None
    try:
        header = json.loads(bytes(buf[8 : 8 + header_len]))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(header, dict):
        return None
    data_start = 8 + header_len
    offsets: list[tuple[int, int]] = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = (int(x) for x in info["data_offsets"])
        except (TypeError, KeyError, ValueError):
            return None
        if not 0 <= begin <= end or data_start + end > size:
            return None
        offsets.append((begin, end))
    offsets.sort()
    spans: list[Span] = [(0, data_start)]
    cursor = data_start
    for begin, end in offsets:
        begin += data_start
        end += data_start
        if begin < cursor:  # overlapping tensors: not a layout we can trust
            return None
        if begin > cursor:
            spans.append((cursor, begin - cursor))
        if end > begin:
            spans.append((begin, end - begin))
        cursor = end
    if cursor < size:
        spans.append((cursor, size - cursor))
    return spans


class Chunker:
    """Cuts a buffer into spans according to ``ChunkParams``."""

    def __init__(self, params: ChunkParams) -> None:
        self.params = params

    @functools.cached_property
    def _cdc(self) -> Any:
        import pyfastcdc  # made on first cut: a command that only reads never chunks

        p = self.params
        return pyfastcdc.FastCDC(avg_size=p.avg_size, min_size=p.min_size, max_size=p.max_size)

    def _cdc_spans(self, buf: memoryview, base: int) -> Iterator[Span]:
        if len(buf) <= self.params.max_size:
            if len(buf):
                yield (base, len(buf))
            return
        for c in self._cdc.cut_buf(buf):
            yield (base + c.offset, c.length)

    def cut(self, segment: memoryview, base: int = 0) -> Iterator[Span]:
        """Spans of one format-aware segment (a safetensors header or tensor) that
        starts at ``base``: whole when it fits one chunk, else cut by content."""
        if len(segment) <= self.params.max_tensor_chunk:
            if len(segment):
                yield (base, len(segment))
            return
        yield from self._cdc_spans(segment, base)

    def iter_spans(self, buf: memoryview) -> Iterator[Span]:
        """Ordered, contiguous spans covering ``buf`` exactly, as they are found (so
        storing the first chunks can start while later ones are being cut)."""
        if not len(buf):
            return
        segments = safetensors_spans(buf)
        if segments is None:
            yield from self._cdc_spans(buf, 0)
            return
        for offset, length in segments:
            yield from self.cut(buf[offset : offset + length], offset)

    def spans(self, buf: memoryview) -> list[Span]:
        """Ordered, contiguous spans covering ``buf`` exactly."""
        return list(self.iter_spans(buf))
