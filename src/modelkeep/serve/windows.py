"""Real-time monitoring windows: what each version saw and answered, and the labels
that arrived later. Requests only append under a lock; summarising happens on the
follower's thread when a window is full (rows) or old enough (seconds).

With several workers (``aligned``), windows are slots of wall-clock time — slot k
covers [k·seconds, (k+1)·seconds) — so that every worker's window of a slot covers the
same span and their summaries merge into one window of the whole server.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

# Predictions kept for joining late labels (oldest forgotten first).
MAX_PENDING = 50_000
# Labelled rows kept for policy-triggered updates (the most recent ones).
MAX_LABELLED = 20_000


@dataclass
class _Open:
    start: float = field(default_factory=time.time)
    opened: float = field(default_factory=time.monotonic)
    xs: list[Any] = field(default_factory=list)
    ys: list[Any] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    rows: int = 0
    labelled_pred: list[Any] = field(default_factory=list)
    labelled_true: list[Any] = field(default_factory=list)
    errors: int = 0


@dataclass(frozen=True)
class Sealed:
    version: int
    window: int  # a slot number when aligned, else this process's window counter
    start: float  # unix seconds
    end: float
    xs: list[Any]
    ys: list[Any]
    latencies: list[float]
    rows: int
    y_pred: list[Any]
    y_true: list[Any]
    errors: int

    @property
    def seconds(self) -> float:
        return self.end - self.start


class Windows:
    def __init__(
        self,
        rows: int = 500,
        seconds: float = 30.0,
        aligned: bool = False,
        worker: str | None = None,
    ) -> None:
        self.rows = rows
        self.seconds = seconds
        self.aligned = aligned
        self._open: dict[tuple[int, int], _Open] = {}
        self._pending: OrderedDict[str, tuple[int, Any, Any]] = OrderedDict()
        # (version, inputs, true values) of joined requests, newest last.
        self._labelled: deque[tuple[int, Any, Any]] = deque()
        self._labelled_rows = 0
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        # In prediction ids, so a label names the worker that can join it.
        self.worker = worker or f"{os.getpid():x}"
        self._window_ids = itertools.count(1)

    def _window(self, version: int) -> _Open:
        """The open window of ``version`` (caller holds the lock)."""
        slot = int(time.time() // self.seconds) if self.aligned else 0
        w = self._open.get((version, slot))
        if w is None:
            w = self._open[(version, slot)] = _Open()
            if self.aligned:
                w.start = slot * self.seconds
        return w

    def add(
        self, version: int, x: Any, y: Any, rid: str | None = None, seconds: float = 0.0
    ) -> str:
        """Record one request; returns the id its labels can be sent back with (the
        client's own request id when it gave one)."""
        rid = rid or f"{self.worker}-{next(self._ids)}"
        with self._lock:
            w = self._window(version)
            w.xs.append(x)
            w.ys.append(y)
            w.latencies.append(seconds)
            w.rows += len(y)
            self._pending[rid] = (version, x, y)
            if len(self._pending) > MAX_PENDING:
                self._pending.popitem(last=False)
        return rid

    def error(self, version: int) -> None:
        with self._lock:
            self._window(version).errors += 1

    def feedback(self, rid: str, values: Any) -> int:
        """Join true values to the predictions of request ``rid``; returns rows joined."""
        import numpy as np

        truth = labels(values)
        with self._lock:
            found = self._pending.pop(rid, None)
            if found is None:
                return 0
            version, x, y = found
            pred = np.asarray(y).ravel()
            problem = None
            if len(truth) != len(pred):
                problem = f"request {rid} had {len(pred)} rows, got {len(truth)} labels"
            elif _kind(pred) != _kind(truth):
                # Labels the window's metrics could not compare with the predictions.
                problem = f"request {rid} predicted {_kind(pred)}, got {_kind(truth)} labels"
            if problem is not None:
                self._pending[rid] = found
                raise ValueError(problem)
            w = self._window(version)
            w.labelled_pred.extend(pred.tolist())
            w.labelled_true.extend(truth.tolist())
            self._labelled.append((version, x, truth))
            self._labelled_rows += len(truth)
            while self._labelled_rows - len(self._labelled[0][2]) >= MAX_LABELLED:
                self._labelled_rows -= len(self._labelled.popleft()[2])
            return len(truth)

    def labelled(self) -> list[tuple[int, Any, Any]]:
        """The most recent labelled requests: (version, inputs, true values)."""
        with self._lock:
            return list(self._labelled)

    def _due(self, w: _Open, slot: int, now: float, wall: float) -> bool:
        if self.aligned:
            return wall >= (slot + 1) * self.seconds
        busy = w.rows or w.errors or w.labelled_true
        return bool(w.rows >= self.rows or (busy and now - w.opened >= self.seconds))

    def seal(self, now: float | None = None, final: bool = False) -> list[Sealed]:
        """Windows that are full or old enough (aligned: whose slot has ended), closed
        and handed over; ``final``: every open window (the server is stopping)."""
        now = time.monotonic() if now is None else now
        wall = time.time()
        out = []
        with self._lock:
            for (version, slot), w in list(self._open.items()):
                if not (final or self._due(w, slot, now, wall)):
                    continue
                del self._open[(version, slot)]
                if not (w.rows or w.errors or w.labelled_true):
                    continue
                end = (
                    min(wall, (slot + 1) * self.seconds)
                    if self.aligned
                    else w.start + (now - w.opened)
                )
                out.append(
                    Sealed(
                        version,
                        slot if self.aligned else next(self._window_ids),
                        w.start,
                        end,
                        w.xs,
                        w.ys,
                        w.latencies,
                        w.rows,
                        w.labelled_pred,
                        w.labelled_true,
                        w.errors,
                    )
                )
        return out


_LABEL_KINDS = {int: "numbers", float: "numbers", str: "strings", bool: "booleans"}


def labels(values: Any) -> Any:
    """True values sent as feedback: one label, or a flat list of one per row, all
    numbers, all strings or all booleans (what a window's metrics can compare)."""
    import numpy as np

    items = values if isinstance(values, list) else [values]
    if not items:
        raise ValueError("no labels: send one per row of the prediction")
    kinds = {_LABEL_KINDS.get(type(v)) for v in items}
    if None in kinds:
        raise ValueError("labels must be numbers, strings or booleans, not null, lists or objects")
    if len(kinds) > 1:
        raise ValueError(f"labels mix {' and '.join(sorted(k for k in kinds if k))}: send one kind")
    return np.asarray(items)


def _kind(arr: Any) -> str:
    kind = arr.dtype.kind
    return "booleans" if kind == "b" else "numbers" if kind in "iuf" else "strings"
