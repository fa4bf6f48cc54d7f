"""Versions between repositories: identities, object negotiation and publishing.

A version's number belongs to the repository that holds it; what it *is* across
repositories is its identity: a hash of its content (tree) and lineage (who, when,
why, parameters, metrics, datasets, code, environment, artifact) and of its parents'
identities, as a git commit id covers its parents (``registry.identity``). The registry
stores each version's identity, so which versions are here is one indexed query, not
a hash of every version per transfer. Receiving a version whose identity is there
already is a no-op, so a push repeated after an interruption changes nothing.

Transfer is in three steps, the same in both directions (Git LFS's batch API and Xet
work this way): the sender lists the objects a version needs and learns which the
receiver lacks (``missing``); only those move, verified against their ids on arrival
(``receive``); the version row is written last (``publish``), after every object it
needs is durable, so no reader ever sees a version whose bytes are not all there.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

from modelkeep import lineage
from modelkeep._engine.engine import Service
from modelkeep.errors import (
    ConflictError,
    ObjectsNotHereError,
    RefExistsError,
    UsageError,
    VersionExistsError,
)
from modelkeep.graph import ancestors
from modelkeep.registry import DatasetRef
from modelkeep.registry.identity import identity_of
from modelkeep.revision import check_name
from modelkeep.store import ObjectId
from modelkeep.store.frames import header
from modelkeep.store.objects import verified as store_verified

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

    from modelkeep.registry import Version
    from modelkeep.store.frames import Readable
    from modelkeep.store.objects import Incoming, ObjectWriter

# The most objects one negotiation or download answers at once.
MAX_BATCH = 10_000


class Exchange(Service):
    """The receiving and the sending half of a transfer, over one repository."""

    # Two receivers of the same version must not both publish it (one process; the
    # team server is one).
    _publishing = threading.Lock()

    # -- identities ------------------------------------------------------------------

    def identities(self, model: str) -> dict[int, str]:
        """Number → identity of every version of ``model`` (empty if none), as the
        registry stores them (one query; those it lacks are filled in first)."""
        check_name(model)
        return self.ctx.registry.identities(model)

    def identity(self, version: Version) -> str:
        """``version``'s identity (one query, once stored)."""
        return self.ctx.registry.identities(version.model, [version.number])[version.number]

    def record(
        self, version: Version, identities: Mapping[int, str] | None = None
    ) -> dict[str, Any]:
        """What another repository needs to publish ``version``: the version as its
        ``to_dict``, its identity and its parents' identities, and its model's kind
        and default branch. ``identities``: number → identity of the model's versions
        where the caller has them (else those of the version and its parents are read)."""
        if identities is None:
            identities = self.ctx.registry.identities(
                version.model, [version.number, *version.parents]
            )
        info = self.ctx.registry.model(version.model)
        return {
            **version.to_dict(),
            "identity": identities[version.number],
            "parent_identities": [identities[p] for p in version.parents],
            "entity": info.kind,
            "default_branch": info.default_branch,
        }

    # -- objects ---------------------------------------------------------------------

    def objects_of(self, version: Version) -> dict[ObjectId, int]:
        """Every object ``version`` needs → its size as far as known here (chunks;
        0 for the small tree, manifests and profile): its tree, file manifests,
        chunks, and the objects its artifact names (the reference profile)."""
        found = dict(self.ctx.store.walk(ObjectId(version.tree_id)))
        found.update((oid, 0) for oid in _named_by(version.artifact))
        return found

    def missing(self, oids: Iterable[ObjectId]) -> list[ObjectId]:
        """Those of ``oids`` this repository does not hold (packs written by other
        processes since this one last looked are read first)."""
        store = self.ctx.store
        store.refresh()
        lacking = [oid for oid in oids if not store.has(oid, refresh=False)]
        if lacking and store.has(lacking[0]):  # has() on a miss loads new pack indexes
            lacking = lacking[1:]
        return [oid for oid in lacking if not store.has(oid, refresh=False)]

    def receive(
        self, frames: Iterable[tuple[ObjectId, int, bytes | memoryview]]
    ) -> tuple[int, int]:
        """Store objects received as frames, each verified against its id before any
        is written (a damaged one refuses the whole batch). Durable on return.
        Returns (objects, bytes) stored."""
        from modelkeep.errors import CorruptObjectError

        checked = list(frames)
        for oid, codec, payload in checked:
            try:
                store_verified(oid, codec, payload)
            except CorruptObjectError as exc:
                raise UsageError(f"{exc}: it was damaged on the way; send it again") from None
        # Only a batch whose every frame verified is written: a refused one leaves nothing.
        # Written as it came (encoded by the sender's store): compressing again would
        # cost more than the whole transfer and gain nothing.
        with self._writing() as writer:
            for oid, codec, payload in checked:
                writer.add_stored(oid, codec, payload)
        return len(checked), sum(len(p) for _, _, p in checked)

    def receive_stream(
        self,
        body: Readable,
        arrived: Callable[[ObjectId, int], None] | None = None,
    ) -> tuple[int, int]:
        """Store the objects of a body of frames as they arrive (a download): each
        is written while it comes and counts once whole and verified, so a stream that
        breaks off or brings a damaged object keeps every object before it, and the
        next pull asks only for the rest. ``arrived(id, bytes)`` follows each object
        stored (it may raise to refuse the rest). Durable on return. Returns
        (objects, bytes) stored."""
        from modelkeep.errors import CorruptObjectError
        from modelkeep.store.frames import FrameError, read_frames

        broke: BaseException | None = None
        with self._writing() as writer:
            sink = _Arrivals(writer, arrived)
            try:
                read_frames(body, sink)
            except BaseException as exc:  # what arrived whole is still made durable
                sink.abort()
                broke = exc
        if isinstance(broke, (CorruptObjectError, FrameError)):
            raise UsageError(f"{broke}: it was damaged on the way; pull again") from None
        if broke is not None:
            raise broke
        return sink.objects, sink.bytes

    @contextlib.contextmanager
    def _writing(self) -> Iterator[ObjectWriter]:
        """A write batch of received objects, under the store lock shared."""
        self.ctx.registry.check_writable()
        with self.ctx.shared():
            self.ctx.follow_upgrade()
            with self.ctx.store.writer() as writer:
                yield writer

    def send(self, oids: Sequence[ObjectId]) -> Iterator[bytes | memoryview]:
        """``oids`` as frames, as stored here (the receiver verifies them)."""
        store = self.ctx.store
        for oid in oids:
            codec, payload = store.stored(oid)
            yield header(oid, codec, len(payload))
            yield payload

    # -- versions --------------------------------------------------------------------

    def publish(self, record: dict[str, Any], *, follow_head: bool = False) -> tuple[Version, bool]:
        """Write the version ``record`` describes (as ``record()`` makes it), after
        checking that every object it needs is here. Returns the version and whether
        it is new: a version whose identity is here already is returned as it is.

        Its parents are found by identity and must be here. ``follow_head``: a new
        commit made elsewhere (the Python API over HTTP): its parent is this
        repository's branch head, whatever it is now, and it has no identity yet."""
        if follow_head and not record.get("branch"):
            # A commit over HTTP without a branch goes on the model's default branch.
            known = str(record.get("model")) in self.ctx.registry.model_names()
            record = {
                **record,
                "branch": self.ctx.registry.default_branch(str(record["model"]))
                if known
                else record.get("default_branch") or "main",
            }
        candidate = _candidate(record)
        model, branch = candidate.model, candidate.branch
        store = self.ctx.store
        self.ctx.registry.check_writable()
        with self._publishing, self.ctx.shared():
            parents: list[int] | None = None
            if not follow_head:
                want = str(record.get("identity"))
                parent_ids = [str(p) for p in record.get("parent_identities") or []]
                if identity_of(candidate, parent_ids) != want:
                    raise UsageError(
                        f"the version of {model} sent does not match the identity sent with "
                        f"it ({want[:12]}): it was altered on the way; send it again"
                    )
                # One indexed query for the version and its parents, however many
                # versions the model has.
                by_identity = self.ctx.registry.numbers_by_identity(model, [want, *parent_ids])
                if want in by_identity:
                    return self.ctx.registry.version(model, by_identity[want]), False
                parents = [_parent(by_identity, p, model) for p in parent_ids]
            lacking = self.missing(self._needs(ObjectId(candidate.tree_id), candidate.artifact))
            if lacking:
                raise ObjectsNotHereError(
                    f"{len(lacking)} objects of this version of {model} are not here "
                    f"(first: {lacking[0].short}): send them, then publish again"
                )
            tree = store.tree(ObjectId(candidate.tree_id))
            if (tree.size, len(tree.entries)) != (candidate.size, candidate.file_count):
                raise UsageError(
                    f"the version of {model} sent says {candidate.file_count} files of "
                    f"{candidate.size} bytes; its tree holds {len(tree.entries)} of {tree.size}"
                )
            if parents is not None:
                try:
                    self._fast_forward(model, branch, parents, record)
                except ConflictError:
                    # The branch moved since the look above: to this very version, if
                    # another process published it meanwhile — then that is the answer.
                    found = self.ctx.registry.numbers_by_identity(model, [want])
                    if want in found:
                        return self.ctx.registry.version(model, found[want]), False
                    raise
            try:
                version = self._add(record, candidate, parents, follow_head)
            except VersionExistsError as exc:  # another process published it meanwhile
                return self.ctx.registry.version(model, exc.number), False
        return version, True

    def _add(
        self,
        record: dict[str, Any],
        candidate: Version,
        parents: list[int] | None,
        follow_head: bool,
    ) -> Version:
        return self.ctx.registry.add_version(
            model=candidate.model,
            branch=candidate.branch,
            tree_id=candidate.tree_id,
            size=candidate.size,
            file_count=candidate.file_count,
            message=candidate.message,
            author=lineage.author() if follow_head else candidate.author,
            params=candidate.params,
            metrics=candidate.metrics,
            lineage=_lineage_doc(record),
            datasets=candidate.datasets,
            parents=parents,
            kind=candidate.kind,
            status=candidate.status,
            default_branch=str(record.get("default_branch") or candidate.branch),
            artifact=candidate.artifact or None,
            entity=str(record.get("entity", "model")),
            created_at=None if follow_head else candidate.created_at,
            identity=None if follow_head else str(record.get("identity")),
        )

    def _needs(self, tree: ObjectId, artifact: dict[str, Any] | None) -> list[ObjectId]:
        """The objects a version needs, as far as those here tell (a missing tree or
        manifest stands for itself: what it names is asked for once it is here)."""
        store = self.ctx.store
        store.refresh()
        found = {oid for oid, _ in store.walk(tree, partial=True)}
        found.update(_named_by(artifact))
        return sorted(found)

    def _fast_forward(
        self, model: str, branch: str, parents: list[int], record: dict[str, Any]
    ) -> None:
        """A received version may advance its branch only from an ancestor of it; a
        branch not here yet starts at its first parent."""
        registry = self.ctx.registry
        if model not in registry.model_names():
            return
        heads = {r.name: r.version for r in registry.refs(model, "branch")}
        if branch not in heads:
            if not parents:
                raise ConflictError(
                    f"{model} is here already, with other versions: a version without "
                    f"parents cannot start its branch {branch!r}"
                )
            # Another receiver may make it meanwhile: then it is checked next time.
            with contextlib.suppress(RefExistsError):
                registry.move_ref(
                    model=model,
                    name=branch,
                    kind="branch",
                    to=parents[0],
                    actor=lineage.author(),
                    action="branch.create",
                    exclusive=True,
                    message=f"received with {model}:{record.get('number')}",
                )
            return
        head = heads[branch]
        if head not in ancestors(registry.parents_map(model), parents):
            raise ConflictError(
                f"{model}@{branch} is at {model}:{head} here, which the version received "
                f"does not descend from: bring that version over first (pull), then send again"
            )


