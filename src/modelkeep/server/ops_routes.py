"""The team server's routes for monitoring policies, creating and ending scheduled
checks, and maintenance (gc, fsck): each checks the token, calls one method of the
repository and returns its result's ``to_dict()``, as the routes of ``app.py`` do.

Scopes: a policy needs write on its model; what makes the server's machine reach
outside the repository needs admin on the model — a policy with a webhook (the server
posts to that URL) and a schedule (the server reads the files its template names) —
since a write token is handed to training jobs and CI, and should not turn the server
into a reader of its own files or a sender of requests to its network. gc and fsck act
on the whole repository and need admin on every model (``*``).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from modelkeep.errors import (
    ModelNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    UsageError,
)
from modelkeep.monitor.policy import parse as parse_policy
from modelkeep.server.app import API, Caller, Name, Who, model_of


class PolicyRequest(BaseModel):
    text: str = Field(max_length=100_000, description="the policy: TOML or YAML text")
    format: Literal["toml", "yaml"] | None = Field(
        default=None, description="null: whichever of the two parses"
    )
    message: str = Field(default="", max_length=10_000)


class ScheduleRequest(BaseModel):
    rev: str = Field(max_length=300, description="the revision to judge, e.g. churn@production")
    every: Annotated[str, Field(max_length=64)] | float = Field(
        description="the period: 30s, 10m, 1h, 1d, or seconds (aligned to UTC)"
    )
    # The checks run where the repository's schedule daemon runs (the server's machine):
    # a relative path or ~ would be read against whatever folder the server started in.
    data: str = Field(
        max_length=4096,
        pattern=r"^/",
        description="an absolute path template on the server's machine, with {date}, "
        "{time}, {datetime}, {hour} or {slot} filled per run",
    )
    target: str | None = Field(default=None, max_length=256, description="the label column")
    message: str = Field(default="", max_length=10_000)


class FsckRequest(BaseModel):
    repair: bool = Field(default=False, description="move damaged objects to quarantine")


READS_FILES = "a schedule makes the server read the files its template names"


def need_admin(who: Caller, name: str, why: str) -> None:
    """``who.need("admin", name)``, the refusal saying why admin is needed."""
    try:
        who.need("admin", name)
    except PermissionDeniedError as exc:
        raise PermissionDeniedError(f"{why}: {exc}") from None


def routes(app_state: Any) -> APIRouter:
    api = APIRouter(prefix=API)

    def repo() -> Any:
        return app_state.repo

    @api.put("/models/{name}/policy", tags=["monitoring"])
    def set_policy(name: Name, body: PolicyRequest, who: Who) -> dict[str, Any]:
        """Attach a monitoring policy to the model (validated before it is stored)."""
        who.need("write", name)
        if any(r.webhook for r in parse_policy(body.text, fmt=body.format)):
            need_admin(who, name, "a policy with a webhook makes the server post to its URL")
        with who.acting():
            rules = repo().set_policy(name, body.text, body.message, fmt=body.format)
        return {"rules": [dataclasses.asdict(r) for r in rules]}

    @api.get("/models/{name}/policy", tags=["monitoring"])
    def policy(name: Name, who: Who) -> dict[str, Any]:
        """The rules of the model's policy (``rules``: null when it has none)."""
        who.need("read", name)
        rules = repo().policy(name)
        return {"rules": None if rules is None else [dataclasses.asdict(r) for r in rules]}

    @api.post("/models/{name}/schedules", status_code=201, tags=["monitoring"])
    def schedule(name: Name, body: ScheduleRequest, who: Who) -> dict[str, Any]:
        """Check a revision every period on the data the template names (run by the
        repository's schedule daemon, on the server's machine)."""
        if model_of(body.rev) != name:
            raise UsageError(f"{body.rev} is not a revision of {name}")
        need_admin(who, name, READS_FILES)
        with who.acting():
            found = repo().schedule(body.rev, body.every, body.data, body.target, body.message)
        return dict(found.to_dict())

    @api.delete("/schedules/{schedule_id}", tags=["monitoring"])
    def unschedule(
        schedule_id: Annotated[int, Path(ge=1, le=2**62)],
        who: Who,
        message: Annotated[str, Query(max_length=1000)] = "",
    ) -> dict[str, Any]:
        """Stop a scheduled check (it stays listed with ``removed=true``)."""
        # The id names the model: the token is checked against that, and a schedule of a
        # model the token cannot read answers as one that does not exist.
        known = {s.id: s.model for s in repo().schedules(None, include_removed=True)}
        try:
            if schedule_id not in known:
                raise ModelNotFoundError(f"no schedule #{schedule_id}")
            need_admin(who, known[schedule_id], READS_FILES)
        except ModelNotFoundError:
            raise NotFoundError(
                f"no schedule #{schedule_id} this token can see: list them with GET /schedules"
            ) from None
        with who.acting():
            return dict(repo().unschedule(schedule_id, message).to_dict())

    @api.post("/gc", tags=["maintenance"])
    def gc(who: Who) -> dict[str, Any]:
        """Delete objects no version references (admin on every model)."""
        who.need("admin", None)
        with who.acting():
            return dict(repo().gc().to_dict())

    @api.post("/fsck", tags=["maintenance"])
    def fsck(who: Who, body: FsckRequest | None = None) -> dict[str, Any]:
        """Verify every object against its hash and every version against its tree
        (admin on every model); ``repair`` moves damaged objects aside."""
        who.need("admin", None)
        with who.acting():
            return dict(repo().fsck(repair=body is not None and body.repair).to_dict())

    return api
