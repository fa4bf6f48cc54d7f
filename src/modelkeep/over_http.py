"""``Repo.open("http://host:8900", token=…)``: the facade over a team server.

The same methods and the same typed records as a local repository, for what the
server offers: reading (models, log, show, files, refs, events, deployments, diff),
moving aliases (compare-and-swap), promote and rollback, commit, data_add, load and
checkout, policies and schedules, and gc and fsck (admin tokens).

Commit and load go through a cache repository of this machine's own
(``$XDG_CACHE_HOME/modelkeep/servers/<hash of the URL>``): a commit is chunked there,
only the chunks the server lacks are sent, and the server then numbers the version on
top of its branch head as it is at that moment (so many clients committing at once
get gap-free numbers there). A load fetches only the chunks not cached already and
loads from the cache as a local load does; a checkout the same, then writes the files
as a local checkout does. ``data_add`` is a commit of a dataset: the file is hashed,
profiled and chunked here, and its chunks are sent (the server cannot read a file of
this machine). Methods the server does not offer yet raise UsageError saying so,
rather than act on the cache.
"""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from pathlib import Path
from stat import S_ISLNK
from typing import TYPE_CHECKING, Any, Unpack

from modelkeep._engine import Engine, layout
from modelkeep._engine.drafts import CommitDraft, CommitOptions
from modelkeep._engine.engine import no_progress
from modelkeep.errors import NotFoundError, RepositoryExistsError, UsageError
from modelkeep.over_http_jobs import JobsOverHttp
from modelkeep.registry import Event, ModelInfo, Ref, Version
from modelkeep.registry.records import Deployment, Replica, Schedule, from_dict
from modelkeep.remote import credentials, transfer
from modelkeep.remote.client import Client
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
from modelkeep.revision import Revision, parse_alias
from modelkeep.store import ObjectId, locks

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime

    from modelkeep._engine.engine import ProgressStart
    from modelkeep.monitor.policy import Rule
    from modelkeep.profiles import Profile
    from modelkeep.revision import Revision as RevisionType


def cache_folder(url: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    key = hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]
    return Path(base) / "modelkeep" / "servers" / key


def _cache_engine(url: str) -> Engine:
    folder = cache_folder(url)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with locks.exclusive(folder.parent / f"{folder.name}.lock"):
        try:
            return Engine(layout.init_folder(folder))
        except RepositoryExistsError:
            return Engine(layout.open_local(folder))


