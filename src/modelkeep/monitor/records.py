"""Monitoring records of a repository: reports (windows and batches), schedules and
their slots, and policies — all in the registry, so every process, replica and
machine reads the same ones."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelkeep import lineage
from modelkeep._engine.engine import Service
from modelkeep.errors import UsageError
from modelkeep.revision import Revision, check_name

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence
    from datetime import datetime, timedelta

    from modelkeep.monitor.policy import Rule
    from modelkeep.registry import Version
    from modelkeep.registry.records import Schedule


class Records(Service):
    """Reports, schedules and policies of a repository's models."""

    def record_report(
        self,
        version: Version,
        *,
        kind: str,
        source: str,
        drifted: bool,
        body: dict[str, Any],
        replaces: Sequence[int] = (),
    ) -> int:
        """Store a monitoring report with the version it judges (``replaces``: the
        ids of the window parts it merges, removed in the same transaction)."""
        return self.ctx.registry.add_report(
            version.model,
            version.number,
            kind=kind,
            source=source,
            drifted=drifted,
            body=body,
            replaces=replaces,
        )

    def reports(
        self, rev: str, limit: int | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """Monitoring reports of a version (``kind``: only "batch", "window"…), newest
        first."""
        version = self.e.versions.resolve(rev)
        return self.ctx.registry.reports(version.model, version.number, limit, kind)

    def model_reports(
        self,
        name: str,
        limit: int | None = None,
        since: datetime | None = None,
        *,
        profiles: bool = False,
    ) -> list[dict[str, Any]]:
        """Monitoring reports of every version of model ``name``, newest first, each with
        its version ``number``; without their stored profiles unless ``profiles``."""
        check_name(name)
        return self.ctx.registry.model_reports(name, limit=limit, since=since, profiles=profiles)

    def schedule(
        self,
        rev: str,
        every: str | float | timedelta,
        data: str | os.PathLike[str],
        target: str | None = None,
        message: str = "",
    ) -> Schedule:
        """Check ``rev`` every ``every`` (``1h``, ``1d``, seconds) on ``data``, a path
        template with ``{date}``, ``{time}``, ``{datetime}``, ``{hour}`` or ``{slot}``
        filled from each slot's start (UTC). The revision is resolved at each run, so
        ``churn@production`` follows the alias. Runs happen in ``run_due`` (the daemon)."""
        from modelkeep.monitor.schedule import validate
        from modelkeep.registry.records import period_text

        revision, seconds, template = validate(self.e, rev, every, data)
        if target is not None and not target.strip():
            raise UsageError("target: give the label column's name, or no target")
        return self.ctx.registry.add_schedule(
            model=revision.model,
            revision=str(revision),
            ref_name=revision.ref,
            every=seconds,
            data=template,
            target=target,
            actor=lineage.author(),
            message=message or f"check {revision} every {period_text(seconds)} on {template}",
        )

    def schedules(
        self, name: str | None = None, *, include_removed: bool = False
    ) -> list[Schedule]:
        """Active schedules (of model ``name``), by id; ``include_removed`` adds the
        unscheduled ones."""
        if name is not None:
            check_name(name)
        return self.ctx.registry.schedules(name, active=not include_removed)

    def unschedule(self, schedule_id: int, message: str = "") -> Schedule:
        """Stop a schedule; it stays listed, with its last run, in
        ``schedules(include_removed=True)``."""
        found = self.ctx.registry.schedule(schedule_id)
        return self.ctx.registry.end_schedule(
            schedule_id,
            actor=lineage.author(),
            ref_name=Revision.parse(found.revision).ref,
            message=message or f"stop checking {found.revision} on {found.data}",
        )

    def claim_schedule_slot(self, schedule_id: int, *, expected: int | None, slot: int) -> bool:
        """Claim a slot (Unix seconds) of a schedule whose last slot was ``expected``;
        False when another process claimed a slot first."""
        return self.ctx.registry.claim_slot(schedule_id, expected=expected, slot=slot)

    def record_schedule_outcome(
        self,
        schedule_id: int,
        *,
        slot: int,
        status: str,
        report: int | None = None,
        error: str | None = None,
    ) -> None:
        """What came of a claimed slot: ``ok``/``drift`` with its report, or ``failed``."""
        self.ctx.registry.finish_slot(
            schedule_id, slot=slot, status=status, report=report, error=error
        )

    def set_policy(
        self, name: str, text: str, message: str = "", *, fmt: str | None = None
    ) -> list[Rule]:
        """Attach a monitoring policy to model ``name``: TOML or YAML text (``fmt``
        "toml" or "yaml"; None tries both), validated before anything is stored."""
        from modelkeep.monitor.policy import measurable, parse

        check_name(name)
        self.ctx.registry.check_writable()
        self.ctx.registry.default_branch(name)  # the model must exist
        tasks = {v.artifact.get("task") for v in self.ctx.registry.versions(name)}
        rules = parse(text, f"policy of {name}", fmt, metrics=measurable(tasks))
        kind = fmt or ("toml" if _is_toml(text) else "yaml")
        self.ctx.registry.set_policy(
            name,
            text,
            kind,
            actor=lineage.author(),
            message=message or f"{len(rules)} rule(s)",
            details={"rules": [r.name for r in rules], "format": kind},
        )
        return rules

    def policy(self, name: str) -> list[Rule] | None:
        """The rules attached to ``name`` (None if it has no policy)."""
        from modelkeep.monitor.policy import parse

        found = self.ctx.registry.policy(name)
        return None if found is None else parse(found[0], f"policy of {name}", found[1])


def _is_toml(text: str) -> bool:
    import tomllib  # here: most commands never read a policy

    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return True
