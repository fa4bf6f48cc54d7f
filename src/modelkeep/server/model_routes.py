"""The team server's routes for branches, tags, labels, history, diff, monitoring
reports and schedules: each checks the token, calls one method of the repository and
returns the records' ``to_dict()``, as the routes of ``app.py`` do."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from modelkeep.errors import UsageError
from modelkeep.server.app import API, Limit, Name, NameFilter, Who, WordFilter, model_of

Rev = Annotated[str, Path(max_length=300)]


class BranchRequest(BaseModel):
    start: str | None = Field(default=None, max_length=300, description="default: the head")


class TagRequest(BaseModel):
    rev: str = Field(max_length=300, description="the version to tag, e.g. churn:5")
    message: str = Field(default="", max_length=10_000)


class Labels(BaseModel):
    set: dict[str, Annotated[str, Field(max_length=10_000)]] = Field(default_factory=dict)
    remove: list[Annotated[str, Field(max_length=256)]] = Field(default_factory=list)
    message: str = Field(default="", max_length=10_000)


def routes(app_state: Any) -> APIRouter:
    api = APIRouter(prefix=API)

    def repo() -> Any:
        return app_state.repo

    @api.post("/models/{name}/branches/{branch}", status_code=201, tags=["refs"])
    def create_branch(name: Name, branch: Name, body: BranchRequest, who: Who) -> dict[str, Any]:
        """Create a branch at ``start`` (a revision of the model; default: its head)."""
        who.need("write", name)
        with who.acting():
            return dict(repo().branch(name, branch, body.start).to_dict())

    @api.delete("/models/{name}/branches/{branch}", tags=["refs"])
    def delete_branch(name: Name, branch: Name, who: Who) -> dict[str, Any]:
        who.need("write", name)
        with who.acting():
            return dict(repo().delete_branch(name, branch).to_dict())

    @api.post("/models/{name}/tags/{tag}", status_code=201, tags=["refs"])
    def create_tag(name: Name, tag: Name, body: TagRequest, who: Who) -> dict[str, Any]:
        """Name a version for good (tags never move)."""
        who.need("write", name)
        if model_of(body.rev) != name:
            raise UsageError(f"{body.rev} is not a version of {name}")
        with who.acting():
            return dict(repo().tag(body.rev, tag, body.message).to_dict())

    @api.delete("/models/{name}/tags/{tag}", tags=["refs"])
    def delete_tag(name: Name, tag: Name, who: Who) -> dict[str, Any]:
        who.need("write", name)
        with who.acting():
            return dict(repo().delete_tag(f"{name}@{tag}").to_dict())

    @api.patch("/versions/{rev}/labels", tags=["versions"])
    def label(rev: Rev, body: Labels, who: Who) -> dict[str, Any]:
        """Set and remove labels of a version (the version itself never changes)."""
        who.need("write", model_of(rev))
        with who.acting():
            if body.remove:
                repo().unlabel(rev, *body.remove, message=body.message)
            version = repo().label(rev, body.set, message=body.message) if body.set else None
        return dict((version or repo().resolve(rev)).to_dict())

    @api.get("/history/{rev}", tags=["audit"])
    def history(rev: Rev, who: Who) -> list[dict[str, Any]]:
        """Every move of a ref (``churn@production``), or every event of a model."""
        who.need("read", model_of(rev))
        return [e.to_dict() for e in repo().history(rev)]

    @api.get("/diff/{rev_a}/{rev_b}", tags=["versions"])
    def diff(rev_a: Rev, rev_b: Rev, who: Who) -> dict[str, Any]:
        """What changed from one version to another: files, params, metrics,
        signature, tensors."""
        who.need("read", model_of(rev_a))
        who.need("read", model_of(rev_b))
        return dict(repo().diff(rev_a, rev_b).to_dict())

    @api.get("/versions/{rev}/reports", tags=["monitoring"])
    def reports(
        rev: Rev,
        who: Who,
        limit: Limit = 100,
        kind: WordFilter = None,
    ) -> list[dict[str, Any]]:
        """Monitoring reports of a version, newest first."""
        who.need("read", model_of(rev))
        return list(repo().reports(rev, limit, kind))

    @api.get("/models/{name}/reports", tags=["monitoring"])
    def model_reports(name: Name, who: Who, limit: Limit = 100) -> list[dict[str, Any]]:
        """Monitoring reports of every version of the model, newest first."""
        who.need("read", name)
        return list(repo().model_reports(name, limit))

    @api.get("/schedules", tags=["monitoring"])
    def schedules(
        who: Who,
        model: NameFilter = None,
        removed: Annotated[bool, Query(description="also those unscheduled")] = False,
    ) -> list[dict[str, Any]]:
        """Scheduled checks (of one model, or of all: then a token for every model)."""
        who.need("read", model)
        return [s.to_dict() for s in repo().schedules(model, include_removed=removed)]

    return api
