"""Following a revision: poll the routing table, load and warm new versions beside the
old ones, then switch atomically.

Requests read ``Follower.snapshot`` once and use only that object, so a request that
started on a version finishes on it however many swaps happen meanwhile.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelkeep.deploy.rollouts import Rollouts
from modelkeep.errors import ConflictError, ModelkeepError
from modelkeep.monitor import actions
from modelkeep.monitor.policy import Evaluator, Firing
from modelkeep.monitor.records import Records
from modelkeep.monitor.window import WindowSummary
from modelkeep.serve.loaded import Loaded
from modelkeep.serve.windows import Sealed, Windows

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from modelkeep._engine import Engine
    from modelkeep.deploy import RoutingTable
    from modelkeep.serve.peers import Peers

log = logging.getLogger("modelkeep.serve")
# A version that failed to load or warm is not tried again before this many seconds.
RETRY_FAILED_AFTER = 30.0
# A window report keeps its data's profile when it drifted, else at most this often.
PROFILE_EVERY = 300.0
# Unloaded versions kept for closing their last windows.
MAX_RETIRED = 4
# Sealed windows kept while the registry refuses them (the oldest go first).
MAX_UNSENT = 200
# A serving worker tells the registry it is alive at least this often (seconds).
HEARTBEAT = 10.0


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

    def raw(self) -> dict[str, Any]:
        """The counts and sums, which add up across workers."""
        with self.lock:
            return {
                "compared": self.compared,
                "agreed": self.agreed,
                "primary_seconds": self.primary_seconds,
                "candidate_seconds": self.candidate_seconds,
                "errors": self.errors,
            }

    def as_dict(self) -> dict[str, Any]:
        return shadow_figures(self.raw())


def shadow_figures(raw: dict[str, Any]) -> dict[str, Any]:
    """What a deployment's stats show of shadow comparisons (``ShadowStats.raw()``)."""
    compared = raw["compared"]
    n = max(compared, 1)
    return {
        "compared": compared,
        "agreement": raw["agreed"] / n if compared else None,
        "primary_mean_ms": 1000 * raw["primary_seconds"] / n,
        "candidate_mean_ms": 1000 * raw["candidate_seconds"] / n,
        "candidate_errors": raw["errors"],
    }


