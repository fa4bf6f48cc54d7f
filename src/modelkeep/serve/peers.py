"""The other workers of one server: which of them merges the monitoring windows (and so
judges policies, once for the whole server), how a label reaches the worker that made
the prediction, and what /metrics adds up to.

Two kinds: the workers of one ``modelkeep serve --workers N`` share a folder
(``FolderPeers``); the replicas of a Ray Serve application, on any machine, share a
coordinator (``BoardPeers`` over a ``Board`` held by one small Ray deployment).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

log = logging.getLogger("modelkeep.serve")

# Label forwarded to the board and not yet picked up: the oldest go first past this.
MAX_BOARD_LABELS = 100_000
# Metric snapshots of workers kept (a dead replica's counters still count).
MAX_BOARD_WORKERS = 256

# One metric family as plain data (picklable, JSON-able): name, type, help, samples.
Family = tuple[str, str, str, list[tuple[str, dict[str, str], float]]]


class Peers:
    """What a follower needs from the other workers of its server."""

    worker: str

    def attach(self, registry: CollectorRegistry) -> None:
        """The worker's own metrics, which ``sync`` may send to the others."""

    def sync(self, shadow: dict[str, Any] | None = None) -> None:
        """Once per poll, before anything else: exchange what the others need."""

    def lead(self) -> bool:
        """Whether this worker merges the windows now."""
        raise NotImplementedError

    def release(self) -> None:
        """Stop leading (shutting down): another worker takes over."""

    def forward_label(self, rid: str, value: Any) -> None:
        """A label for a prediction this worker did not make."""
        raise NotImplementedError

    def labels(self) -> list[tuple[str, Any]]:
        """Labels other workers forwarded since the last call."""
        raise NotImplementedError

    def exposition(self, own: CollectorRegistry) -> bytes:
        """The whole server's metrics, ``own`` being this worker's."""
        raise NotImplementedError

    def shadow_total(self, own: dict[str, Any]) -> dict[str, Any]:
        """Shadow comparison figures of every worker (``own``: this worker's raw ones)."""
        return own


class FolderPeers(Peers):
    """Workers of one machine: a lock file elects the leader, one spool file per
    worker carries labels, prometheus-client's multiprocess files add up /metrics."""

    def __init__(self, folder: str | Path, worker: str | None = None) -> None:
        self.folder = Path(folder)
        self.worker = worker or f"{os.getpid():x}"
        self._leader: IO[str] | None = None
        self._offsets: dict[str, int] = {}
        self._lock = threading.Lock()

    def lead(self) -> bool:
        # A worker that dies releases the lock, and the next one to ask takes over.
        if self._leader is not None:
            return True
        handle = (self.folder / "leader.lock").open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._leader = handle
        log.info("worker %s merges the monitoring windows", self.worker)
        return True

    def release(self) -> None:
        if self._leader is not None:
            self._leader.close()
            self._leader = None

    def forward_label(self, rid: str, value: Any) -> None:
        line = json.dumps({"id": rid, "value": value}) + "\n"
        with self._lock, (self.folder / f"labels-{self.worker}.jsonl").open("a") as f:
            f.write(line)

    def labels(self) -> list[tuple[str, Any]]:
        out = []
        for path in self.folder.glob("labels-*.jsonl"):
            if path.name == f"labels-{self.worker}.jsonl":
                continue
            offset = self._offsets.get(path.name, 0)
            with path.open("rb") as f:
                f.seek(offset)
                data = f.read()
            end = data.rfind(b"\n") + 1  # a line being written is read next time
            for line in data[:end].splitlines():
                item = json.loads(line)
                out.append((item["id"], item["value"]))
            self._offsets[path.name] = offset + end
        return out

    def exposition(self, own: CollectorRegistry) -> bytes:
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return bytes(generate_latest(merged))


