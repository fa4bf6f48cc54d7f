"""Typed results of repository operations (what faces render)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


def _dict(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = asdict(obj)
    return out


@dataclass(frozen=True, slots=True)
class FileInfo:
    """One file of a version."""

    path: str
    size: int
    mode: int
    content_id: str
    chunks: int

    def to_dict(self) -> dict[str, Any]:
        return _dict(self)


@dataclass(frozen=True, slots=True)
class CheckoutResult:
    """What checkout did: files written and files already right."""

    rev: str
    dest: str
    written: list[str]
    unchanged: list[str]
    bytes_written: int

    def to_dict(self) -> dict[str, Any]:
        return _dict(self)


@dataclass(frozen=True, slots=True)
class StatusResult:
    """How a folder compares with a version."""

    rev: str
    path: str
    modified: list[str]
    missing: list[str]
    untracked: list[str]
    unchanged: int

    @property
    def clean(self) -> bool:
        """True when every file of the version is there, unchanged (untracked files allowed)."""
        return not self.modified and not self.missing

    def to_dict(self) -> dict[str, Any]:
        out = _dict(self)
        out["clean"] = self.clean
        return out


@dataclass(frozen=True, slots=True)
class FileChange:
    """A file that differs between two versions."""

    path: str
    size_before: int | None
    size_after: int | None
    # Bytes of the new file held in chunks the old one does not have: what the
    # change costs in storage.
    bytes_changed: int
    chunks_changed: int
    chunks_total: int
    mode_before: int | None = None
    mode_after: int | None = None


@dataclass(frozen=True, slots=True)
class DiffResult:
    """Two versions compared: files, params and metrics."""

    a: str
    b: str
    added: list[FileChange]
    removed: list[FileChange]
    changed: list[FileChange]
    params: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    metrics: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    # (what changed, whether it breaks callers)
    signature: list[tuple[str, bool]] = field(default_factory=list)
    tensors: list[Any] = field(default_factory=list)  # TensorDiff per safetensors file
    model: dict[str, Any] = field(default_factory=dict)  # scikit-learn specifics
    predictions: dict[str, Any] | None = None

    @property
    def identical(self) -> bool:
        return not (self.added or self.removed or self.changed or self.params or self.metrics)

    @property
    def breaking(self) -> bool:
        return any(b for _, b in self.signature)

    def to_dict(self) -> dict[str, Any]:
        tensors = [t.to_dict() for t in self.tensors]
        out = _dict(self)
        out["tensors"] = tensors
        out["signature"] = [{"change": c, "breaking": b} for c, b in self.signature]
        out["breaking"] = self.breaking
        out["params"] = {k: {"before": a, "after": b} for k, (a, b) in self.params.items()}
        out["metrics"] = {k: {"before": a, "after": b} for k, (a, b) in self.metrics.items()}
        return out


@dataclass(frozen=True, slots=True)
class FsckReport:
    """What fsck verified and what it found wrong."""

    objects_checked: int
    versions_checked: int
    problems: list[str]
    unreferenced: int
    # With repair, of a damaged registry: what the salvage kept and lost (salvage.py).
    salvaged: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        out = _dict(self)
        out["ok"] = self.ok
        return out


@dataclass(frozen=True, slots=True)
class UpgradeReport:
    """What upgrade changed: the repository format, and objects rewritten for it."""

    format_before: int
    format_after: int
    objects_rewritten: int
    bytes_rewritten: int

    def to_dict(self) -> dict[str, Any]:
        return _dict(self)


@dataclass(frozen=True, slots=True)
class GcReport:
    """What gc removed."""

    objects_removed: int
    bytes_freed: int
    temp_files_removed: int

    def to_dict(self) -> dict[str, Any]:
        return _dict(self)


@dataclass(frozen=True, slots=True)
class Mapped:
    """One version on both sides of a transfer: its number here and there."""

    model: str
    local: int
    remote: int
    identity: str
    new: bool  # whether this transfer wrote it on the receiving side

    def __str__(self) -> str:
        return f"{self.model}:{self.local} (local) = {self.model}:{self.remote}"

    def to_dict(self) -> dict[str, Any]:
        return _dict(self)


@dataclass(frozen=True, slots=True)
class TransferResult:
    """What a push, pull, fetch or clone moved."""

    remote: str
    direction: str  # "push" or "pull"
    versions: tuple[Mapped, ...]
    objects_sent: int  # objects that crossed (the rest were there already)
    bytes_sent: int  # their payload bytes, as stored (compressed where it paid)
    objects_skipped: int  # objects the other side had
    aliases: dict[str, int] = field(default_factory=dict)  # aliases moved → version

    @property
    def new_versions(self) -> int:
        return sum(1 for m in self.versions if m.new)

    def to_dict(self) -> dict[str, Any]:
        out = _dict(self)
        out["new_versions"] = self.new_versions
        return out
