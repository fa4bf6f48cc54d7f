"""Following a revision: poll the routing table, load and warm new versions beside the
old ones, then switch atomically.

Requests read ``Follower.snapshot`` once and use only that object, so a request that
started on a version finishes on it however many swaps happen meanwhile.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelkeep.errors import ModelkeepError
from modelkeep.serve.loaded import Loaded

if TYPE_CHECKING:
    from collections.abc import Callable

    from modelkeep.deploy import RoutingTable
    from modelkeep.repo import Repo

log = logging.getLogger("modelkeep.serve")
# A version that failed to load or warm is not tried again before this many seconds.
RETRY_FAILED_AFTER = 30.0


@dataclass(frozen=True)
class Snapshot:
    """What is being served: the routing table and the loaded versions it needs."""

    table: RoutingTable
    models: dict[int, Loaded]

    def primary(self) -> Loaded:
        return self.models[self.table.primary]


@dataclass
class ShadowStats:
    compared: int = 0
    agreed: int = 0
    primary_seconds: float = 0.0
    candidate_seconds: float = 0.0
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def as_dict(self) -> dict[str, Any]:
        n = max(self.compared, 1)
        return {
            "compared": self.compared,
            "agreement": self.agreed / n if self.compared else None,
            "primary_mean_ms": 1000 * self.primary_seconds / n,
            "candidate_mean_ms": 1000 * self.candidate_seconds / n,
            "candidate_errors": self.errors,
        }


class Follower:
    """Keeps ``snapshot`` in line with ``repo.routing(model, alias)``."""

    def __init__(
        self,
        repo_factory: Callable[[], Repo],
        model: str,
        alias: str,
        interval: float = 0.5,
        on_swap: Callable[[Snapshot], None] | None = None,
    ) -> None:
        self._repo_factory = repo_factory
        self.model = model
        self.alias = alias
        self.interval = interval
        self.on_swap = on_swap
        self.snapshot: Snapshot | None = None
        self.last_error: str | None = None
        self.registry_ok = True
        self._failed: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.shadow = ShadowStats()
        self._shadow_flushed = 0

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Load what the table names now (errors here are fatal: nothing to serve)."""
        repo = self._repo_factory()
        table = repo.routing(self.model, self.alias)
        models = {table.primary: self._load(repo, table.primary)}
        for number in table.loaded()[1:]:  # candidate and previous: not fatal
            try:
                models[number] = self._load(repo, number)
            except Exception as exc:
                self._failed[number] = time.monotonic()
                self.last_error = f"{self.model}:{number} failed to load or warm: {exc}"
                log.error(self.last_error)
        if table.candidate is not None and table.candidate not in models:
            # Serve the primary alone until the candidate loads.
            table = dataclasses.replace(table, candidate=None, mode="single")
        self.snapshot = Snapshot(table, models)
        self._thread = threading.Thread(target=self._run, name="modelkeep-follow", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        repo = None
        while not self._stop.wait(self.interval):
            try:
                repo = repo or self._repo_factory()
                self._sync(repo)
                self._flush_shadow(repo)
                self.registry_ok = True
            except ModelkeepError as exc:
                # The registry may be unreachable: keep serving what is loaded.
                if self.registry_ok:
                    log.warning("cannot read the routing table (%s); serving on", exc)
                self.registry_ok = False
                self.last_error = str(exc)
                repo = None
            except Exception:  # never let the follower die: the server would go stale
                log.exception("unexpected error while following %s@%s", self.model, self.alias)
                repo = None

    # -- swapping ---------------------------------------------------------------------

    def _load(self, repo: Repo, number: int) -> Loaded:
        version = repo.resolve(f"{self.model}:{number}")
        loaded = Loaded.load(repo, version)
        loaded.warm()
        log.info("loaded %s in %.2f s", loaded.rev, loaded.load_seconds)
        return loaded

    def _sync(self, repo: Repo) -> None:
        current = self.snapshot
        assert current is not None
        table = repo.routing(self.model, self.alias)
        if table == current.table:
            return
        models = dict(current.models)
        for number in table.loaded():
            if number in models:
                continue
            failed_at = self._failed.get(number)
            if failed_at is not None and time.monotonic() - failed_at < RETRY_FAILED_AFTER:
                continue
            try:
                models[number] = self._load(repo, number)
            except Exception as exc:  # a broken version must never be switched to
                self._failed[number] = time.monotonic()
                self.last_error = f"{self.model}:{number} failed to load or warm: {exc}"
                log.error("%s; still serving %s", self.last_error, current.primary().rev)
        if table.primary not in models or (
            table.candidate is not None and table.candidate not in models
        ):
            return  # keep serving the old table until everything it needs is loaded
        keep = set(table.loaded())
        self.snapshot = Snapshot(table, {v: m for v, m in models.items() if v in keep})
        if table.deployment != current.table.deployment:
            self.shadow = ShadowStats()
            self._shadow_flushed = 0
        log.info(
            "now serving %s@%s → %s:%s (%s)",
            self.model,
            self.alias,
            self.model,
            table.primary,
            table.mode,
        )
        if self.on_swap is not None:
            self.on_swap(self.snapshot)

    def _flush_shadow(self, repo: Repo) -> None:
        snap = self.snapshot
        if snap is None or snap.table.mode != "shadow" or snap.table.deployment is None:
            return
        if self.shadow.compared == self._shadow_flushed:
            return
        with self.shadow.lock:
            stats = self.shadow.as_dict()
            self._shadow_flushed = self.shadow.compared
        repo.record_deployment_stats(snap.table.deployment, stats)
