"""The team server's transfer routes: what push, pull and clone talk to.

A push asks which of a version's objects are missing (``…/objects/missing``), sends
only those in batches of frames (``POST …/objects``: each verified against its id,
durable before the answer), then publishes the version (``POST …/versions``), which
is refused until every object it needs is here. A pull reads a version's record with
its object list (``…/record``) and fetches what it lacks (``…/objects/get``).

An object is asked for by its id within a model the token may read or write. A token
limited to some models (``churn*``) gets only objects some version of the model it
names needs: an id learned elsewhere (a log, a token since narrowed) does not open
another model's bytes. It is answered as a missing object (404), so whether the server
holds it is not told either. ``…/objects/missing`` still tells a writer which ids are
here at all: without it a push could not leave out what the server has, and an id is a
hash of the bytes, so it tells only that bytes the asker already has are stored.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from modelkeep.access.tokens import Tokens
from modelkeep.errors import NotFoundError, UsageError
from modelkeep.server.app import API, Name, Who, model_of
from modelkeep.store import ObjectId
from modelkeep.store.frames import FrameError, split

if TYPE_CHECKING:
    from collections.abc import Sequence

    from modelkeep.repo import Repo

# One upload batch: the client sends at most this much per request (the body limit
# of every other route is 1 MiB).
MAX_UPLOAD = 80 << 20
_ID = "^[0-9a-f]{64}$"


class ObjectIds(BaseModel):
    ids: list[Annotated[str, Field(pattern=_ID)]] = Field(max_length=10_000)


class Missing(BaseModel):
    missing: list[str]


class Stored(BaseModel):
    objects: int
    bytes: int


_BINARY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
_FRAMES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the objects as frames: id (32 bytes), codec (1), length (8, LE), payload",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


class ModelObjects:
    """The objects each model's versions need, as far as read: versions are never
    removed nor changed, so what was read stays true, and a lookup that misses walks
    only the versions added since. Kept for the ``models`` most recently asked about."""

    def __init__(self, repo: Repo, models: int = 16) -> None:
        self._repo = repo
        self._models = models
        self._lock = threading.Lock()
        # model → (objects its versions need, the version numbers walked)
        self._known: OrderedDict[str, tuple[set[ObjectId], set[int]]] = OrderedDict()

    def outside(self, model: str, oids: Sequence[ObjectId]) -> list[ObjectId]:
        """Those of ``oids`` no version of ``model`` needs."""
        with self._lock:
            known = self._known.pop(model, None)
            objects, walked = known if known is not None else (set(), set())
            self._known[model] = objects, walked
            while len(self._known) > self._models:
                self._known.popitem(last=False)
        rest = [o for o in oids if o not in objects]
        if not rest:
            return []
        # Walked outside the lock (a tree walk reads objects); two requests that both
        # walk a new version add the same ids.
        for version in self._repo.registry.versions(model):
            if version.number not in walked:
                found = self._repo.exchange.objects_of(version)
                with self._lock:
                    objects.update(found)
                    walked.add(version.number)
        return [o for o in rest if o not in objects]


def routes(app_state: Any) -> APIRouter:
    """The routes over the repository in ``app_state.repo``."""
    api = APIRouter(prefix=API, tags=["transfer"])
    needed = ModelObjects(app_state.repo)

    def exchange() -> Any:
        return app_state.repo.exchange

    @api.get("/models/{name}/identities")
    def identities(name: Name, who: Who) -> dict[str, Any]:
        """Every version's identity by number, and the branches' heads: what a push
        or pull compares to learn which versions the other side lacks. Read as the
        registry stores them (one query)."""
        who.need("read", name)
        repo = app_state.repo
        found = exchange().identities(name)
        heads = {r.name: r.version for r in repo.refs(name, "branch")} if found else {}
        return {"identities": {str(n): i for n, i in found.items()}, "branches": heads}

    @api.get("/versions/{rev}/record")
    def record(rev: Annotated[str, Path(max_length=300)], who: Who) -> dict[str, Any]:
        """A version as another repository publishes it, with the objects it needs
        (id → size in bytes, 0 where not known before reading)."""
        who.need("read", model_of(rev))
        ex = exchange()
        version = app_state.repo.resolve(rev)
        # The identities of this version and its parents only, not the model's.
        doc: dict[str, Any] = ex.record(version)
        doc["objects"] = {o.hex: size for o, size in ex.objects_of(version).items()}
        return doc

    @api.post("/models/{name}/objects/missing", response_model=Missing)
    def missing(name: Name, body: ObjectIds, who: Who) -> Missing:
        """Which of ``ids`` the server lacks (to send before publishing)."""
        who.need("write", name)
        lacking = exchange().missing(ObjectId(i) for i in body.ids)
        return Missing(missing=[o.hex for o in lacking])

    @api.post("/models/{name}/objects", response_model=Stored, openapi_extra=_BINARY)
    async def upload(name: Name, request: Request, who: Who) -> Stored:
        """Objects as frames (see ``…/objects/get``), each verified against its id;
        durable when this answers. A damaged one refuses the batch (400)."""
        who.need("write", name)
        body = await request.body()
        try:
            frames = list(split(body))
        except FrameError as exc:
            raise UsageError(f"the body is not a sequence of object frames: {exc}") from None
        count, size = await run_in_threadpool(exchange().receive, frames)
        return Stored(objects=count, bytes=size)

    @api.post("/models/{name}/objects/get", responses=_FRAMES)
    def download(name: Name, body: ObjectIds, who: Who) -> StreamingResponse:
        """The objects ``ids`` names, as frames, as stored here (compressed or not);
        the client verifies each against its id."""
        who.need("read", name)
        ids = [ObjectId(i) for i in body.ids]
        # Missing ones fail before the answer starts (404), not halfway through it.
        lacking = exchange().missing(ids)
        # A token that reaches every model (the whole repository) may have any of them.
        if not lacking and not Tokens.allows(who.token, "read", None):
            lacking = needed.outside(name, ids)
        if lacking:
            raise NotFoundError(
                f"{len(lacking)} of the objects asked for are not here (first: "
                f"{lacking[0].short}): ask for those of a version's record"
            )
        return StreamingResponse(exchange().send(ids), media_type="application/octet-stream")

    @api.post("/models/{name}/versions", status_code=201)
    def publish(
        name: Name,
        body: dict[str, Any],
        who: Who,
        follow_head: Annotated[bool, Query()] = False,
    ) -> dict[str, Any]:
        """Publish a version whose objects are all here. With its identity and its
        parents' (a push): a version here already is answered as it is
        (``created: false``). With ``follow_head`` (a commit made over HTTP): on top
        of the branch head, whatever it is now."""
        who.need("write", name)
        if body.get("model") != name:
            raise UsageError(f"the version sent is one of {body.get('model')!r}, not {name}")
        with who.acting():
            version, created = exchange().publish(body, follow_head=follow_head)
        # A pushed version's identity is the one sent (publish checked it); a commit's
        # is known only now that it has a number and parents (stored as it was added).
        identity = body["identity"] if not follow_head else exchange().identity(version)
        return {"version": version.to_dict(), "identity": identity, "created": created}

    return api
