"""modelkeep: version control and change management for machine-learning models.

    >>> import modelkeep
    >>> repo = modelkeep.Repo.init("work")
    >>> v = repo.commit("churn", "model.skops", "first model", metrics={"f1": 0.81})
    >>> repo.promote(v.rev, "production")

Public names are imported on first use (PEP 562), so that `modelkeep --help` and
commands that never touch the registry do not pay for SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "ConflictError": "modelkeep.errors",
    "CorruptObjectError": "modelkeep.errors",
    "ModelkeepError": "modelkeep.errors",
    "NotFoundError": "modelkeep.errors",
    "ObjectMissingError": "modelkeep.errors",
    "RepositoryFormatError": "modelkeep.errors",
    "RepositoryNotFoundError": "modelkeep.errors",
    "StoreError": "modelkeep.errors",
    "UsageError": "modelkeep.errors",
    "CodeRef": "modelkeep.registry.records",
    "DatasetRef": "modelkeep.registry.records",
    "Event": "modelkeep.registry.records",
    "ModelInfo": "modelkeep.registry.records",
    "Ref": "modelkeep.registry.records",
    "Version": "modelkeep.registry.records",
    "Repo": "modelkeep.repo",
    "CheckoutResult": "modelkeep.results",
    "DiffResult": "modelkeep.results",
    "FileChange": "modelkeep.results",
    "FileInfo": "modelkeep.results",
    "FsckReport": "modelkeep.results",
    "GcReport": "modelkeep.results",
    "StatusResult": "modelkeep.results",
    "UpgradeReport": "modelkeep.results",
    "Revision": "modelkeep.revision",
}

__all__ = [
    "CheckoutResult",
    "CodeRef",
    "ConflictError",
    "CorruptObjectError",
    "DatasetRef",
    "DiffResult",
    "Event",
    "FileChange",
    "FileInfo",
    "FsckReport",
    "GcReport",
    "ModelInfo",
    "ModelkeepError",
    "NotFoundError",
    "ObjectMissingError",
    "Ref",
    "Repo",
    "RepositoryFormatError",
    "RepositoryNotFoundError",
    "Revision",
    "StatusResult",
    "StoreError",
    "UpgradeReport",
    "UsageError",
    "Version",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'modelkeep' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from modelkeep.errors import (
        ConflictError,
        CorruptObjectError,
        ModelkeepError,
        NotFoundError,
        ObjectMissingError,
        RepositoryFormatError,
        RepositoryNotFoundError,
        StoreError,
        UsageError,
    )
    from modelkeep.registry.records import CodeRef, DatasetRef, Event, ModelInfo, Ref, Version
    from modelkeep.repo import Repo
    from modelkeep.results import (
        CheckoutResult,
        DiffResult,
        FileChange,
        FileInfo,
        FsckReport,
        GcReport,
        StatusResult,
        UpgradeReport,
    )
    from modelkeep.revision import Revision
