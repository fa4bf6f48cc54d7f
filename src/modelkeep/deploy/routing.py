"""The routing table of a served revision, and the one function that routes a request.

Strategies are data here: a server (local, or a Ray Serve replica later) polls the
table for its revision and routes each request with ``RoutingTable.route``; it needs
to know nothing else about blue-green, canary or shadow.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

    from modelkeep.registry.records import Deployment

STRATEGIES = ("blue-green", "canary", "shadow")


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """Which versions serve ``model@alias`` and how requests split between them."""

    model: str
    alias: str
    primary: int  # the alias target: answers every request not routed elsewhere
    candidate: int | None = None
    mode: str = "single"  # single | canary | shadow
    percent: float = 0.0  # canary: share of requests the candidate answers
    deployment: int | None = None
    previous: int | None = None  # kept loaded so a rollback is instant (blue-green)

    def loaded(self) -> list[int]:
        """Versions a server should hold in memory, most important first."""
        out = [self.primary]
        for v in (self.candidate, self.previous):
            if v is not None and v not in out:
                out.append(v)
        return out

    def route(self, key: str | None = None) -> tuple[int, int | None]:
        """(version that answers, version that gets a shadow copy or None).

        With a key (header X-Request-Key) canary routing is sticky: the same key
        always lands on the same side for a given percentage."""
        if self.candidate is None or self.mode == "single":
            return self.primary, None
        if self.mode == "shadow":
            return self.primary, self.candidate
        if key is not None:
            digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
            point = int.from_bytes(digest, "big") % 10_000 / 100.0
        else:
            point = random.random() * 100.0  # noqa: S311 - traffic split, not security
        return (self.candidate, None) if point < self.percent else (self.primary, None)


def canary_percent(deployment: Deployment, now: datetime) -> float:
    """The share a canary sends to its candidate now: its steps advance with time."""
    if not deployment.steps or not deployment.interval_seconds:
        return deployment.percent
    elapsed = (now - deployment.created_at).total_seconds()
    step = int(elapsed // deployment.interval_seconds)
    return float(deployment.steps[min(step, len(deployment.steps) - 1)])