class Board:
    """What the replicas of one application share, kept by one coordinator: a leader
    lease, forwarded labels, the last metric snapshot and shadow figures of each
    replica. Plain state, no Ray: the Ray deployment only holds one."""

    def __init__(self, lease_seconds: float = 10.0) -> None:
        self.lease_seconds = lease_seconds
        self._holder: str | None = None
        self._expires = 0.0
        self._labels: deque[tuple[str, str, Any]] = deque()  # (from worker, id, value)
        self._base = 0  # index of _labels[0] among every label ever posted
        self._cursors: dict[str, int] = {}
        self._metrics: dict[str, tuple[float, list[Family]]] = {}
        self._shadow: dict[str, dict[str, Any]] = {}

    def sync(
        self,
        worker: str,
        labels: list[tuple[str, Any]],
        metrics: list[Family],
        shadow: dict[str, Any] | None = None,
        now: float | None = None,
        leaving: bool = False,
    ) -> dict[str, Any]:
        """One replica's poll: post its labels, metrics and shadow figures; get the
        labels others posted, the others' metrics, the summed shadow figures, and
        whether it holds the lease (which it renews by asking)."""
        now = time.monotonic() if now is None else now
        if leaving:
            if self._holder == worker:
                self._holder = None
        elif self._holder is None or self._holder == worker or now >= self._expires:
            self._holder, self._expires = worker, now + self.lease_seconds
        cursor = self._cursors.get(worker, self._base + len(self._labels))
        start = max(cursor - self._base, 0)
        mine = [(rid, value) for who, rid, value in list(self._labels)[start:] if who != worker]
        for rid, value in labels:
            self._labels.append((worker, rid, value))
        while len(self._labels) > MAX_BOARD_LABELS:
            self._labels.popleft()
            self._base += 1
        self._cursors[worker] = self._base + len(self._labels)
        self._metrics[worker] = (now, metrics)
        while len(self._metrics) > MAX_BOARD_WORKERS:
            oldest = min(self._metrics, key=lambda w: self._metrics[w][0])
            del self._metrics[oldest]
        if shadow is not None:
            self._shadow[worker] = shadow
        others = [(t, m) for w, (t, m) in self._metrics.items() if w != worker]
        return {
            "leader": self._holder == worker,
            "labels": mine,
            "metrics": others,
            "shadow": _add_shadow(list(self._shadow.values())),
        }


class BoardPeers(Peers):
    """A replica's side of the board: one call per poll (``call`` reaches the board
    wherever it runs). Labels wait here until the next poll, so a request never waits
    on the coordinator; /metrics uses the others' snapshots of the last poll."""

    def __init__(self, call: Callable[..., dict[str, Any]], worker: str) -> None:
        self._call = call
        self.worker = worker
        self.registry: CollectorRegistry | None = None
        self._outbox: list[tuple[str, Any]] = []
        self._inbox: list[tuple[str, Any]] = []
        self._others: list[tuple[float, list[Family]]] = []
        self._shadow: dict[str, Any] = {}
        self._leader = False
        self._lock = threading.Lock()

    def attach(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def sync(self, shadow: dict[str, Any] | None = None, leaving: bool = False) -> None:
        with self._lock:
            out, self._outbox = self._outbox, []
        own = families(self.registry) if self.registry is not None else []
        try:
            got = self._call(self.worker, out, own, shadow, leaving=leaving)
        except Exception:
            with self._lock:
                self._outbox[:0] = out  # sent next time
            self._leader = False  # unsure: let the board's holder lead
            raise
        self._leader = bool(got["leader"])
        self._others = got["metrics"]
        self._shadow = got["shadow"]
        with self._lock:
            self._inbox.extend(got["labels"])

    def lead(self) -> bool:
        return self._leader

    def release(self) -> None:
        if self._leader:
            with contextlib.suppress(Exception):
                self.sync(leaving=True)
            self._leader = False

    def forward_label(self, rid: str, value: Any) -> None:
        with self._lock:
            self._outbox.append((rid, value))

    def labels(self) -> list[tuple[str, Any]]:
        with self._lock:
            out, self._inbox = self._inbox, []
        return out

    def exposition(self, own: CollectorRegistry) -> bytes:
        merged = CollectorRegistry()
        merged.register(_Merged([(time.monotonic(), families(own)), *self._others]))
        return bytes(generate_latest(merged))

    def shadow_total(self, own: dict[str, Any]) -> dict[str, Any]:
        return self._shadow or own


def families(registry: CollectorRegistry) -> list[Family]:
    """A registry's metrics as plain data, to send to the board."""
    return [
        (m.name, m.type, m.documentation, [(s.name, dict(s.labels), s.value) for s in m.samples])
        for m in registry.collect()
    ]


class _Merged:
    """Metric families of many workers as one: counters and histograms add up; a
    gauge (a window's figure, set by whichever worker merged that window) takes the
    value of the worker that reported most recently."""

    def __init__(self, snapshots: list[tuple[float, list[Family]]]) -> None:
        self.snapshots = sorted(snapshots, key=lambda s: s[0])  # oldest first

    def collect(self) -> Iterator[Metric]:
        out: dict[str, Metric] = {}
        values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        for _, fams in self.snapshots:
            for name, kind, doc, samples in fams:
                if name not in out:
                    out[name] = Metric(name, doc, kind)
                    values[name] = {}
                seen = values[name]
                for sname, labels, value in samples:
                    key = (sname, tuple(sorted(labels.items())))
                    add = kind != "gauge" and not sname.endswith("_created")
                    seen[key] = seen.get(key, 0.0) + value if add else value
        for name, metric in out.items():
            for (sname, pairs), value in values[name].items():
                metric.add_sample(sname, dict(pairs), value)
            yield metric


def _add_shadow(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Shadow figures of many workers (each as ``ShadowStats.raw()``), added up per
    deployment."""
    total: dict[str, Any] = {}
    for part in parts:
        for deployment, raw in part.items():
            into = total.setdefault(deployment, dict.fromkeys(raw, 0))
            for key, value in raw.items():
                into[key] = into.get(key, 0) + value
    return total
