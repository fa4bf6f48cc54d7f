"""Object ids: BLAKE3 digests as small value objects, never bare hex strings."""

from __future__ import annotations

import re
from dataclasses import dataclass

import blake3

ALGORITHM = "blake3"
_HEX = re.compile(r"[0-9a-f]{64}")
# Below this size threading costs more than it saves.
_THREADED_FROM = 4 << 20


@dataclass(frozen=True, slots=True, order=True)
class ObjectId:
    """The BLAKE3 digest of an object's uncompressed content."""

    hex: str

    def __post_init__(self) -> None:
        if not _HEX.fullmatch(self.hex):
            raise ValueError(f"not a {ALGORITHM} object id: {self.hex!r}")

    @classmethod
    def of(cls, data: bytes | bytearray | memoryview) -> ObjectId:
        """Hash ``data``; large inputs use every core."""
        threads = blake3.blake3.AUTO if len(data) >= _THREADED_FROM else 1
        return cls(blake3.blake3(data, max_threads=threads).hexdigest())

    @classmethod
    def from_bytes(cls, raw: bytes) -> ObjectId:
        return cls(raw.hex())

    @property
    def raw(self) -> bytes:
        return bytes.fromhex(self.hex)

    @property
    def short(self) -> str:
        return self.hex[:12]

    def fanout(self) -> str:
        """Relative key of a loose object: ``ab/cdef…`` keeps folders small."""
        return f"{self.hex[:2]}/{self.hex[2:]}"

    def __str__(self) -> str:
        return self.hex


def hasher() -> blake3.blake3:
    """An incremental hash of content arriving in pieces; its ``digest()`` is an id's
    ``raw``."""
    return blake3.blake3()


def hash_file(path: str) -> ObjectId:
    """Whole-file BLAKE3 (used for datasets); memory-mapped and multithreaded."""
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    hasher.update_mmap(path)
    return ObjectId(hasher.hexdigest())
