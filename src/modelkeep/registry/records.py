"""Typed records the registry hands out: versions, refs, events, models."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime


def _plain(value: Any) -> Any:
    """JSON-ready form of a record field."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class DatasetRef:
    """A dataset a version was made from, by content."""

    path: str
    content_id: str
    size: int


@dataclass(frozen=True, slots=True)
class CodeRef:
    """The code a version came from: a git commit, and whether the tree was dirty."""

    commit: str
    dirty: bool
    repository: str
    branch: str | None = None


@dataclass(frozen=True, slots=True)
class Version:
    """One immutable version of a model, with its lineage."""

    model: str
    number: int
    branch: str
    parents: tuple[int, ...]
    message: str
    author: str
    created_at: datetime
    params: dict[str, Any] = field(hash=False)
    metrics: dict[str, Any] = field(hash=False)
    datasets: tuple[DatasetRef, ...]
    code: CodeRef | None
    environment: dict[str, Any] = field(hash=False)
    tree_id: str
    size: int
    file_count: int
    kind: str = "commit"
    status: str = "ok"
    # Format, class, libraries, signature and profile id; empty for plain files.
    artifact: dict[str, Any] = field(default_factory=dict, hash=False)
    # How the version was made beyond a plain commit (e.g. "update": strategy, gate).
    annotations: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def format(self) -> str:
        """The model format (sklearn, torch, …), or "files"."""
        return str(self.artifact.get("format", "files"))

    @property
    def rev(self) -> str:
        """The revision that names exactly this version, e.g. ``churn:3``."""
        return f"{self.model}:{self.number}"

    @property
    def parent(self) -> int | None:
        return self.parents[0] if self.parents else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _plain(asdict(self))
        out["rev"] = self.rev
        return out


@dataclass(frozen=True, slots=True)
class Ref:
    """A named pointer to a version: a branch (moves on commit), alias or tag."""

    model: str
    kind: str
    name: str
    version: int
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _plain(asdict(self))
        return out


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the append-only event log."""

    id: int
    at: datetime
    actor: str
    action: str
    model: str | None
    ref_kind: str | None
    ref_name: str | None
    before: int | None
    after: int | None
    message: str
    details: dict[str, Any] = field(hash=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _plain(asdict(self))
        return out


@dataclass(frozen=True, slots=True)
class Deployment:
    """A rollout of an alias: who, when, which versions, how, and where it stands."""

    id: int
    model: str
    alias: str
    strategy: str
    primary: int
    candidate: int
    percent: float
    steps: tuple[float, ...]
    interval_seconds: float | None
    status: str
    actor: str
    created_at: datetime
    updated_at: datetime
    stats: dict[str, Any] = field(hash=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _plain(asdict(self))
        return out


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model and a summary of its versions."""

    name: str
    default_branch: str
    created_at: datetime
    versions: int
    latest: int | None
    kind: str = "model"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _plain(asdict(self))
        return out