class Follower:
    """Keeps ``snapshot`` in line with ``Rollouts(engine).routing(model, alias)``."""

    def __init__(
        self,
        engine_factory: Callable[[], Engine],
        model: str,
        alias: str,
        interval: float = 0.5,
        on_swap: Callable[[Snapshot], None] | None = None,
        window_rows: int = 500,
        window_seconds: float = 30.0,
        monitoring: bool = True,
        peers: Peers | None = None,
        server: str = "local",
    ) -> None:
        self._engine_factory = engine_factory
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
        self.monitoring = monitoring
        # Several workers (``peers``): windows become wall-clock slots whose
        # per-worker parts the leader merges into one window of the whole server.
        self.peers = peers
        self.windows = Windows(
            window_rows,
            window_seconds,
            aligned=peers is not None,
            worker=None if peers is None else peers.worker,
        )
        # Where this worker is listed in the registry (``modelkeep deployments``).
        self.server = server
        self._reported: tuple[Any, ...] | None = None
        self._reported_at = -math.inf
        self.on_window: Callable[[dict[str, Any]], None] | None = None
        self._merged: set[tuple[int, int]] = set()
        self._merged_read: set[int] = set()  # versions whose merged slots were read
        self._unsent: list[Sealed] = []  # sealed windows not stored yet (registry errors)
        self._retired: dict[int, Loaded] = {}  # unloaded versions, for their last windows
        self._judged: int | None = None  # the version the evaluator's streaks are about
        self._profiled: dict[int, float] = {}  # version → when a window last kept its profile
        self.evaluator: Evaluator | None = None
        self.actions: list[dict[str, Any]] = []  # what policies did (also in the event log)
        self._updating: threading.Thread | None = None
        self._behind = False  # the routing table moved on and is not all loaded yet
        self._peers_ok = True

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Load what the table names now (errors here are fatal: nothing to serve)."""
        engine = self._engine_factory()
        table = Rollouts(engine).routing(self.model, self.alias)
        models = {table.primary: self._load(engine, table.primary)}
        for number in table.loaded()[1:]:  # candidate and previous: not fatal
            loaded = self._try_load(engine, number)
            if loaded is not None:
                models[number] = loaded
        if table.candidate is not None and table.candidate not in models:
            # Serve the primary alone until the candidate loads.
            table = dataclasses.replace(table, candidate=None, mode="single")
        self.snapshot = Snapshot(table, models)
        rules = Records(engine).policy(self.model)
        self.evaluator = Evaluator(rules) if rules else None
        self._report(engine)
        self._thread = threading.Thread(target=self._run, name="modelkeep-follow", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following; the windows still open are closed and stored (with several
        workers their parts are merged by the next leader, e.g. after a restart)."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            engine = self._engine_factory()
            if self.monitoring and self.snapshot is not None:
                self._close_windows(engine, final=True)
            self._report(engine, "stopped")
        except Exception:  # shutting down: say so, never hang or raise
            log.exception("could not store the last monitoring windows")
        if self.peers is not None:
            self.peers.release()  # another worker may lead

    def following(self) -> bool:
        """Whether the routing table is still being followed."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        engine = None
        while not self._stop.wait(self.interval):
            try:
                engine = engine or self._engine_factory()
                # Windows before swapping: loading a new version may take seconds, and
                # a worker's window parts must reach the leader within its grace period.
                if self.peers is not None:
                    self._exchange()
                self._close_windows(engine)
                self._sync(engine)
                self._flush_shadow(engine)
                self._report(engine)
                self.registry_ok = True
            except ModelkeepError as exc:
                # The registry may be unreachable: keep serving what is loaded.
                if self.registry_ok:
                    log.warning("cannot read the routing table (%s); serving on", exc)
                self.registry_ok = False
                self.last_error = str(exc)
                engine = None
            except Exception:  # never let the follower die: the server would go stale
                log.exception("unexpected error while following %s@%s", self.model, self.alias)
                engine = None

    # -- swapping ---------------------------------------------------------------------

    def _load(self, engine: Engine, number: int) -> Loaded:
        version = engine.versions.resolve(f"{self.model}:{number}")
        loaded = Loaded.load(engine, version)
        loaded.warm()
        log.info("loaded %s in %.2f s", loaded.rev, loaded.load_seconds)
        return loaded

    def _try_load(self, engine: Engine, number: int) -> Loaded | None:
        """Load and warm a version; a failure is recorded, never raised: a broken
        version must never be switched to, and the server keeps what it serves."""
        try:
            return self._load(engine, number)
        except Exception as exc:
            self._failed[number] = time.monotonic()
            self.last_error = f"{self.model}:{number} failed to load or warm: {exc}"
            serving = self.snapshot.primary().rev if self.snapshot is not None else "nothing"
            log.error("%s; still serving %s", self.last_error, serving)
            return None

    def _sync(self, engine: Engine) -> None:
        current = self.snapshot
        assert current is not None
        table = Rollouts(engine).routing(self.model, self.alias)
        self._behind = table != current.table
        if not self._behind:
            return
        models = dict(current.models)
        for number in table.loaded():
            if number in models:
                continue
            failed_at = self._failed.get(number)
            if failed_at is not None and time.monotonic() - failed_at < RETRY_FAILED_AFTER:
                continue
            loaded = self._try_load(engine, number)
            if loaded is not None:
                models[number] = loaded
        if table.primary not in models or (
            table.candidate is not None and table.candidate not in models
        ):
            return  # keep serving the old table until everything it needs is loaded
        keep = set(table.loaded())
        self._behind = False
        for v, m in current.models.items():
            if v not in keep:
                # Its open windows still need its reference and signature to close.
                self._retired[v] = m
        while len(self._retired) > MAX_RETIRED:
            self._retired.pop(next(iter(self._retired)))
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

    # -- monitoring windows -------------------------------------------------------------

    def _close_windows(self, engine: Engine, final: bool = False) -> None:
        snap = self.snapshot
        if snap is None:
            return
        # Windows whose report could not be stored wait for the next poll, first.
        self._unsent.extend(self.windows.seal(final=final))
        if len(self._unsent) > MAX_UNSENT:
            log.error(
                "the registry took no window for long: dropping the %d oldest",
                len(self._unsent) - MAX_UNSENT,
            )
            del self._unsent[: len(self._unsent) - MAX_UNSENT]
        while self._unsent:
            sealed = self._unsent[0]
            loaded = snap.models.get(sealed.version) or self._retired.get(sealed.version)
            try:
                if loaded is not None:
                    self._store_window(engine, snap, loaded, sealed, final)
            except ModelkeepError:
                raise  # the registry: the window waits for the next poll
            except Exception:
                log.exception("window %s of version %s dropped", sealed.window, sealed.version)
            self._unsent.pop(0)
        if self.peers is not None and not final and self.peers.lead():
            self._merge_parts(engine, snap)

    def _store_window(
        self, engine: Engine, snap: Snapshot, loaded: Loaded, sealed: Sealed, final: bool
    ) -> None:
        summary = summarise(sealed, loaded, self.windows.worker)
        if self.peers is None:
            self._publish(engine, snap, loaded, summary, sealed.window, judge=not final)
        else:
            Records(engine).record_report(
                loaded.version,
                kind="window-part",
                source=f"slot {sealed.window}, worker {self.windows.worker}",
                drifted=False,
                body={
                    "slot": sealed.window,
                    "summary": summary.to_json(),
                    "profile": None if summary.profile is None else summary.profile.to_json(),
                },
            )

    def _publish(
        self,
        engine: Engine,
        snap: Snapshot,
        loaded: Loaded,
        summary: WindowSummary,
        window: int,
        parts: Sequence[int] = (),
        judge: bool = True,
    ) -> None:
        """Store a (whole-server) window as a report — replacing the worker parts it
        merges — export it, judge it by policy."""
        body = window_report(summary, loaded, window, slot=self.peers is not None)
        drifted = bool(body.get("drift", {}).get("drifted", False))
        # The profile is most of a window's size (tens of KB): kept when the window
        # drifted, else once per PROFILE_EVERY per version — enough to plot.
        now = time.monotonic()
        number = loaded.version.number
        if drifted or now - self._profiled.get(number, -math.inf) >= PROFILE_EVERY:
            self._profiled[number] = now
        else:
            body.pop("profile", None)
        body["id"] = Records(engine).record_report(
            loaded.version,
            kind="window",
            source=f"window {window}",
            drifted=drifted,
            body=body,
            replaces=parts,
        )
        if self.on_window is not None:
            self.on_window(body)
        if judge and self.evaluator is not None and number == snap.table.primary:
            if number != self._judged:
                # A failing streak of one version is no evidence against the next.
                self.evaluator = Evaluator(self.evaluator.rules)
                self._judged = number
            values = dict(body.get("metrics", {}))
            if "drift" in body:
                values["drift_share"] = body["drift"]["share"]
            # The window is stored: a failing action must not send it round again.
            try:
                for firing in self.evaluator.window(window, values, loaded.version.metrics):
                    self._act(engine, firing, loaded)
            except Exception:
                log.exception("policy of %s failed on window %s", self.model, window)

    def _merge_parts(self, engine: Engine, snap: Snapshot) -> None:
        """Merge the workers' parts of every slot that ended a grace period ago (time
        for every worker to write its part) and was not merged yet."""
        settled = time.time() - (3 * self.interval + 1.0)
        for number, loaded in snap.models.items():
            rev = f"{self.model}:{number}"
            found = Records(engine).reports(rev, limit=500, kind="window-part")
            if not found:
                continue
            if number not in self._merged_read:
                # Slots merged before this worker led (a leader died): not again.
                self._merged_read.add(number)
                for r in Records(engine).reports(rev, limit=500, kind="window"):
                    if "slot" in r:
                        self._merged.add((number, r["slot"]))
            parts: dict[int, list[tuple[int, WindowSummary]]] = {}
            for r in found:
                part = WindowSummary.from_json(r["summary"], r.get("profile"))
                if part.end <= settled or (number, r["slot"]) in self._merged:
                    parts.setdefault(r["slot"], []).append((r["id"], part))
            for slot in sorted(parts):
                merged = functools.reduce(WindowSummary.merge, [p for _, p in parts[slot]])
                # A part that came after its slot was merged (a slow worker) becomes a
                # window of its own: counted once, never dropped, not judged twice.
                late = (number, slot) in self._merged
                ids = [i for i, _ in parts[slot]]
                try:
                    self._publish(engine, snap, loaded, merged, slot, ids, judge=not late)
                except ConflictError as exc:
                    # Another worker led for a moment and merged them: its window counts.
                    log.info("slot %s of %s: %s", slot, rev, exc)
                self._merged.add((number, slot))

    def _exchange(self) -> None:
        """Trade with the other workers: labels they took for predictions made here,
        this worker's shadow figures."""
        assert self.peers is not None
        snap = self.snapshot
        shadow = None
        if snap is not None and snap.table.mode == "shadow" and snap.table.deployment:
            shadow = {str(snap.table.deployment): self.shadow.raw()}
        try:
            self.peers.sync(shadow)
        except Exception as exc:  # the coordinator restarting: serve on, lead no more
            if self._peers_ok:
                log.warning("cannot reach the other workers (%s); serving on", exc)
            self._peers_ok = False
        else:
            if not self._peers_ok:
                log.info("the other workers are reachable again")
            self._peers_ok = True
        for rid, value in self.peers.labels():
            with contextlib.suppress(ValueError):  # mismatched rows: dropped
                self.windows.feedback(rid, value)

    def _report(self, engine: Engine, state: str = "serving") -> None:
        """Tell the registry what this worker serves (``modelkeep deployments``): on
        every change, and every HEARTBEAT seconds so a gone worker shows as gone.
        Never fatal: a read-only registry still serves."""
        snap = self.snapshot
        primary = None if snap is None else snap.table.primary
        versions = [] if snap is None else sorted(snap.models)
        error = self.last_error if self._behind else None
        key = (state, primary, tuple(versions), error)
        now = time.monotonic()
        if key == self._reported and now - self._reported_at < HEARTBEAT:
            return
        try:
            Rollouts(engine).report_replica(
                self.model,
                self.alias,
                self.server,
                self.windows.worker,
                host=socket.gethostname(),
                pid=os.getpid(),
                version=primary,
                versions=versions,
                state=state,
                error=error,
            )
        except ModelkeepError as exc:
            log.debug("could not report what this worker serves: %s", exc)
        self._reported, self._reported_at = key, now

    def _act(self, engine: Engine, firing: Firing, loaded: Loaded) -> None:
        text, evidence = actions.evidence_of(firing, loaded.rev)
        rule = firing.rule
        log.warning("%s → %s", text, rule.action)
        outcome = "alerted"
        if rule.action == "update":
            outcome = self._start_update(firing, text, evidence, loaded)
        elif rule.action == "rollback":
            outcome = actions.rollback(engine, self.model, self.alias, text, loaded.rev)
        evidence["outcome"] = outcome
        engine.refs.record_event(
            self.model, "monitor.alert", f"{text}; {outcome}", ref=self.alias, details=evidence
        )
        self.actions.append(evidence)
        if rule.webhook:
            threading.Thread(
                target=actions.post, args=(rule.webhook, evidence), daemon=True
            ).start()

    def _start_update(
        self, firing: Firing, text: str, evidence: dict[str, Any], loaded: Loaded
    ) -> str:
        """Training may take a while: it runs beside the follower, which keeps swapping
        and closing windows; its result is a second event with the same evidence."""
        if self._updating is not None and self._updating.is_alive():
            return "no update: the previous one is still running"
        labelled = self.windows.labelled()
        columns = loaded.columns or (
            list(loaded.reference.features) if loaded.reference is not None else None
        )

        def run() -> None:
            try:
                engine = self._engine_factory()
                outcome, details = actions.update_from_feedback(
                    engine, self.model, self.alias, firing.rule, labelled, columns, text, loaded.rev
                )
                done = {**evidence, "outcome": outcome, "update": details}
                engine.refs.record_event(
                    self.model,
                    "monitor.update",
                    f"{text}; {outcome}",
                    ref=self.alias,
                    details=done,
                )
                log.warning("%s", outcome)
            except Exception as exc:  # a failed update must not take the server down
                log.exception("policy update failed")
                done = {**evidence, "outcome": f"update failed: {exc}"}
            self.actions.append(done)
            if firing.rule.webhook:
                actions.post(firing.rule.webhook, done)

        self._updating = threading.Thread(target=run, name="modelkeep-update", daemon=True)
        self._updating.start()
        return "update started"

    def _flush_shadow(self, engine: Engine) -> None:
        snap = self.snapshot
        if snap is None or snap.table.mode != "shadow" or snap.table.deployment is None:
            return
        raw = self.shadow.raw()
        if self.peers is not None:
            # Every worker's comparisons, stored by the one that merges windows.
            if not self.peers.lead():
                return
            raw = self.peers.shadow_total({}).get(str(snap.table.deployment), raw)
        if raw["compared"] == self._shadow_flushed:
            return
        self._shadow_flushed = raw["compared"]
        Rollouts(engine).record_deployment_stats(snap.table.deployment, shadow_figures(raw))