def _parent(by_identity: dict[str, int], ident: Any, model: str) -> int:
    number = by_identity.get(str(ident))
    if number is None:
        raise ConflictError(
            f"a parent of this version of {model} ({str(ident)[:12]}) is not here: "
            f"send the parents first"
        )
    return number


def _candidate(record: dict[str, Any]) -> Version:
    """The version a record describes, as a record (number 0: not numbered yet);
    UsageError when a field is missing or of the wrong kind."""
    from modelkeep.registry import Version
    from modelkeep.registry.records import CodeRef

    try:
        code = record.get("code")
        version = Version(
            model=str(record["model"]),
            number=0,
            branch=str(record["branch"]),
            parents=(),
            message=str(record.get("message", "")),
            author=str(record["author"]),
            created_at=datetime.fromisoformat(str(record["created_at"])),
            params=dict(record.get("params") or {}),
            metrics=dict(record.get("metrics") or {}),
            datasets=tuple(
                DatasetRef(str(d["path"]), str(d["content_id"]), int(d["size"]))
                for d in record.get("datasets") or []
            ),
            code=CodeRef(**code) if code else None,
            environment=dict(record.get("environment") or {}),
            tree_id=ObjectId(str(record["tree_id"])).hex,
            size=int(record["size"]),
            file_count=int(record["file_count"]),
            kind=str(record.get("kind", "commit")),
            status=str(record.get("status", "ok")),
            artifact=dict(record.get("artifact") or {}),
            annotations=dict(record.get("annotations") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"a version record needs every field of a version: {exc}") from None
    check_name(version.model)
    check_name(version.branch, "branch name")
    if version.created_at.tzinfo is None:
        raise UsageError("a version record's created_at needs its UTC offset")
    return version


def _lineage_doc(record: dict[str, Any]) -> dict[str, Any]:
    """The registry's lineage document of a record (the inverse of how a Version
    reads it: annotations, code and environment in one document)."""
    doc: dict[str, Any] = dict(record.get("annotations") or {})
    if record.get("code"):
        doc["code"] = dict(record["code"])
    doc["environment"] = dict(record.get("environment") or {})
    return doc


def _named_by(artifact: Mapping[str, Any] | None) -> list[ObjectId]:
    """The objects a version's artifact names outside its tree: its reference profile."""
    profile = (artifact or {}).get("profile")
    return [ObjectId(str(profile))] if profile else []


class _Arrivals:
    """The objects of a stream of frames into a write batch (``receive_stream``)."""

    def __init__(
        self, writer: ObjectWriter, arrived: Callable[[ObjectId, int], None] | None
    ) -> None:
        self._writer, self._arrived = writer, arrived
        self._open: Incoming | None = None
        self.objects = 0
        self.bytes = 0

    def begin(self, oid: ObjectId, codec: int, length: int) -> None:
        self._open = self._writer.receive(oid, codec, length)

    def room(self) -> memoryview:
        assert self._open is not None
        return self._open.room()

    def filled(self, count: int) -> None:
        assert self._open is not None
        self._open.filled(count)

    def end(self) -> None:
        incoming, self._open = self._open, None
        assert incoming is not None
        incoming.done()
        self.objects += 1
        self.bytes += incoming.length
        if self._arrived is not None:
            self._arrived(incoming.oid, incoming.length)

    def abort(self) -> None:
        """Drop the object the stream broke off in (its temp file goes)."""
        if self._open is not None:
            self._open.abort()
            self._open = None
