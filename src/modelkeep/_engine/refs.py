"""Refs: branches, aliases and tags, how they move (promote, rollback), and the event
log every move appends to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelkeep import lineage
from modelkeep._engine.engine import Service
from modelkeep.errors import Hint, RevisionSyntaxError, UsageError, VersionNotFoundError
from modelkeep.quantities import shown
from modelkeep.revision import Revision, check_name, parse_alias

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from modelkeep.registry import Event, Ref, Version


class Refs(Service):
    """Every ref change goes through the registry's compare-and-swap ``move_ref``."""

    def refs(self, name: str, kind: str | None = None) -> list[Ref]:
        return self.ctx.registry.refs(name, kind)

    def history(self, rev: str) -> list[Event]:
        """Every move of a ref (``churn@production``), or every event of a model (``churn``)."""
        r = Revision.parse(rev)
        if r.number is not None or r.back or r.ancestry:
            raise RevisionSyntaxError(f"history takes MODEL or MODEL@REF, not {rev!r}")
        if r.ref is None:
            return self.ctx.registry.events(r.model)
        events = self.ctx.registry.events(r.model, r.ref)
        if not events:
            self.ctx.registry.ref(r.model, r.ref)  # raises with what exists
        return events

    def events(
        self, model: str | None = None, limit: int | None = None, action: str | None = None
    ) -> list[Event]:
        return self.ctx.registry.events(model, limit=limit, action=action)

    def branch(self, name: str, new: str, start: str | None = None) -> Ref:
        """Create branch ``new`` of model ``name`` at ``start`` (default: the default head)."""
        check_name(name)
        check_name(new, "branch name")
        version = self.e.versions.resolve(start or name)
        if version.model != name:
            raise UsageError(
                f"a branch of {name} starts at a version of {name}; {shown(start)} is one of "
                f"{version.model}"
            )
        _, ref = self.ctx.registry.move_ref(
            model=name,
            name=new,
            kind="branch",
            to=version.number,
            actor=lineage.author(),
            action="branch.create",
            exclusive=True,
            message=f"from {version.rev}",
        )
        return ref

    def delete_branch(self, name: str, branch: str) -> Ref:
        return self.ctx.registry.delete_ref(
            model=name, name=branch, kind="branch", actor=lineage.author()
        )

    def set_alias(
        self, alias: str, rev: str, message: str = "", expected: int | None = None
    ) -> Ref:
        """Point ``churn@production`` at the version ``rev`` names; with ``expected``,
        only if it still points at that version number (RefMovedError otherwise)."""
        model, name = parse_alias(alias)
        check_name(name, "alias name")
        owner, number = self.e.versions.locate(f"{model}:{rev}" if rev.isdigit() else rev)
        if owner != model:
            raise UsageError(f"{rev} is a version of {owner}, not of {model}")
        return self._point(model, number, name, "alias", "alias.set", message, expected)

    def delete_alias(self, alias: str, message: str = "") -> Ref:
        return self._remove(alias, "alias", message)

    def tag(self, rev: str, tag: str, message: str = "") -> Ref:
        """Name a version for good: tags never move."""
        check_name(tag, "tag name")
        return self._point(*self.e.versions.locate(rev), tag, "tag", "tag", message)

    def delete_tag(self, tag: str, message: str = "") -> Ref:
        """Delete ``churn@validated`` (recorded in the event log like every ref change)."""
        return self._remove(tag, "tag", message)

    def _point(
        self,
        model: str,
        number: int,
        name: str,
        kind: str,
        action: str,
        message: str,
        expected: int | None = None,
    ) -> Ref:
        """Point ref ``name`` at version ``number`` of ``model`` (creating it), through the
        one choke point (which checks, in its transaction, that the version exists)."""
        _, ref = self.ctx.registry.move_ref(
            model=model,
            name=name,
            kind=kind,
            to=number,
            actor=lineage.author(),
            action=action,
            message=message,
            expected=expected,
        )
        return ref

    def _remove(self, spec: str, kind: str, message: str) -> Ref:
        """Delete ref ``MODEL@NAME`` of ``kind`` (its history stays in the event log)."""
        model, name = parse_alias(spec)
        return self.ctx.registry.delete_ref(
            model=model, name=name, kind=kind, actor=lineage.author(), message=message
        )

    def default_branch(self, name: str) -> str:
        return self.ctx.registry.default_branch(name)

    def version_of(self, model: str, rev: str) -> Version:
        """``rev`` may be a bare number ("3") meaning that version of ``model``."""
        version = self.e.versions.resolve(f"{model}:{rev}" if rev.isdigit() else rev)
        if version.model != model:
            raise UsageError(f"{rev} is a version of {version.model}, not of {model}")
        return version

    def promote(self, rev: str, alias: str, message: str = "") -> tuple[int | None, Ref]:
        """Move alias ``alias`` of the model to the version ``rev`` names."""
        check_name(alias, "alias name")
        version = self.e.versions.resolve(rev)
        current = self.forward(version.model, alias, version.number)
        return self.ctx.registry.move_ref(
            model=version.model,
            name=alias,
            kind="alias",
            to=version.number,
            actor=lineage.author(),
            action="promote",
            message=message,
            expected=current,
        )

    def forward(self, model: str, alias: str, number: int) -> int | None:
        """Where ``model@alias`` points now (None: nowhere yet), checked to be before
        ``number``: promotion moves an alias forward only."""
        current = next(
            (r.version for r in self.ctx.registry.refs(model, "alias") if r.name == alias), None
        )
        if current is not None and number <= current:
            raise UsageError(
                f"{model}@{alias} is at {model}:{current}; promote moves it forward, and "
                f"{model}:{number} is not newer — roll the alias back instead",
                hint=Hint(
                    cli=f"`modelkeep rollback {model}@{alias} --to {number}` goes back",
                    api=f"Repo.rollback('{model}@{alias}', to='{number}') goes back",
                ),
            )
        return current

    def rollback(
        self, alias: str, to: str | None = None, message: str = ""
    ) -> tuple[int | None, Ref]:
        """Move ``churn@production`` back: to ``to``, or to where it pointed before its
        last move. Rolling back a rollback undoes it."""
        model, name = parse_alias(alias)
        current = self.ctx.registry.ref(model, name, ("alias",))
        if to is None:
            moves = self.ctx.registry.ref_moves(model, name)
            if not moves or moves[0].before is None:
                raise VersionNotFoundError(
                    f"{model}@{name} has no earlier target to roll back to (it was only set, "
                    f"to {model}:{current.version}); name the version to roll back to",
                    hint=Hint(cli="give --to VERSION", api="pass to='VERSION'"),
                )
            target = moves[0].before
        else:
            target = self.version_of(model, to).number
            if target > current.version:
                raise UsageError(
                    f"{model}@{name} is at {model}:{current.version}; rollback moves it back, "
                    f"and {model}:{target} is newer — promote it instead",
                    hint=Hint(
                        cli=f"`modelkeep promote {model}:{target} {name}` moves it forward",
                        api=f"Repo.promote('{model}:{target}', {name!r}) moves it forward",
                    ),
                )
        if target == current.version:
            raise UsageError(f"{model}@{name} already points at {model}:{target}")
        return self.ctx.registry.move_ref(
            model=model,
            name=name,
            kind="alias",
            to=target,
            actor=lineage.author(),
            action="rollback",
            message=message,
            expected=current.version,
            create=False,
        )

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
        self.ctx.registry.append_event(
            actor=lineage.author(),
            action=action,
            model=name,
            message=message,
            ref_name=ref,
            details=details,
        )

    def label(
        self,
        rev: str,
        values: Mapping[str, str],
        remove: Sequence[str] = (),
        message: str = "",
    ) -> Version:
        """Set (and remove) labels of a version: key/value text that may change after
        the commit, every change an event; the version itself never changes."""
        version = self.e.versions.resolve(rev)
        for key in [*values, *remove]:
            check_name(key, "label name")
        for key, value in values.items():
            if not isinstance(value, str) or len(value) > 1000 or not value.isprintable():
                raise UsageError(
                    f"label {key}={shown(value)}: a label's value is one line of text, "
                    "at most 1,000 characters"
                )
        if not values and not remove:
            raise UsageError(f"no label to set or remove on {version.rev}")
        return self.ctx.registry.set_labels(
            version.model,
            version.number,
            dict(values),
            list(remove),
            actor=lineage.author(),
            message=message,
        )