class RemoteRepo(JobsOverHttp, Repo):
    """A team server's repository, through its HTTP API (see the module's docstring)."""

    def __init__(self, url: str, *, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self._client = Client(self.url, credentials.token_for(self.url, token))
        self.user = self._client.get("/whoami")["user"]  # a bad token fails here, once
        self._e = _cache_engine(self.url)

    @property
    def root(self) -> Path:
        return Path.cwd()

    @property
    def store_location(self) -> str:
        return self.url

    def close(self) -> None:
        self._client.close()
        self._e.close()

    def __repr__(self) -> str:
        return f"Repo({self.url!r})"

    # -- reading ---------------------------------------------------------------------

    def resolve(self, rev: str | RevisionType) -> Version:
        return from_dict(Version, self._client.get(f"/versions/{rev}"))

    def show(self, rev: str) -> Version:
        return self.resolve(rev)

    def models(self) -> list[ModelInfo]:
        return [from_dict(ModelInfo, m) for m in self._client.pages("/models")]

    def log(
        self, name: str, branch: str | None = None, *, limit: int | None = None
    ) -> list[Version]:
        found = []
        for doc in self._client.pages(f"/models/{name}/versions", branch=branch):
            found.append(from_dict(Version, doc))
            if limit is not None and len(found) >= limit:
                break
        return found

    def files(self, rev: str | Version) -> list[FileInfo]:
        rev = rev.rev if isinstance(rev, Version) else rev
        return [from_dict(FileInfo, f) for f in self._client.pages(f"/versions/{rev}/files")]

    def refs(self, name: str, kind: str | None = None) -> list[Ref]:
        return [from_dict(Ref, r) for r in self._client.get(f"/models/{name}/refs", kind=kind)]

    def events(
        self, model: str | None = None, limit: int | None = None, *, action: str | None = None
    ) -> list[Event]:
        found = []
        for doc in self._client.pages("/events", model=model, action=action):
            found.append(from_dict(Event, doc))
            if limit is not None and len(found) >= limit:
                break
        return found

    def deployments(self, name: str | None = None) -> list[Deployment]:
        doc = self._client.get("/deployments", model=name)
        return [from_dict(Deployment, d) for d in doc["deployments"]]

    def replicas(self, name: str | None = None) -> list[Replica]:
        doc = self._client.get("/deployments", model=name)
        return [from_dict(Replica, r) for r in doc["replicas"]]

    # -- refs --------------------------------------------------------------------------

    def set_alias(
        self, alias: str, rev: str, message: str = "", expected: int | None = None
    ) -> Ref:
        model, name = parse_alias(alias)
        body = {"to": rev, "expected": expected, "message": message}
        return from_dict(Ref, self._client.put(f"/models/{model}/aliases/{name}", body))

    def delete_alias(self, alias: str, message: str = "") -> Ref:
        model, name = parse_alias(alias)
        return from_dict(Ref, self._client.delete(f"/models/{model}/aliases/{name}"))

    def promote(self, rev: str, alias: str, message: str = "") -> tuple[int | None, Ref]:
        model = Revision.parse(rev).model
        doc = self._client.post(
            f"/models/{model}/aliases/{alias}/promote", {"rev": rev, "message": message}
        )
        return doc.pop("before"), from_dict(Ref, doc)

    def rollback(
        self, alias: str, to: str | None = None, message: str = ""
    ) -> tuple[int | None, Ref]:
        model, name = parse_alias(alias)
        doc = self._client.post(
            f"/models/{model}/aliases/{name}/rollback", {"to": to, "message": message}
        )
        return doc.pop("before"), from_dict(Ref, doc)

    def history(self, rev: str) -> list[Event]:
        return [from_dict(Event, e) for e in self._client.get(f"/history/{rev}")]

    def default_branch(self, name: str) -> str:
        found = {m.name: m.default_branch for m in self.models()}
        if name not in found:
            raise NotFoundError(f"no model {name} on {self.url}, or none this token can read")
        return found[name]

    def branch(self, name: str, new: str, start: str | None = None) -> Ref:
        doc = self._client.post(f"/models/{name}/branches/{new}", {"start": start})
        return from_dict(Ref, doc)

    def delete_branch(self, name: str, branch: str) -> Ref:
        return from_dict(Ref, self._client.delete(f"/models/{name}/branches/{branch}"))

    def tag(self, rev: str, tag: str, message: str = "") -> Ref:
        model = Revision.parse(rev).model
        body = {"rev": rev, "message": message}
        return from_dict(Ref, self._client.post(f"/models/{model}/tags/{tag}", body))

    def delete_tag(self, tag: str, message: str = "") -> Ref:
        model, name = parse_alias(tag)
        return from_dict(Ref, self._client.delete(f"/models/{model}/tags/{name}"))

    def label(
        self, rev: str, labels: Mapping[str, str] | None = None, *, message: str = "", **more: str
    ) -> Version:
        body = {"set": {**(labels or {}), **more}, "message": message}
        return from_dict(Version, self._client.patch(f"/versions/{rev}/labels", body))

    def unlabel(self, rev: str, *keys: str, message: str = "") -> Version:
        body = {"remove": list(keys), "message": message}
        return from_dict(Version, self._client.patch(f"/versions/{rev}/labels", body))

    def reports(
        self, rev: str, limit: int | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._client.get(
            f"/versions/{rev}/reports", limit=limit or 1000, kind=kind
        )
        return found

    def model_reports(
        self,
        name: str,
        limit: int | None = None,
        since: datetime | None = None,
        *,
        profiles: bool = False,
    ) -> list[dict[str, Any]]:
        if since is not None or profiles:
            raise UsageError("model_reports over HTTP takes a limit only (no since, profiles)")
        found: list[dict[str, Any]] = self._client.get(
            f"/models/{name}/reports", limit=limit or 1000
        )
        return found

    def schedules(
        self, name: str | None = None, *, include_removed: bool = False
    ) -> list[Schedule]:
        found = self._client.get("/schedules", model=name, removed=include_removed or None)
        return [from_dict(Schedule, s) for s in found]

    def schedule(
        self,
        rev: str,
        every: str | float | timedelta,
        data: str | os.PathLike[str],
        target: str | None = None,
        message: str = "",
    ) -> Schedule:
        """Check ``rev`` every ``every`` on ``data``: a path template on the server's
        machine (absolute), read there by the repository's schedule daemon."""
        template = os.fspath(data)
        if not template.startswith("/"):
            # Made absolute here it would name a folder of this machine, not the server's.
            raise UsageError(
                f"data template {template!r}: over HTTP the checks read files on the "
                "server's machine; give an absolute path there, e.g. /data/{date}.parquet"
            )
        seconds = every.total_seconds() if isinstance(every, timedelta) else every
        body = {"rev": rev, "every": seconds, "data": template, "target": target,
                "message": message}  # fmt: skip
        model = Revision.parse(rev).model
        return from_dict(Schedule, self._client.post(f"/models/{model}/schedules", body))

    def unschedule(self, schedule_id: int, message: str = "") -> Schedule:
        answer = self._client.request(
            "DELETE", f"/schedules/{int(schedule_id)}", params={"message": message}
        )
        return from_dict(Schedule, answer.json())

    # -- policies ----------------------------------------------------------------------

    def set_policy(
        self, name: str, text: str, message: str = "", *, fmt: str | None = None
    ) -> list[Rule]:
        body = {"text": text, "format": fmt, "message": message}
        return _rules(self._client.put(f"/models/{name}/policy", body)["rules"])

    def policy(self, name: str) -> list[Rule] | None:
        found = self._client.get(f"/models/{name}/policy")["rules"]
        return None if found is None else _rules(found)

    # -- comparing and maintenance -----------------------------------------------------

    def diff(
        self,
        rev_a: str,
        rev_b: str,
        *,
        data: str | os.PathLike[str] | None = None,
        target: str | None = None,
        trusted: Any = None,
    ) -> DiffResult:
        """Files, params, metrics, signature, tensors and scikit-learn specifics, as the
        server compares them (no bytes cross)."""
        if data is not None or target is not None or trusted is not None:
            # Predictions on rows of a file here need both models here, and the
            # engine's diff reads versions of its own registry: not the cache's.
            raise UsageError(
                "diff over HTTP compares the stored versions only (no data, target or "
                "trusted): pull the model into a local repository to compare predictions"
            )
        return _diff_result(self._client.get(f"/diff/{rev_a}/{rev_b}"))

    def gc(self) -> GcReport:
        """Delete objects no version of the server's repository references (admin)."""
        return from_dict(GcReport, self._client.post("/gc", {}))

    def fsck(self, progress: ProgressStart = no_progress, *, repair: bool = False) -> FsckReport:
        """Verify the server's repository (admin); no progress is reported over HTTP."""
        return from_dict(FsckReport, self._client.post("/fsck", {"repair": repair}))

    # -- commit and load ---------------------------------------------------------------

    def commit(
        self,
        name: str,
        source: Any,
        message: str = "",
        *,
        progress: ProgressStart = no_progress,
        **options: Unpack[CommitOptions],
    ) -> Version:
        """Chunk ``source`` here, send what the server lacks, and have the server number
        it as the next version of ``name`` on ``branch`` (default: its default branch)."""
        branch = options.pop("branch", None)
        if options.get("parents") is not None:
            raise UsageError("a commit over HTTP goes on its branch's head: give no parents")
        staged = self._e.commits.commit(CommitDraft(name, source, message, **options), progress)
        return self._send(staged, branch, progress)

    def data_add(
        self,
        name: str,
        path: str | os.PathLike[str],
        message: str = "",
        *,
        author: str | None = None,
        progress: ProgressStart = no_progress,
    ) -> Version:
        """Store a dataset file of this machine as the next version of dataset ``name``
        on the server: hashed, profiled and chunked here, only the chunks the server
        lacks sent (its author is the token's user)."""
        if author is not None:
            raise UsageError("over HTTP a version's author is the token's user: give no author")
        staged = self._e.commits.data_add(name, path, message, progress=progress)
        return self._send(staged, None, progress)

    def _send(self, staged: Version, branch: str | None, progress: ProgressStart) -> Version:
        """Send the objects of ``staged`` (a version of the cache) the server lacks, then
        have the server number it on top of ``branch``'s head as it is now."""
        name = staged.model
        ex = self._e.exchange
        sizes = ex.objects_of(staged)
        tick = progress(f"send {name}", sum(sizes.values())) if sizes else None
        transfer.upload(self._e, self._client, name, sizes, tick)
        # Its branch as given, else the server's default branch of the model.
        record = {**ex.record(staged, ex.identities(name)), "branch": branch}
        answer = transfer.publish(self._e, self._client, name, record, sizes, follow_head=True)
        return from_dict(Version, answer["version"])

    def _fetch(
        self,
        version: Version,
        progress: ProgressStart = no_progress,
        only: Callable[[], list[ObjectId]] | None = None,
    ) -> None:
        """Bring the version's objects not cached here (``only``: just those it names,
        asked after each round, until it names nothing new)."""
        record = self._client.get(f"/versions/{version.rev}/record")
        sizes = {ObjectId(i): int(s) for i, s in record["objects"].items()}
        if only is None:
            tick = progress(f"fetch {version.rev}", sum(sizes.values())) if sizes else None
            transfer.download(self._e, self._client, version.model, sizes, tick)
            return
        asked: set[ObjectId] = set()
        while wanted := [o for o in only() if o not in asked]:
            asked.update(wanted)
            transfer.download(
                self._e, self._client, version.model, {o: sizes[o] for o in wanted}, None
            )

    def status(
        self, rev: str | Version, path: str | os.PathLike[str] | None = None
    ) -> StatusResult:
        """Compare folder ``path`` (default ./MODEL) with the version: only its tree and
        its symlinks' targets are fetched if not cached, never its files' chunks (each
        file here is hashed and compared with the manifest id the tree holds)."""
        version = rev if isinstance(rev, Version) else self.resolve(rev)
        store = self._e.ctx.store

        def needed() -> list[ObjectId]:
            tree_id = ObjectId(version.tree_id)
            if not store.has(tree_id):
                return [tree_id]
            links = [e.file for e in store.tree(tree_id).entries.values() if S_ISLNK(e.mode)]
            missing = [m for m in links if not store.has(m)]
            if missing:
                return missing
            return [c.id for m in links for c in store.file_manifest(m).chunks]

        self._fetch(version, only=needed)
        return self._e.worktree.status(version, path)

    def load(self, rev: str | Version, *, trusted: Any = None) -> Any:
        """The model, from chunks cached here (only those missing are fetched)."""
        version = rev if isinstance(rev, Version) else self.resolve(rev)
        self._fetch(version)
        return self._e.versions.load(version, trusted=trusted)

    def profile(self, rev: str | Version) -> Profile | None:
        version = rev if isinstance(rev, Version) else self.resolve(rev)
        self._fetch(version)
        return self._e.versions.profile(version)

    def checkout(
        self,
        rev: str | Version,
        dest: str | os.PathLike[str] | None = None,
        *,
        force: bool = False,
        progress: ProgressStart = no_progress,
    ) -> CheckoutResult:
        """Write a version's files into ``dest`` (default ./MODEL), conflicts first, from
        chunks cached here (only those missing are fetched)."""
        version = rev if isinstance(rev, Version) else self.resolve(rev)
        self._fetch(version, progress)
        return self._e.worktree.checkout(version, dest, force=force, progress=progress)


def _rules(docs: list[dict[str, Any]]) -> list[Rule]:
    from modelkeep.monitor.policy import Rule  # here: most clients never read a policy

    return [from_dict(Rule, d) for d in docs]


def _diff_result(doc: dict[str, Any]) -> DiffResult:
    """The DiffResult whose ``to_dict()`` is ``doc`` (pairs and tensors made again)."""
    from modelkeep.formats.tensordiff import TensorDiff

    def changes(key: str) -> list[FileChange]:
        return [FileChange(**c) for c in doc[key]]

    def tensors(t: dict[str, Any]) -> TensorDiff:
        fields = {k: v for k, v in t.items() if k != "summary"}
        fields["reshaped"] = [tuple(r) for r in fields.get("reshaped", [])]
        return TensorDiff(**fields)

    return DiffResult(
        doc["a"],
        doc["b"],
        changes("added"),
        changes("removed"),
        changes("changed"),
        params={k: (p["before"], p["after"]) for k, p in doc["params"].items()},
        metrics={k: (m["before"], m["after"]) for k, m in doc["metrics"].items()},
        signature=[(s["change"], s["breaking"]) for s in doc["signature"]],
        tensors=[tensors(t) for t in doc["tensors"]],
        model=doc["model"],
        predictions=doc["predictions"],
    )


def _unavailable(name: str) -> Any:
    def refuse(self: RemoteRepo, *args: Any, **kwargs: Any) -> Any:
        raise UsageError(
            f"{name} is not offered over HTTP yet: run it on the server's repository "
            f"(or pull the model into a local one)"
        )

    refuse.__name__ = name
    return refuse


RemoteRepo.tokens = property(_unavailable("tokens"))  # type: ignore[assignment]
RemoteRepo.remotes = property(_unavailable("remotes"))  # type: ignore[assignment]

# Everything else the facade does would act on the cache, not on the server: refused.
_OWN = RemoteRepo.__mro__[: RemoteRepo.__mro__.index(Repo)]
for _name, _value in list(vars(Repo).items()):
    # What RemoteRepo defines, itself or in a mixin before Repo (JobsOverHttp), stays.
    if _name.startswith("_") or any(_name in vars(k) for k in _OWN):
        continue
    if callable(_value) and not isinstance(_value, (staticmethod, classmethod)):
        setattr(RemoteRepo, _name, _unavailable(_name))
    elif isinstance(_value, property):
        setattr(RemoteRepo, _name, property(_unavailable(_name)))
