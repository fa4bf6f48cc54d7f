"""Following a revision: poll the routing table, load and warm new versions beside the
old ones, then switch atomically.

Requests read ``Follower.snapshot`` once and use only that object, so a request that
started on a version finishes on it however many swaps happen meanwhile.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from modelkeep.deploy.rollouts import Rollouts
from modelkeep.errors import ModelkeepError
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

log = logging.getLogger("modelkeep.serve")
# A version that failed to load or warm is not tried again before this many seconds.
RETRY_FAILED_AFTER = 30.0
# A window report keeps its data's profile when it drifted, else at most this often.
PROFILE_EVERY = 300.0
# Unloaded versions kept for closing their last windows.
MAX_RETIRED = 4
# Sealed windows kept while the registry refuses them (the oldest go first).
MAX_UNSENT = 200


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
        shared: str | Path | None = None,
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
        # Several workers: ``shared`` is their common folder (leader lock, label spool);
        # windows become wall-clock slots whose per-worker parts the leader merges.
        self.shared = Path(shared) if shared is not None else None
        self.windows = Windows(window_rows, window_seconds, aligned=self.shared is not None)
        self.on_window: Callable[[dict[str, Any]], None] | None = None
        self._leader: IO[str] | None = None
        self._merged: set[tuple[int, int]] = set()
        self._merged_read: set[int] = set()  # versions whose merged slots were read
        self._unsent: list[Sealed] = []  # sealed windows not stored yet (registry errors)
        self._retired: dict[int, Loaded] = {}  # unloaded versions, for their last windows
        self._judged: int | None = None  # the version the evaluator's streaks are about
        self._profiled: dict[int, float] = {}  # version → when a window last kept its profile
        self._spool_offsets: dict[str, int] = {}
        self._spool_lock = threading.Lock()
        self.evaluator: Evaluator | None = None
        self.actions: list[dict[str, Any]] = []  # what policies did (also in the event log)
        self._updating: threading.Thread | None = None

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
        if self.monitoring and self.snapshot is not None:
            try:
                self._close_windows(self._engine_factory(), final=True)
            except Exception:  # shutting down: say so, never hang or raise
                log.exception("could not store the last monitoring windows")
        if self._leader is not None:
            self._leader.close()  # releases the lock: another worker may lead
            self._leader = None

    def _run(self) -> None:
        engine = None
        while not self._stop.wait(self.interval):
            try:
                engine = engine or self._engine_factory()
                # Windows before swapping: loading a new version may take seconds, and
                # a worker's window parts must reach the leader within its grace period.
                if self.shared is not None:
                    self._read_spool()
                self._close_windows(engine)
                self._sync(engine)
                self._flush_shadow(engine)
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
        if table == current.table:
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
        if self.shared is not None and not final and self._lead():
            self._merge_parts(engine, snap)

    def _store_window(
        self, engine: Engine, snap: Snapshot, loaded: Loaded, sealed: Sealed, final: bool
    ) -> None:
        summary = summarise(sealed, loaded, self.windows.worker)
        if self.shared is None:
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
        body = window_report(summary, loaded, window, slot=self.shared is not None)
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

    def _lead(self) -> bool:
        """Whether this worker merges the windows (holds the leader lock). A worker
        that dies releases it, and the next one to ask takes over."""
        if self._leader is not None:
            return True
        assert self.shared is not None
        handle = (self.shared / "leader.lock").open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._leader = handle
        log.info("worker %s merges the monitoring windows", self.windows.worker)
        return True

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
                self._publish(engine, snap, loaded, merged, slot, ids, judge=not late)
                self._merged.add((number, slot))

    def forward_label(self, rid: str, value: Any) -> None:
        """A label for a prediction this worker did not make: into the spool, where the
        worker that made it picks it up on its next poll."""
        assert self.shared is not None
        line = json.dumps({"id": rid, "value": value}) + "\n"
        with self._spool_lock, (self.shared / f"labels-{self.windows.worker}.jsonl").open("a") as f:
            f.write(line)

    def _read_spool(self) -> None:
        assert self.shared is not None
        for path in self.shared.glob("labels-*.jsonl"):
            if path.name == f"labels-{self.windows.worker}.jsonl":
                continue
            offset = self._spool_offsets.get(path.name, 0)
            with path.open("rb") as f:
                f.seek(offset)
                data = f.read()
            end = data.rfind(b"\n") + 1  # a line being written is read next time
            for line in data[:end].splitlines():
                item = json.loads(line)
                with contextlib.suppress(ValueError):  # mismatched rows: dropped
                    self.windows.feedback(item["id"], item["value"])
            self._spool_offsets[path.name] = offset + end

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
        if self.shadow.compared == self._shadow_flushed:
            return
        with self.shadow.lock:
            stats = self.shadow.as_dict()
            self._shadow_flushed = self.shadow.compared
        Rollouts(engine).record_deployment_stats(snap.table.deployment, stats)


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