def summarise(sealed: Sealed, loaded: Loaded, worker: str) -> WindowSummary:
    """One process's sealed window as a mergeable summary."""
    import numpy as np

    inputs = predictions = None
    if sealed.rows:
        predictions = np.concatenate([np.asarray(y).ravel() for y in sealed.ys])
        parts = [x.to_numpy() if hasattr(x, "to_numpy") else np.asarray(x) for x in sealed.xs]
        rows = np.concatenate([p.reshape(len(p), -1) for p in parts])
        # Rows are in the signature's column order. (A stored profile lists its
        # features sorted by name, which is no column order to rely on.)
        names = loaded.columns
        if names is None and loaded.reference is not None:
            names = list(loaded.reference.features)
        if names is not None and rows.shape[1] == len(names):
            import pandas as pd

            inputs = pd.DataFrame(rows, columns=names)
    return WindowSummary.of(
        loaded.version.number,
        sealed.start,
        sealed.end,
        inputs=inputs,
        predictions=predictions,
        requests=len(sealed.ys),
        errors=sealed.errors,
        latencies=sealed.latencies,
        y_true=sealed.y_true,
        y_pred=sealed.y_pred,
        regression=loaded.version.artifact.get("task") == "regression",
        worker=worker,
        like=loaded.reference,
    )


