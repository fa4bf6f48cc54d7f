"""modelkeep: version control and change management for machine-learning models.

>>> import modelkeep
>>> repo = modelkeep.Repo.init("work")
>>> v = repo.commit("churn", "model.skops", "first model", metrics={"f1": 0.81})
>>> repo.promote(v.rev, "production")
"""

from modelkeep.errors import (
    ConflictError,
    CorruptObjectError,
    ModelkeepError,
    NotFoundError,
    ObjectMissingError,
    RepositoryNotFoundError,
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
)
from modelkeep.revision import Revision

__version__ = "0.1.0"

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
    "RepositoryNotFoundError",
    "Revision",
    "StatusResult",
    "UsageError",
    "Version",
    "__version__",
]
