"""The team server: one repository over HTTP for many people.

A face, as the CLI is: each route checks the caller's token for the scope and model it
needs, calls one method of the repository, and returns the records' ``to_dict()``.
FastAPI for its OpenAPI document (``/openapi.json``); every request but health needs a
token (there is no default credential); every change runs as the token's user, so the
event log records who, through which token, from which address.

A model a token may not read answers 404, as a model that does not exist: its name is
not told. Lists are paginated (``limit``, ``offset`` → ``next_offset``).

Nothing here answers from a memory that may be stale. A verified token and the answer
of ``GET /versions/{rev}`` are kept only while the registry's change mark
(``registry.changes.mark_of``: SQLite's data_version, PostgreSQL's count of write
transactions, each moved by any commit from any process) is the one they were read
under, so an alias moved or a token revoked anywhere is seen at the next request. A
registry without a mark (in memory) is asked for every answer, and a verified token is
remembered for ``TOKEN_SECONDS``.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from modelkeep import lineage
from modelkeep.access.guard import CACHE_SECONDS, TokenCheck
from modelkeep.access.tokens import Tokens
from modelkeep.errors import (
    AuthenticationError,
    ModelkeepError,
    ModelNotFoundError,
    UsageError,
)
from modelkeep.httpstatus import status_of
from modelkeep.registry.changes import mark_of
from modelkeep.revision import Revision
from modelkeep.server.auth import FailureLimiter, TooManyFailures, bearer

if TYPE_CHECKING:
    from modelkeep.registry.records import Token
    from modelkeep.repo import Repo

log = logging.getLogger("modelkeep.server")

API = "/api/v1"
# Control requests are small JSON documents: anything bigger is refused while it
# streams in, before it is held in memory.
MAX_BODY = 1 << 20
MAX_PAGE = 1000
_UPLOAD = re.compile(API + r"/models/[^/]+/objects")
# Without a change mark (a registry in memory), how long a verified token is taken
# without asking the registry: the longest a token revoked elsewhere works here.
TOKEN_SECONDS = 5.0
# Resolved versions kept (while the registry is unchanged); all dropped on a change.
MAX_ANSWERS = 1024

Scope = Callable[[MutableMapping[str, Any]], Awaitable[MutableMapping[str, Any]]]


class Problem(BaseModel):
    """Every error: one line saying what was wrong and what to do."""

    error: str
    kind: str | None = Field(
        default=None, description="the error's class in modelkeep.errors, e.g. RefMovedError"
    )


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": text}
    for status, text in (
        (400, "Bad input"),
        (401, "No valid token"),
        (403, "The token's scope does not cover this"),
        (404, "Not found (or not visible to this token)"),
        (409, "Conflict: the alias moved, or the ref exists"),
        (413, "Body too large"),
        (429, "Too many failed authentications from this address"),
        (503, "The repository's database or store is away"),
    )
}


class Page(BaseModel):
    items: list[dict[str, Any]]
    next_offset: int | None = Field(description="offset of the next page; null: no more")


class AliasMove(BaseModel):
    """Point an alias at a version, as a compare-and-swap on where it points now."""

    to: str = Field(description="the version: a number, or a revision such as churn:5")
    expected: int | None = Field(
        default=None,
        description="the version number the alias points at now; a mismatch is 409. "
        "Null: no check.",
    )
    message: str = Field(default="", max_length=10_000)


class Promotion(BaseModel):
    rev: str = Field(description="the version to promote, e.g. churn:5")
    message: str = Field(default="", max_length=10_000)


class Rollback(BaseModel):
    to: str | None = Field(default=None, description="a version; null: where it was before")
    message: str = Field(default="", max_length=10_000)


class TokenRequest(BaseModel):
    user: str = Field(max_length=256)
    scope: str = Field(description="read, write or admin")
    models: str = Field(default="*", max_length=256, description="a glob of model names")
    expires: str | None = Field(default=None, description="e.g. 90d; null: until revoked")
    message: str = Field(default="", max_length=10_000)


class Caller:
    """The verified token of a request and where it came from."""

    def __init__(self, token: Token, address: str) -> None:
        self.token = token
        self.address = address

    def need(self, scope: str, model: str | None) -> None:
        Tokens.require(self.token, scope, model)

    @contextlib.contextmanager
    def acting(self) -> Iterator[None]:
        with lineage.acting_as(self.token.user, self.token.id, self.address):
            yield


async def _caller(request: Request) -> Caller:
    """The request's verified token (AuthenticationError → 401, counted per address):
    remembered, on the event loop, else asked of the registry in a thread."""
    state = request.app.state
    address = request.client.host if request.client is not None else "unknown"
    state.limiter.check(address)
    try:
        plaintext = bearer(request.headers.get("authorization"))
        token = state.tokens.cached(plaintext)
        if token is None:
            token = await run_in_threadpool(state.tokens.verify, plaintext)
        if token.state() != "active":  # expired since it was remembered
            raise AuthenticationError(f"token {token.id} is {token.state()}")
    except AuthenticationError as exc:
        state.limiter.failed(address, str(exc))
        raise
    return Caller(token, address)


# FastAPI reads these annotations by name from the module.
Who = Annotated[Caller, Depends(_caller)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Offset = Annotated[int, Query(ge=0, le=10**9)]
# The engine's name rule (revision.check_name), so the document says what is refused.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
Name = Annotated[str, Path(max_length=128, pattern=NAME_PATTERN)]
# A filter by name in the query: the same rule, so a name no model can have (a control
# character, a NUL the registry cannot even look up) is refused before any query.
NameFilter = Annotated[str | None, Query(max_length=128, pattern=NAME_PATTERN)]
# Words of the engine's own making (event actions, report kinds): e.g. monitor.alert.
WordFilter = Annotated[str | None, Query(max_length=64, pattern=r"^[a-z][a-z0-9._-]*$")]


class _Answers:
    """What ``GET /versions/{rev}`` answers, as JSON, kept per revision while the
    registry's change mark is the one it was read under (with no mark: never kept).
    Used on the event loop only; the registry is read in a thread."""

    def __init__(self, repo: Repo, mark: Callable[[], Hashable | None] | None) -> None:
        self._repo = repo
        self._mark = mark
        self._seen: Hashable | None = None
        self._bodies: dict[str, tuple[str, bytes]] = {}  # rev → (its model, the JSON)

    def current(self) -> Hashable | None:
        """The registry's mark now (None: unknown), what was kept under another dropped."""
        mark = None if self._mark is None else self._mark()
        if mark is None or mark != self._seen:
            self._bodies.clear()
            self._seen = mark
        return mark

    def kept(self, rev: str) -> tuple[Hashable, str, bytes] | None:
        """The mark now, the model ``rev`` names and its answer, if known to be current."""
        mark = self.current()
        hit = self._bodies.get(rev) if mark is not None else None
        return None if hit is None or mark is None else (mark, *hit)

    async def show(self, rev: str, model: str) -> bytes:
        mark = self.current()
        hit = self._bodies.get(rev) if mark is not None else None
        if hit is not None:
            return hit[1]
        # The mark was read before the registry: a change committed meanwhile leaves
        # this answer under the old mark, which the next request sees has moved.
        body = await run_in_threadpool(self._read, rev)
        if mark is not None and mark == self._seen:
            self._bodies[rev] = (model, body)
            if len(self._bodies) > MAX_ANSWERS:
                self._bodies.pop(next(iter(self._bodies)))
        return body

    def _read(self, rev: str) -> bytes:
        return orjson.dumps(self._repo.show(rev).to_dict())


