"""Metadata: models, versions, refs, lineage and the event log (SQLAlchemy).

Knows nothing of bytes on disk: a version names its tree by id, nothing more.
"""

from modelkeep.registry.records import CodeRef, DatasetRef, Event, ModelInfo, Ref, Version
from modelkeep.registry.registry import REF_KINDS, Registry

__all__ = [
    "REF_KINDS",
    "CodeRef",
    "DatasetRef",
    "Event",
    "ModelInfo",
    "Ref",
    "Registry",
    "Version",
]
