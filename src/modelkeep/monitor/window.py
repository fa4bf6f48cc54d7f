"""Mergeable summaries of live traffic windows.

A window summary holds only what merges exactly: the inputs' and predictions'
profile (counts and buckets), request/row/error counts, a latency summary, and for
labelled rows either the confusion counts (classification) or the residual sums
(regression). Summaries of the same slot from several workers or replicas merge into
the summary of all their traffic, so a policy judges the whole server, not one
process's share of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from modelkeep.profiles import NumericSummary, Profile


def _plain(value: Any) -> Any:
    # numpy scalars → Python values, so that confusion keys compare and serialise.
    return value.item() if hasattr(value, "item") else value


@dataclass
class WindowSummary:
    version: int
    start: float  # unix seconds
    end: float
    requests: int = 0
    rows: int = 0
    errors: int = 0
    profile: Profile | None = None
    latency: NumericSummary = field(default_factory=NumericSummary)
    # (true, predicted) → rows, for classifiers.
    confusion: dict[tuple[Any, Any], int] = field(default_factory=dict)
    # n, Σ(y−ŷ)², Σ|y−ŷ|, Σy, Σy² — for regressors: rmse, mae and r² merge exactly.
    residuals: tuple[float, float, float, float, float] = (0, 0.0, 0.0, 0.0, 0.0)
    workers: tuple[str, ...] = ()

    @property
    def labelled(self) -> int:
        return sum(self.confusion.values()) + int(self.residuals[0])

    @classmethod
    def of(
        cls,
        version: int,
        start: float,
        end: float,
        *,
        inputs: Any,
        predictions: Any,
        requests: int,
        errors: int,
        latencies: list[float],
        y_true: list[Any],
        y_pred: list[Any],
        regression: bool,
        worker: str,
        like: Profile | None = None,
    ) -> WindowSummary:
        """Summarise one process's window (``inputs``: a DataFrame, or None when the
        model's inputs are not tabular) — on the grids of ``like``, the reference, so
        that windows of every worker line up with it and with each other bin for bin."""
        import numpy as np

        profile = None
        if inputs is not None:
            profile = Profile.of(inputs, predictions, like=like)
        out = cls(
            version,
            start,
            end,
            requests=requests,
            rows=len(predictions) if predictions is not None else 0,
            errors=errors,
            profile=profile,
            latency=NumericSummary.of(np.asarray(latencies, dtype=float)),
            workers=(worker,),
        )
        if y_true:
            if regression:
                y = np.asarray(y_true, dtype=float)
                e = y - np.asarray(y_pred, dtype=float)
                out.residuals = (
                    len(y),
                    float(np.dot(e, e)),
                    float(np.abs(e).sum()),
                    float(y.sum()),
                    float(np.dot(y, y)),
                )
            else:
                pairs, counts = np.unique(
                    np.stack([np.asarray(y_true), np.asarray(y_pred)], axis=1),
                    axis=0,
                    return_counts=True,
                )
                out.confusion = {
                    (_plain(t), _plain(p)): int(c) for (t, p), c in zip(pairs, counts, strict=True)
                }
        return out

    def merge(self, other: WindowSummary) -> WindowSummary:
        if other.version != self.version:
            raise ValueError(f"windows of versions {self.version} and {other.version} do not merge")
        confusion = dict(self.confusion)
        for k, n in other.confusion.items():
            confusion[k] = confusion.get(k, 0) + n
        profile = self.profile
        if profile is None:
            profile = other.profile
        elif other.profile is not None:
            profile = profile.merge(other.profile)
        r = tuple(a + b for a, b in zip(self.residuals, other.residuals, strict=True))
        return WindowSummary(
            self.version,
            min(self.start, other.start),
            max(self.end, other.end),
            self.requests + other.requests,
            self.rows + other.rows,
            self.errors + other.errors,
            profile,
            self.latency.merge(other.latency),
            confusion,
            r,  # type: ignore[arg-type]
            tuple(sorted({*self.workers, *other.workers})),
        )

    def metrics(self, task: str | None, classes: Any = None) -> dict[str, float]:
        """Live quality of the labelled rows (empty when none were labelled)."""
        if self.confusion:
            import numpy as np

            from modelkeep.evaluation import scores

            keys = list(self.confusion)
            counts = [self.confusion[k] for k in keys]
            y_true = np.repeat(np.asarray([k[0] for k in keys]), counts)
            y_pred = np.repeat(np.asarray([k[1] for k in keys]), counts)
            return scores(y_true, y_pred, task, classes)
        n, sse, sae, sy, syy = self.residuals
        if not n:
            return {}
        total = syy - sy * sy / n
        return {
            "rmse": math.sqrt(sse / n),
            "mae": sae / n,
            "r2": 1.0 - sse / total if n > 1 and total > 0 else 0.0,
        }

    def to_json(self) -> dict[str, Any]:
        """Everything but the profile (reports keep that under its own key)."""
        return {
            "version": self.version,
            "start": self.start,
            "end": self.end,
            "requests": self.requests,
            "rows": self.rows,
            "errors": self.errors,
            "latency": self.latency.to_json(),
            "confusion": [[t, p, n] for (t, p), n in self.confusion.items()],
            "residuals": list(self.residuals),
            "workers": list(self.workers),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], profile: dict[str, Any] | None) -> WindowSummary:
        return cls(
            d["version"],
            d["start"],
            d["end"],
            d["requests"],
            d["rows"],
            d["errors"],
            None if profile is None else Profile.from_json(profile),
            NumericSummary.from_json(d["latency"]),
            {(t, p): n for t, p, n in d["confusion"]},
            tuple(d["residuals"]),
            tuple(d["workers"]),
        )