_VERSIONS = API + "/versions/"
_JSON_HEADERS = [(b"content-type", b"application/json")]


class _KnownAnswers:
    """Send a ``GET /versions/{rev}`` whose answer is kept as current, for a token known
    valid that may read its model, before routing and dependencies (measured: they were
    most of what a resolve cost). The bytes, status and headers are the route's; anything
    else — a miss, any refusal, any error — goes on to the route, which says why."""

    def __init__(self, app: Any, state: Any, answers: _Answers) -> None:
        self.app = app
        self.state = state
        self.answers = answers

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = self._known(scope) if scope["type"] == "http" else None
        if body is None:
            await self.app(scope, receive, send)
            return
        headers = [(b"content-length", str(len(body)).encode()), *_JSON_HEADERS]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _known(self, scope: dict[str, Any]) -> bytes | None:
        path: str = scope["path"]
        if scope["method"] != "GET" or not path.startswith(_VERSIONS):
            return None
        rev = path[len(_VERSIONS) :]
        kept = self.answers.kept(rev) if rev and "/" not in rev else None
        if kept is None:
            return None
        authorization = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if authorization is None:
            return None
        client = scope.get("client")
        try:
            self.state.limiter.check(client[0] if client else "unknown")
            # The mark just read serves the token too: on PostgreSQL each read is a
            # round trip, and this was the second one of every resolve.
            token = self.state.tokens.cached(bearer(authorization.decode("latin-1")), kept[0])
        except ModelkeepError:  # refused: the route says why, and counts a failure
            return None
        _, model, body = kept
        return body if token is not None and Tokens.allows(token, "read", model) else None