def window_report(
    summary: WindowSummary, loaded: Loaded, window: int, slot: bool = False
) -> dict[str, Any]:
    """A window as a report: counts, latency, drift against the reference, live
    metrics, and the mergeable summary itself (so windows can be re-merged later)."""
    body: dict[str, Any] = {
        "version": loaded.rev,
        "window": window,
        "rows": summary.rows,
        "requests": summary.requests,
        "errors": summary.errors,
        "seconds": round(summary.end - summary.start, 3),
        "labelled": summary.labelled,
        "workers": len(summary.workers),
    }
    if slot:
        body["slot"] = window
    if summary.latency.count:
        body["latency_ms"] = {
            q: round(1000 * (summary.latency.quantile(v) or 0.0), 3)
            for q, v in (("p50", 0.5), ("p99", 0.99))
        }
    reference = loaded.reference
    if reference is not None and summary.profile is not None:
        from modelkeep.monitor.drift import compare

        body["drift"] = compare(reference, summary.profile).to_dict()
    if summary.labelled:
        task = loaded.version.artifact.get("task")
        body["metrics"] = summary.metrics(task, getattr(loaded.model, "classes_", None))
    body["summary"] = summary.to_json()
    body["profile"] = None if summary.profile is None else summary.profile.to_json()
    return body
