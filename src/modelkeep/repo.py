"""``Repo``: the one public facade. Every method delegates to the engine's services
(``modelkeep._engine``) or to a job (update, monitor, deploy) that takes the engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Unpack

from modelkeep._engine import Engine, layout
from modelkeep._engine.drafts import CommitDraft, CommitOptions
from modelkeep._engine.engine import no_progress
from modelkeep.access.tokens import Tokens
from modelkeep.deploy.rollouts import Rollouts
from modelkeep.monitor.records import Records
from modelkeep.remote import Remotes
from modelkeep.remote.client import is_url

if TYPE_CHECKING:
    import os
    import threading
    from collections.abc import Callable, Mapping, Sequence
    from datetime import datetime, timedelta
    from pathlib import Path

    from modelkeep._engine.engine import ProgressStart
    from modelkeep._engine.exchange import Exchange
    from modelkeep._engine.shared import Location
    from modelkeep.deploy import RoutingTable
    from modelkeep.monitor.policy import Rule
    from modelkeep.monitor.schedule import ScheduledRun
    from modelkeep.profiles import Profile
    from modelkeep.registry import Event, ModelInfo, Ref, Registry, Version
    from modelkeep.registry.records import Deployment, Replica, Schedule
    from modelkeep.registry.salvage import Salvaged
    from modelkeep.results import (
        CheckoutResult,
        DiffResult,
        FileInfo,
        FsckReport,
        GcReport,
        StatusResult,
        TransferResult,
        UpgradeReport,
    )
    from modelkeep.revision import Revision
    from modelkeep.store import ChunkParams, ObjectStore, Tree
    from modelkeep.update.runner import UpdateResult


class Repo:
    """A modelkeep repository: versions of models, their refs, lineage and events.
    ``Repo(path)`` opens one (found upwards from ``path`` or the cwd, like git;
    ``MODELKEEP_REPO`` overrides), ``Repo.init(path)`` creates one."""

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, _engine: Engine | None = None
    ) -> None:
        self._e = _engine or Engine.open(path)  # _engine: init and memory made it already
        self._records = Records(self._e)
        self._rollouts = Rollouts(self._e)
        self.tokens = Tokens(self._e)  # access tokens of a team server: create, verify, …
        self.remotes = Remotes(self._e)  # team servers: add, push, fetch, pull

    @property
    def root(self) -> Path:
        return self._e.ctx.root

    @property
    def store(self) -> ObjectStore:
        return self._e.ctx.store

    @property
    def store_location(self) -> str:
        """Where the objects are: a folder, or an ``s3://`` URL."""
        return self._e.ctx.store_location()

    @property
    def registry(self) -> Registry:
        return self._e.ctx.registry

    @property
    def exchange(self) -> Exchange:
        """Identities, object negotiation, publishing: what a team server answers."""
        return self._e.exchange

    find = staticmethod(layout.find)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        token: str | None = None,
        **where: Unpack[Location],
    ) -> Repo:
        """Open a repository by folder (as ``Repo(path)``), with no folder by the URLs
        of its registry and store (``Repo.open(db="postgresql://…", store="s3://b/p")``),
        or a team server's by its URL (``Repo.open("http://host:8900", token=…)``; the
        token default: MODELKEEP_TOKEN, then the credentials file)."""
        if is_url(path):
            from modelkeep.over_http import RemoteRepo

            return RemoteRepo(path, token=token)
        return cls(_engine=Engine.open(path, **where))

    @classmethod
    def init(
        cls,
        path: str | os.PathLike[str] | None = ".",
        params: ChunkParams | None = None,
        **where: Unpack[Location],
    ) -> Repo:
        """Create a repository in ``path`` (made if missing) and open it. ``db`` (a
        PostgreSQL or SQLite URL) and ``store`` (``s3://BUCKET/PREFIX`` or a folder) put
        its registry and objects there (default: MODELKEEP_DB, MODELKEEP_STORE), the
        folder only pointing at them; ``path=None`` writes no folder at all."""
        return cls(_engine=Engine.init(path, params, **where))

    @classmethod
    def clone(
        cls,
        url: str,
        path: str | os.PathLike[str],
        model: str | None = None,
        *,
        token: str | None = None,
        progress: ProgressStart = no_progress,
    ) -> tuple[Repo, TransferResult]:
        """A new repository in ``path`` with the server at ``url`` as ``origin``, and
        ``model``'s versions (default: every model the token can read) pulled."""
        repo = cls.init(path)
        repo.remotes.add("origin", url)
        return repo, repo.remotes.pull(model, token=token, progress=progress)

    @classmethod
    def memory(cls, params: ChunkParams | None = None) -> Repo:
        """A throw-away repository in memory, for tests and experiments."""
        return cls(_engine=Engine.memory(params))

    @classmethod
    def salvage_registry(cls, path: str | os.PathLike[str] | None = None) -> Salvaged:
        """Rebuild a damaged registry from every row still readable (the file is kept)."""
        return layout.salvage(path)

    @classmethod
    def repair(
        cls, path: str | os.PathLike[str] | None = None, progress: ProgressStart = no_progress
    ) -> FsckReport:
        """``fsck(repair=True)``, also when the registry is too damaged to open."""
        from modelkeep._engine.maintenance import repair

        return repair(path, progress)

    def close(self) -> None:
        self._e.close()

    def __enter__(self) -> Repo:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Repo({str(self.root)!r})"

    def resolve(self, rev: str | Revision) -> Version:
        """The version a revision names (see ``modelkeep.revision``)."""
        return self._e.versions.resolve(rev)

    def models(self) -> list[ModelInfo]:
        return self._e.versions.models()

    def log(
        self, name: str, branch: str | None = None, *, limit: int | None = None
    ) -> list[Version]:
        """Versions of ``name`` newest first (at most ``limit``; ``branch``: its own)."""
        return self._e.versions.log(name, branch, limit=limit)

    def search(
        self,
        name: str,
        where: str | None = None,
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[Version]:
        """Versions matching ``where`` ("metrics.f1 > 0.9 and labels.stage = 'prod'"), in
        ``order_by`` ("metrics.f1", "metrics.rmse asc"); see ``registry.query``."""
        return self._e.versions.search(name, where, order_by, limit)

    def show(self, rev: str) -> Version:
        return self._e.versions.show(rev)

    def tree(self, version: Version) -> Tree:
        return self._e.versions.tree(version)

    def files(self, rev: str | Version) -> list[FileInfo]:
        return self._e.versions.files(rev)

    def load(self, rev: str | Version, *, trusted: Any = None) -> Any:
        """The model a version holds (``trusted``: types beyond skops' defaults)."""
        return self._e.versions.load(rev, trusted=trusted)

    def profile(self, rev: str | Version) -> Profile | None:
        """The reference profile stored with a version (None if it has none)."""
        return self._e.versions.profile(rev)

    def commit(
        self,
        name: str,
        source: Any,
        message: str = "",
        *,
        progress: ProgressStart = no_progress,
        **options: Unpack[CommitOptions],
    ) -> Version:
        """Store a model as the next version of ``name`` (options: ``CommitDraft``'s)."""
        return self._e.commits.commit(CommitDraft(name, source, message, **options), progress)

    def data_add(
        self,
        name: str,
        path: str | os.PathLike[str],
        message: str = "",
        *,
        author: str | None = None,
        progress: ProgressStart = no_progress,
    ) -> Version:
        """Store a dataset file (CSV, Parquet) as the next version of dataset ``name``."""
        return self._e.commits.data_add(name, path, message, author=author, progress=progress)

    def refs(self, name: str, kind: str | None = None) -> list[Ref]:
        return self._e.refs.refs(name, kind)

    def history(self, rev: str) -> list[Event]:
        """Every move of a ref (``churn@production``), or every event of a model."""
        return self._e.refs.history(rev)

    def events(
        self, model: str | None = None, limit: int | None = None, *, action: str | None = None
    ) -> list[Event]:
        return self._e.refs.events(model, limit, action)

    def record_event(
        self,
        name: str,
        action: str,
        message: str,
        *,
        ref: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Append a non-moving event (``monitor.alert``, ``policy.set``…) to the log."""
        self._e.refs.record_event(name, action, message, ref=ref, details=details)

    def branch(self, name: str, new: str, start: str | None = None) -> Ref:
        """Create branch ``new`` of model ``name`` at ``start`` (default: the head)."""
        return self._e.refs.branch(name, new, start)

    def delete_branch(self, name: str, branch: str) -> Ref:
        return self._e.refs.delete_branch(name, branch)

    def set_alias(
        self, alias: str, rev: str, message: str = "", expected: int | None = None
    ) -> Ref:
        """Point ``churn@production`` at ``rev`` (``expected``: only if still at that number)."""
        return self._e.refs.set_alias(alias, rev, message, expected)

    def delete_alias(self, alias: str, message: str = "") -> Ref:
        return self._e.refs.delete_alias(alias, message)

    def tag(self, rev: str, tag: str, message: str = "") -> Ref:
        """Name a version for good: tags never move."""
        return self._e.refs.tag(rev, tag, message)

    def delete_tag(self, tag: str, message: str = "") -> Ref:
        return self._e.refs.delete_tag(tag, message)

    def label(
        self, rev: str, labels: Mapping[str, str] | None = None, *, message: str = "", **more: str
    ) -> Version:
        """Set labels of a version (``label("churn:3", reviewed_by="alice")``)."""
        return self._e.refs.label(rev, {**(labels or {}), **more}, (), message)

    def unlabel(self, rev: str, *keys: str, message: str = "") -> Version:
        return self._e.refs.label(rev, {}, keys, message)

    def default_branch(self, name: str) -> str:
        return self._e.refs.default_branch(name)

    def promote(self, rev: str, alias: str, message: str = "") -> tuple[int | None, Ref]:
        """Move alias ``alias`` of the model forward to the version ``rev`` names."""
        return self._e.refs.promote(rev, alias, message)

    def rollback(
        self, alias: str, to: str | None = None, message: str = ""
    ) -> tuple[int | None, Ref]:
        """Move ``churn@production`` back: to ``to``, or where it pointed before."""
        return self._e.refs.rollback(alias, to, message)

    def checkout(
        self,
        rev: str | Version,
        dest: str | os.PathLike[str] | None = None,
        *,
        force: bool = False,
        progress: ProgressStart = no_progress,
    ) -> CheckoutResult:
        """Write a version's files into ``dest`` (default ./MODEL), conflicts first."""
        return self._e.worktree.checkout(rev, dest, force=force, progress=progress)

    def status(
        self, rev: str | Version, path: str | os.PathLike[str] | None = None
    ) -> StatusResult:
        """Compare folder ``path`` (default ./MODEL) with the version ``rev`` names."""
        return self._e.worktree.status(rev, path)

    def diff(
        self,
        rev_a: str,
        rev_b: str,
        *,
        data: str | os.PathLike[str] | None = None,
        target: str | None = None,
        trusted: Any = None,
    ) -> DiffResult:
        """What changed from ``rev_a`` to ``rev_b`` (``data``: and in predictions)."""
        return self._e.compare.diff(rev_a, rev_b, data=data, target=target, trusted=trusted)

    def fsck(self, progress: ProgressStart = no_progress, *, repair: bool = False) -> FsckReport:
        """Verify the registry, every stored object and every version's tree."""
        return self._e.maintenance.fsck(progress, repair=repair)

    def upgrade(self, progress: ProgressStart = no_progress) -> UpgradeReport:
        """Bring the repository to this release's format (stop older releases first)."""
        return self._e.maintenance.upgrade(progress)

    def gc(self) -> GcReport:
        """Delete objects no version references (safe beside running commits)."""
        return self._e.maintenance.gc()

    def update(self, rev: str, **options: Any) -> UpdateResult:
        """Train a candidate from ``rev``, gate it (options: ``run_update``'s)."""
        from modelkeep.update import run_update

        return run_update(self._e, rev, **options)

    def deploy(
        self, name: str, *, to: str = "production", strategy: str = "blue-green",
        candidate: str | None = None, percent: float = 10.0, steps: Sequence[float] = (),
        interval: float | str | None = None, message: str = "",
    ) -> Deployment:  # fmt: skip
        """Start a rollout of ``candidate`` to ``name@to`` (blue-green, canary, shadow)."""
        return self._rollouts.deploy(
            name, to=to, strategy=strategy, candidate=candidate, percent=percent, steps=steps,
            interval=interval, message=message,
        )  # fmt: skip

    def end_deployment(
        self, name: str, *, to: str = "production", promote: bool, message: str = ""
    ) -> Deployment:
        """Finish the active rollout of ``name@to``: promote its candidate, or abort."""
        return self._rollouts.end_deployment(name, to=to, promote=promote, message=message)

    def deployments(self, name: str | None = None) -> list[Deployment]:
        return self._rollouts.deployments(name)

    def replicas(self, name: str | None = None) -> list[Replica]:
        """Which version each replica of each server serves, as it last reported it."""
        return self._rollouts.replicas(name)

    def routing(self, name: str, alias: str) -> RoutingTable:
        """What a server of ``name@alias`` should serve right now."""
        return self._rollouts.routing(name, alias)

    def monitor(self, rev: str, data: str | os.PathLike[str], **options: Any) -> dict[str, Any]:
        """Check a batch against the version's reference profile and store the report."""
        from modelkeep.monitor.periodic import run_check

        return run_check(self._e, rev, data, **options)

    def reports(
        self, rev: str, limit: int | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """Monitoring reports of a version, newest first."""
        return self._records.reports(rev, limit, kind)

    def model_reports(
        self,
        name: str,
        limit: int | None = None,
        since: datetime | None = None,
        *,
        profiles: bool = False,
    ) -> list[dict[str, Any]]:
        """Monitoring reports of every version of model ``name``, newest first."""
        return self._records.model_reports(name, limit, since, profiles=profiles)

    def report_html(self, rev: str, limit: int | None = 1000) -> str:
        """A self-contained HTML page on the monitoring of ``rev``'s model."""
        from modelkeep.monitor.htmlreport import render

        return render(self._e, rev, limit=limit)

    def set_policy(
        self, name: str, text: str, message: str = "", *, fmt: str | None = None
    ) -> list[Rule]:
        """Attach a monitoring policy (TOML or YAML text) to model ``name``."""
        return self._records.set_policy(name, text, message, fmt=fmt)

    def policy(self, name: str) -> list[Rule] | None:
        """The rules attached to ``name`` (None if it has no policy)."""
        return self._records.policy(name)

    def schedule(
        self,
        rev: str,
        every: str | float | timedelta,
        data: str | os.PathLike[str],
        target: str | None = None,
        message: str = "",
    ) -> Schedule:
        """Check ``rev`` every ``every`` on ``data`` (a template filled per slot)."""
        return self._records.schedule(rev, every, data, target, message)

    def schedules(
        self, name: str | None = None, *, include_removed: bool = False
    ) -> list[Schedule]:
        return self._records.schedules(name, include_removed=include_removed)

    def unschedule(self, schedule_id: int, message: str = "") -> Schedule:
        return self._records.unschedule(schedule_id, message)

    def run_due(self, now: datetime | None = None) -> list[ScheduledRun]:
        """Run every scheduled check that is due at ``now``, once per slot."""
        from modelkeep.monitor.schedule import run_due

        return run_due(self._e, now)

    def run_daemon(
        self,
        *,
        poll: float = 30.0,
        once: bool = False,
        stop: threading.Event | None = None,
        on_run: Callable[[ScheduledRun], None] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> int:
        """Run due checks until ``stop`` (or ``once``); returns how many failed."""
        from modelkeep.monitor.schedule import daemon

        return daemon(self._e, poll=poll, once=once, stop=stop, on_run=on_run, on_error=on_error)
