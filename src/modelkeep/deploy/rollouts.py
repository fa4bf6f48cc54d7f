"""Rollouts as data: start, end and list deployments, and the routing table a server of
``name@alias`` applies (blue-green, canary with steps, shadow)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from modelkeep import lineage, quantities
from modelkeep._engine.engine import Service
from modelkeep.deploy.routing import STRATEGIES, RoutingTable, canary_percent
from modelkeep.errors import ConflictError, Hint, NotFoundError, UsageError
from modelkeep.registry.records import REPLICA_STATES
from modelkeep.revision import check_name

if TYPE_CHECKING:
    from collections.abc import Sequence

    from modelkeep.registry.records import Deployment, Replica


class Rollouts(Service):
    """Deployments of a repository's models."""

    def deploy(
        self,
        name: str,
        *,
        to: str = "production",
        strategy: str = "blue-green",
        candidate: str | None = None,
        percent: float = 10.0,
        steps: Sequence[float] = (),
        interval: float | str | None = None,
        message: str = "",
    ) -> Deployment:
        """Start a rollout of ``candidate`` to ``name@to`` and record it.

        blue-green: the alias moves at once (servers load the new version beside the
        old one and switch; the old stays loaded for an instant rollback). canary:
        ``percent`` of requests (or the current of ``steps``, advancing every
        ``interval`` seconds) go to the candidate until promoted or aborted. shadow: the
        candidate gets a copy of the traffic; its answers are compared, not returned.
        """
        if strategy not in STRATEGIES:
            raise UsageError(
                f"unknown strategy {quantities.shown(strategy)}: use {', '.join(STRATEGIES)}"
            )
        if candidate is None:
            raise UsageError(
                f"a {strategy} deployment needs a candidate version to roll out",
                hint=Hint(
                    cli=f"give --candidate REV, e.g. --candidate {name}:7",
                    api=f"pass candidate, e.g. candidate='{name}:7'",
                ),
            )
        version = self.e.refs.version_of(name, candidate)
        current = self.ctx.registry.ref(name, to, ("alias",)).version
        if version.number == current:
            raise UsageError(f"{name}@{to} already serves {version.rev}")
        steps = [quantities.number(s, "steps", low=0, high=100, low_open=True) for s in steps]
        if steps != sorted(steps):
            raise UsageError("steps are increasing percentages in (0, 100], e.g. 10,50,100")
        if steps and not interval:
            raise UsageError(
                "canary steps need an interval (how long each step lasts)",
                hint=Hint(
                    cli="give --interval, e.g. --interval 10m",
                    api="pass interval, e.g. interval='10m'",
                ),
            )
        seconds = None if interval is None else quantities.duration(interval, "interval", low=0.01)
        if strategy == "canary" and not steps:
            percent = quantities.number(percent, "percent", low=0, high=100, low_open=True)
        who = lineage.author()
        if strategy == "blue-green" and version.number < current:
            raise UsageError(
                f"{name}@{to} is at {name}:{current}; a deployment rolls forward, and "
                f"{version.rev} is older — roll the alias back instead",
                hint=Hint(
                    cli=f"`modelkeep rollback {name}@{to} --to {version.number}` goes back",
                    api=f"Repo.rollback('{name}@{to}', to='{version.number}') goes back",
                ),
            )
        if strategy == "blue-green":
            deployment = self.ctx.registry.start_deployment(
                model=name,
                alias=to,
                strategy=strategy,
                primary=current,
                candidate=version.number,
                percent=100.0,
                steps=(),
                interval_seconds=None,
                actor=who,
                message=message,
                status="completed",
            )
            why = message or f"blue-green deployment #{deployment.id}"
            self.e.refs.promote(version.rev, to, why)
            return deployment
        return self.ctx.registry.start_deployment(
            model=name,
            alias=to,
            strategy=strategy,
            primary=current,
            candidate=version.number,
            percent=steps[0] if steps else percent,
            steps=steps,
            interval_seconds=seconds,
            actor=who,
            message=message,
        )

    def end_deployment(
        self, name: str, *, to: str = "production", promote: bool, message: str = ""
    ) -> Deployment:
        """Finish the active rollout of ``name@to``: promote its candidate, or abort."""
        active = self.ctx.registry.deployments(name, to, active=True)
        if not active:
            raise NotFoundError(
                f"{name}@{to} has no active deployment",
                hint=Hint(
                    cli="`modelkeep deployments` lists them",
                    api="Repo.deployments() lists them",
                ),
            )
        dep = active[0]
        moved = None
        if promote:
            current = self.e.refs.forward(name, to, dep.candidate)
            moved = (current, message or f"deployment #{dep.id} promoted")
        return self.ctx.registry.end_deployment(
            dep.id,
            status="promoted" if promote else "aborted",
            actor=lineage.author(),
            message=message,
            promote=moved,
        )

    def deployments(self, name: str | None = None) -> list[Deployment]:
        if name is not None:
            check_name(name)
        return self.ctx.registry.deployments(name)

    def record_deployment_stats(self, deployment: int, stats: dict[str, Any]) -> None:
        """Figures a server measured for a rollout (shadow agreement, latencies)."""
        self.ctx.registry.record_deployment_stats(deployment, stats)

    def report_replica(
        self,
        model: str,
        alias: str,
        server: str,
        replica: str,
        *,
        host: str,
        pid: int,
        version: int | None,
        versions: Sequence[int],
        state: str,
        error: str | None,
    ) -> None:
        """What one replica of a server of ``model@alias`` serves now: ``version`` answers
        requests (None: nothing loaded), ``versions`` are all it has loaded. ``server``
        names the server ("ray:churn", "local:127.0.0.1:8080"), ``replica`` the replica in
        it; ``state`` is starting, serving, failed (``error`` says why) or stopped."""
        if state not in REPLICA_STATES:
            raise UsageError(
                f"unknown replica state {quantities.shown(state)}: use {', '.join(REPLICA_STATES)}"
            )
        self.ctx.registry.report_replica(
            model, alias, server, replica, host=host, pid=pid, version=version,
            versions=versions, state=state, error=error,
        )  # fmt: skip

    def replicas(self, name: str | None = None, alias: str | None = None) -> list[Replica]:
        """Replicas as they last reported, by model, alias, server and replica."""
        if name is not None:
            check_name(name)
        return self.ctx.registry.replicas(name, alias)

    def routing(self, name: str, alias: str) -> RoutingTable:
        """What a server of ``name@alias`` should serve right now. A canary whose steps
        have reached 100 % is promoted here, by whichever server notices first."""
        current = self.ctx.registry.ref(name, alias, ("alias",)).version
        moves = self.ctx.registry.ref_moves(name, alias)
        previous = moves[0].before if moves else None
        active = self.ctx.registry.deployments(name, alias, active=True)
        if not active:
            return RoutingTable(name, alias, current, previous=previous)
        dep = active[0]
        if dep.strategy == "shadow":
            return RoutingTable(
                name, alias, current, dep.candidate, "shadow", 0.0, dep.id, previous
            )
        percent = canary_percent(dep, datetime.now(UTC))
        if dep.steps and percent >= 100.0:
            # Another server may have finished it first.
            with contextlib.suppress(ConflictError, NotFoundError):
                if dep.candidate > current:
                    self.end_deployment(
                        name, to=alias, promote=True, message=f"canary #{dep.id} reached 100 %"
                    )
                else:  # promoted past by hand meanwhile: nothing left to roll out
                    self.end_deployment(
                        name,
                        to=alias,
                        promote=False,
                        message=f"canary #{dep.id} superseded: {name}@{alias} is at "
                        f"{name}:{current}",
                    )
            return self.routing(name, alias)
        return RoutingTable(
            name, alias, current, dep.candidate, "canary", percent, dep.id, previous
        )