def create_app(
    repo: Repo, limiter: FailureLimiter | None = None, *, close_repo: bool = False
) -> FastAPI:
    """The team server's app over ``repo`` (opened by the caller, shared by every
    request: its registry keeps a connection per thread; closed when the app shuts
    down with ``close_repo``)."""
    mark = mark_of(repo.registry)
    check = TokenCheck.over(
        repo.tokens, CACHE_SECONDS if mark is not None else TOKEN_SECONDS, changes=mark
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            check.close()
            if mark is not None:
                mark.close()
            if close_repo:
                repo.close()

    app = FastAPI(
        title="modelkeep team server",
        version="1",
        description=__doc__,
        responses=_ERRORS,
        lifespan=lifespan,
    )
    app.state.repo = repo
    app.state.limiter = limiter or FailureLimiter()
    app.state.tokens = check
    answers = _Answers(repo, mark)
    app.add_middleware(_BodyLimit, limit=MAX_BODY)
    app.add_middleware(_KnownAnswers, state=app.state, answers=answers)  # outside: first

    @app.exception_handler(ModelkeepError)
    async def _modelkeep_error(request: Request, exc: ModelkeepError) -> JSONResponse:
        if isinstance(exc, TooManyFailures):
            retry = {"Retry-After": str(max(1, round(exc.retry_after)))}
            return JSONResponse({"error": str(exc)}, 429, headers=retry)
        status = status_of(exc)
        headers = {"WWW-Authenticate": 'Bearer realm="modelkeep"'} if status == 401 else None
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        message = str(exc)
        if isinstance(exc, ModelNotFoundError):
            # The engine's message lists the models there are: not to a token that may
            # see only some of them.
            message = "no such model, or none this token can read"
        body = {"error": message, "kind": type(exc).__name__}
        return JSONResponse(body, status, headers=headers)

    api = APIRouter(prefix=API)

    @app.get(f"{API}/health", tags=["server"])
    def health() -> dict[str, str]:
        """Whether the server is up (the only route without a token)."""
        return {"status": "ok"}

    @api.get("/whoami", tags=["server"])
    def whoami(who: Who) -> dict[str, Any]:
        """The token this request carries (never its secret)."""
        return who.token.to_dict()

    @api.get("/models", response_model=Page, tags=["models"])
    def models(who: Who, limit: Limit = 100, offset: Offset = 0) -> Page:
        """Models this token can read, by name."""
        visible = [m for m in repo.models() if Tokens.allows(who.token, "read", m.name)]
        return _page([m.to_dict() for m in visible], limit, offset)

    @api.get("/models/{name}/versions", response_model=Page, tags=["versions"])
    def versions(
        name: Name,
        who: Who,
        branch: NameFilter = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> Page:
        """Versions of a model, newest first (``branch``: only its own)."""
        who.need("read", name)
        found = repo.log(name, branch, limit=offset + limit + 1)
        return _page([v.to_dict() for v in found], limit, offset)

    # The hot route (clients resolve churn@production before every load): on the event
    # loop, its JSON made once per registry change, sent as it is (and, once known,
    # by _KnownAnswers before any routing).
    @api.get("/versions/{rev}", tags=["versions"], response_model=dict[str, Any])
    async def show(rev: Annotated[str, Path(max_length=300)], who: Who) -> Response:
        """One version: who, when, why, from which data and code, with which metrics."""
        model = model_of(rev)
        who.need("read", model)
        return Response(await answers.show(rev, model), media_type="application/json")

    @api.get("/versions/{rev}/files", response_model=Page, tags=["versions"])
    def files(
        rev: Annotated[str, Path(max_length=300)],
        who: Who,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> Page:
        who.need("read", model_of(rev))
        return _page([f.to_dict() for f in repo.files(rev)], limit, offset)

    @api.get("/models/{name}/refs", tags=["refs"])
    def refs(
        name: Name,
        who: Who,
        kind: Annotated[str | None, Query(pattern="^(branch|alias|tag)$")] = None,
    ) -> list[dict[str, Any]]:
        """Branches, aliases and tags of a model."""
        who.need("read", name)
        return [r.to_dict() for r in repo.refs(name, kind)]

    @api.put("/models/{name}/aliases/{alias}", tags=["refs"])
    def set_alias(name: Name, alias: Name, body: AliasMove, who: Who) -> dict[str, Any]:
        """Point ``name@alias`` at a version; with ``expected``, only if it still points
        where the caller saw it (409 otherwise, nothing changed)."""
        who.need("write", name)
        with who.acting():
            ref = repo.set_alias(f"{name}@{alias}", body.to, body.message, expected=body.expected)
        return ref.to_dict()

    @api.delete("/models/{name}/aliases/{alias}", tags=["refs"])
    def delete_alias(name: Name, alias: Name, who: Who) -> dict[str, Any]:
        who.need("write", name)
        with who.acting():
            return repo.delete_alias(f"{name}@{alias}").to_dict()

    @api.post("/models/{name}/aliases/{alias}/promote", tags=["refs"])
    def promote(name: Name, alias: Name, body: Promotion, who: Who) -> dict[str, Any]:
        """Move the alias forward to a newer version."""
        who.need("write", name)
        if model_of(body.rev) != name:
            raise UsageError(f"{body.rev} is not a version of {name}")
        with who.acting():
            before, ref = repo.promote(body.rev, alias, body.message)
        return {"before": before, **ref.to_dict()}

    @api.post("/models/{name}/aliases/{alias}/rollback", tags=["refs"])
    def rollback(name: Name, alias: Name, body: Rollback, who: Who) -> dict[str, Any]:
        """Move the alias back: to ``to``, or where it pointed before."""
        who.need("write", name)
        with who.acting():
            before, ref = repo.rollback(f"{name}@{alias}", body.to, body.message)
        return {"before": before, **ref.to_dict()}

    @api.get("/events", response_model=Page, tags=["audit"])
    def events(
        who: Who,
        model: NameFilter = None,
        action: WordFilter = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> Page:
        """The audit trail, newest first: who did what, when, before → after, why,
        through which token, from which address. Without ``model`` it needs a token
        for every model."""
        who.need("read", model)
        found = repo.events(model, offset + limit + 1, action=action)
        return _page([e.to_dict() for e in found], limit, offset)

    @api.get("/deployments", tags=["serving"])
    def deployments(who: Who, model: NameFilter = None) -> dict[str, Any]:
        """Rollouts, and which version every serving replica serves."""
        who.need("read", model)
        return {
            "deployments": [d.to_dict() for d in repo.deployments(model)],
            "replicas": [r.to_dict() for r in repo.replicas(model)],
        }

    @api.get("/tokens", tags=["access"])
    def tokens(
        who: Who, include_revoked: Annotated[bool, Query(alias="all")] = False
    ) -> list[dict[str, Any]]:
        """Every token (never a secret): admin only."""
        who.need("admin", None)
        return [t.to_dict() for t in repo.tokens.list(include_revoked)]

    @api.post("/tokens", status_code=201, tags=["access"])
    def create_token(body: TokenRequest, who: Who) -> dict[str, Any]:
        """A new token, given once in ``token``: admin only."""
        who.need("admin", None)
        with who.acting():
            token, plaintext = repo.tokens.create(
                body.user, body.scope, body.models, body.expires, body.message
            )
        return {**token.to_dict(), "token": plaintext}

    @api.delete("/tokens/{token_id}", tags=["access"])
    def revoke_token(token_id: Annotated[str, Path(max_length=64)], who: Who) -> dict[str, Any]:
        who.need("admin", None)
        with who.acting():
            revoked = repo.tokens.revoke(token_id)
        check.forget()  # refused here from now on, with a change mark or without
        return revoked.to_dict()

    app.include_router(api)
    from modelkeep.server import job_routes, model_routes, ops_routes, transfer

    app.include_router(model_routes.routes(app.state))
    app.include_router(ops_routes.routes(app.state))
    app.include_router(transfer.routes(app.state))
    app.include_router(job_routes.routes(app.state))
    return app


def _page(items: list[dict[str, Any]], limit: int, offset: int) -> Page:
    chunk = items[offset : offset + limit]
    more = len(items) > offset + limit
    return Page(items=chunk, next_offset=offset + limit if more else None)


def model_of(rev: str) -> str:
    """The model a revision names (its syntax checked: 400 if it is not one)."""
    return Revision.parse(rev).model


class _BodyLimit:
    """Refuse a request body over ``limit`` bytes with 413, counting as it streams in
    (a missing or false Content-Length cannot get past), before any route sees it."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if b"content-length" not in headers and b"transfer-encoding" not in headers:
            # No body (HTTP/1.1 framing: a request without either header has none):
            # nothing to count, and nothing to copy on every GET.
            await self.app(scope, receive, send)
            return
        limit = self.limit
        if scope["method"] == "POST" and _UPLOAD.fullmatch(scope["path"]):
            from modelkeep.server.transfer import MAX_UPLOAD

            limit = MAX_UPLOAD  # batches of objects: bounded too, far above 1 MiB
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(scope, receive, send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                await _too_large(scope, receive, send, limit)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole = b"".join(chunks)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return dict(await receive())

        await self.app(scope, replay, send)


async def _too_large(scope: dict[str, Any], receive: Any, send: Any, limit: int) -> None:
    response = JSONResponse(
        {"error": f"the body is larger than {limit} bytes: send less"},
        413,
        headers={"Connection": "close"},
    )
    await response(scope, receive, send)
