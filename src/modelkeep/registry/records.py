"""Typed records the registry hands out: versions, refs, events, models, schedules,
replicas, tokens."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

_R = TypeVar("_R")


def _plain(value: Any) -> Any:
    """JSON-ready form of a record field."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _shallow(record: Any) -> dict[str, Any]:
    """A record's fields as a dict, values as they are (no copies)."""
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


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
    # Key → value set after the commit (reviewed_by, stage): they may change, the
    # version does not; every change is an event.
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    # The revision that names exactly this version, e.g. ``churn:3``. A field (not a
    # property) so that orjson writes it when it writes the record itself, which it does
    # many times faster than through to_dict (`log --json --all` of many versions).
    rev: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rev", f"{self.model}:{self.number}")

    @property
    def format(self) -> str:
        """The model format (sklearn, torch, …), or "files"."""
        return str(self.artifact.get("format", "files"))

    @property
    def parent(self) -> int | None:
        return self.parents[0] if self.parents else None

    def to_dict(self) -> dict[str, Any]:
        # Field by field, shallow: asdict() deep-copies every params/metrics/lineage
        # document, which was most of `log --json --all`'s time on many versions.
        out = _shallow(self)
        out["parents"] = list(self.parents)
        out["created_at"] = self.created_at.isoformat()
        out["datasets"] = [_shallow(d) for d in self.datasets]
        out["code"] = None if self.code is None else _shallow(self.code)
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
    # Through a team server: the id of the token the change was made with, and the
    # client's address (None for changes made on the repository itself).
    token_id: str | None = None
    address: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _plain(asdict(self))
        return out


# What a token may do, each including the ones before it.
TOKEN_SCOPES = ("read", "write", "admin")


@dataclass(frozen=True, slots=True)
class Token:
    """An access token of a team server: ``user`` may do what ``scope`` allows on the
    models whose names match ``models`` (an fnmatch pattern). The secret itself is
    never stored; ``secret_hash`` (SHA-256) is left out of ``to_dict`` and ``repr``."""

    id: str
    user: str
    scope: str  # read | write | admin
    models: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None
    last_used_at: datetime | None
    secret_hash: str = field(repr=False, compare=False)

    def state(self, now: datetime | None = None) -> str:
        """active, expired or revoked (at ``now``, default: now)."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC)):
            return "expired"
        return "active"

    def to_dict(self) -> dict[str, Any]:
        out = _shallow(self)
        del out["secret_hash"]
        out = {k: _plain(v) for k, v in out.items()}
        out["state"] = self.state()
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


# What a replica reports of itself: loading its first version, answering requests, unable
# to load or serve, or shut down.
REPLICA_STATES = ("starting", "serving", "failed", "stopped")


@dataclass(frozen=True, slots=True)
class Replica:
    """What one replica of a server of ``model@alias`` serves, as it last reported it.

    ``server`` names the server ("ray:churn" for a Ray Serve application,
    "local:127.0.0.1:8080" for a local one), ``replica`` the replica within it. A gauge,
    overwritten by every report: ``seen_at`` is when it last reported."""

    model: str
    alias: str
    server: str
    replica: str
    host: str
    pid: int
    version: int | None  # the version number that answers requests (None: nothing loaded)
    versions: tuple[int, ...]  # every version loaded (beside it: a candidate, the previous)
    state: str  # starting | serving | failed | stopped
    error: str | None
    started_at: datetime
    seen_at: datetime
    # The revision that names the version served, e.g. ``churn:5`` (None: nothing loaded).
    rev: str | None = field(init=False)

    def __post_init__(self) -> None:
        rev = None if self.version is None else f"{self.model}:{self.version}"
        object.__setattr__(self, "rev", rev)

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


_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_LAST_SECOND = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp())


def period_text(seconds: int) -> str:
    """``3600`` → ``1h``: the period in the largest unit that divides it."""
    return next(f"{seconds // size}{unit}" for unit, size in _UNITS if seconds % size == 0)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A periodic check of a revision, run once per slot of ``every`` seconds.

    Slots are aligned to the Unix epoch (UTC): every hour on the hour, every day at
    midnight UTC. A slot runs only once, and never one before the schedule existed.
    """

    id: int
    model: str
    revision: str
    every: int
    data: str
    target: str | None
    created_at: datetime
    created_by: str
    last_slot: datetime | None
    last_run_at: datetime | None
    last_status: str | None  # running | ok | drift | failed
    last_report: int | None
    last_error: str | None
    active: bool

    @property
    def period(self) -> str:
        """``every`` as people write it: 1h, 1d, 90s."""
        return period_text(self.every)

    @property
    def first_slot(self) -> int:
        """Unix seconds of the first slot at or after the schedule's creation."""
        return -(-math.ceil(self.created_at.timestamp()) // self.every) * self.every

    def due(self, now: datetime) -> int | None:
        """The slot to run at ``now`` (the latest one that has begun), if it has not run.
        Earlier slots that were missed are not returned: they are caught up by this one."""
        slot = math.floor(now.timestamp()) // self.every * self.every
        if slot < self.first_slot:
            return None
        if self.last_slot is not None and slot <= int(self.last_slot.timestamp()):
            return None
        return slot

    @property
    def next_due(self) -> datetime:
        """When the next slot begins; in the past when runs were missed (they are caught
        up once, by the latest slot)."""
        slot = (
            self.first_slot
            if self.last_slot is None
            else max(self.first_slot, int(self.last_slot.timestamp()) + self.every)
        )
        # Releases before periods were bounded stored some that end past year 9999.
        return datetime.fromtimestamp(min(slot, _LAST_SECOND), UTC)

    @property
    def outcome(self) -> str:
        """The last run, in a few words."""
        if self.last_status is None:
            return "not run yet"
        if self.last_status == "failed":
            return f"failed: {self.last_error}"
        if self.last_status == "running":
            return "running"
        return f"report #{self.last_report}" + (", drift" if self.last_status == "drift" else "")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _plain(asdict(self))
        out["next_due"] = self.next_due.isoformat()
        out["outcome"] = self.outcome
        return out


def from_dict(cls: type[_R], doc: dict[str, Any]) -> _R:
    """The record of type ``cls`` whose ``to_dict()`` is ``doc`` (as a team server
    sends it): timestamps parsed, lists made tuples, nested records made again."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    kwargs = {
        f.name: _typed(hints[f.name], doc[f.name])
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.init and f.name in doc
    }
    return cls(**kwargs)


def _typed(hint: Any, value: Any) -> Any:
    import dataclasses
    import types
    import typing

    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _typed(options[0], value) if len(options) == 1 else value
    if hint is datetime:
        return datetime.fromisoformat(value)
    if origin is tuple:
        inner = typing.get_args(hint)[0]
        return tuple(_typed(inner, v) for v in value)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value)  # type: ignore[arg-type]
    return value
