"""Bytes: chunking, hashing, compression, packing and backends. Knows nothing of models."""

from modelkeep.store.backends import Backend, LocalBackend, MemoryBackend
from modelkeep.store.chunking import Chunker, ChunkParams
from modelkeep.store.ids import ObjectId, hash_file
from modelkeep.store.objects import (
    ChunkRef,
    FileManifest,
    ObjectStore,
    ObjectWriter,
    Tree,
    TreeEntry,
)

__all__ = [
    "Backend",
    "ChunkParams",
    "ChunkRef",
    "Chunker",
    "FileManifest",
    "LocalBackend",
    "MemoryBackend",
    "ObjectId",
    "ObjectStore",
    "ObjectWriter",
    "Tree",
    "TreeEntry",
    "hash_file",
]
