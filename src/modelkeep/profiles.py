"""Reference profiles: mergeable summaries of a dataset and of a model's predictions.

A numeric column keeps its count, missing count, moments, min/max and a DDSketch-
style log-bucket histogram: a value's bucket depends only on the value (bucket
``ceil(log_gamma |x|)``), never on the rest of the data, so summaries of any split
of a dataset merge into exactly the summary of the whole (counts and buckets
exactly; sums up to float rounding), and quantiles come back within 1 % relative
error. A categorical column keeps counts per category. Monitoring compares live
windows, summarised the same way, against the profile stored with a version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

RELATIVE_ACCURACY = 0.01
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
# Values this close to zero share the zero bucket.
_MIN_MAGNITUDE = 1e-12
FORMAT = 1


def _add(a: dict[Any, int], b: dict[Any, int]) -> dict[Any, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


@dataclass
class NumericSummary:
    count: int = 0
    missing: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    low: float = math.inf
    high: float = -math.inf
    zero: int = 0
    pos: dict[int, int] = field(default_factory=dict)
    neg: dict[int, int] = field(default_factory=dict)

    kind = "numeric"

    @classmethod
    def of(cls, values: Any) -> NumericSummary:
        import numpy as np

        arr = np.asarray(values, dtype=np.float64).ravel()
        ok = np.isfinite(arr)
        present = arr[ok]
        out = cls(count=int(present.size), missing=int(arr.size - present.size))
        if not present.size:
            return out
        out.total = float(present.sum())
        out.total_sq = float(np.square(present).sum())
        out.low, out.high = float(present.min()), float(present.max())
        mag = np.abs(present)
        small = mag < _MIN_MAGNITUDE
        out.zero = int(small.sum())
        for sign, target in ((present > 0, out.pos), (present < 0, out.neg)):
            chosen = mag[sign & ~small]
            if chosen.size:
                idx = np.ceil(np.log(chosen) / _LOG_GAMMA).astype(np.int64)
                keys, counts = np.unique(idx, return_counts=True)
                target.update(zip(keys.tolist(), counts.tolist(), strict=True))
        return out

    def merge(self, other: NumericSummary) -> NumericSummary:
        return NumericSummary(
            self.count + other.count,
            self.missing + other.missing,
            self.total + other.total,
            self.total_sq + other.total_sq,
            min(self.low, other.low),
            max(self.high, other.high),
            self.zero + other.zero,
            _add(self.pos, other.pos),
            _add(self.neg, other.neg),
        )

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    @property
    def std(self) -> float | None:
        if not self.count:
            return None
        var = max(self.total_sq / self.count - (self.total / self.count) ** 2, 0.0)
        return math.sqrt(var)

    def buckets(self) -> list[tuple[float, int]]:
        """(representative value, count) in increasing order of value."""
        rep = [(-2 * _GAMMA**i / (_GAMMA + 1), c) for i, c in self.neg.items()]
        rep += [(0.0, self.zero)] if self.zero else []
        rep += [(2 * _GAMMA**i / (_GAMMA + 1), c) for i, c in self.pos.items()]
        return sorted(rep)

    def quantile(self, q: float) -> float | None:
        """The q-quantile within the sketch's relative accuracy."""
        if not self.count:
            return None
        rank = q * (self.count - 1)
        seen = 0
        for value, c in self.buckets():
            seen += c
            if seen > rank:
                return min(max(value, self.low), self.high)
        return self.high

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "count": self.count,
            "missing": self.missing,
            "sum": self.total,
            "sum_sq": self.total_sq,
            "min": None if self.count == 0 else self.low,
            "max": None if self.count == 0 else self.high,
            "zero": self.zero,
            "pos": {str(k): v for k, v in sorted(self.pos.items())},
            "neg": {str(k): v for k, v in sorted(self.neg.items())},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NumericSummary:
        return cls(
            d["count"],
            d["missing"],
            d["sum"],
            d["sum_sq"],
            math.inf if d["min"] is None else d["min"],
            -math.inf if d["max"] is None else d["max"],
            d["zero"],
            {int(k): v for k, v in d["pos"].items()},
            {int(k): v for k, v in d["neg"].items()},
        )


@dataclass
class CategoricalSummary:
    count: int = 0
    missing: int = 0
    categories: dict[str, int] = field(default_factory=dict)

    kind = "categorical"

    @classmethod
    def of(cls, values: Any) -> CategoricalSummary:
        import pandas as pd

        series = pd.Series(values)
        missing = int(series.isna().sum())
        counts = series.dropna().astype(str).value_counts()
        return cls(int(counts.sum()), missing, {str(k): int(v) for k, v in counts.items()})

    def merge(self, other: CategoricalSummary) -> CategoricalSummary:
        return CategoricalSummary(
            self.count + other.count,
            self.missing + other.missing,
            _add(self.categories, other.categories),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "count": self.count,
            "missing": self.missing,
            "categories": dict(sorted(self.categories.items())),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CategoricalSummary:
        return cls(d["count"], d["missing"], dict(d["categories"]))


Summary = NumericSummary | CategoricalSummary


def summarise(values: Any) -> Summary:
    """Numeric columns get a sketch; anything else (strings, categories, bools) counts."""
    import numpy as np

    dtype = getattr(values, "dtype", None)
    if dtype is None:
        values = np.asarray(values)
        dtype = values.dtype
    if np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.bool_):
        return NumericSummary.of(values)
    return CategoricalSummary.of(values)


def _summary_from_json(d: dict[str, Any]) -> Summary:
    if d["kind"] == "numeric":
        return NumericSummary.from_json(d)
    return CategoricalSummary.from_json(d)


@dataclass
class Profile:
    """Per-feature summaries of a dataset, and of a model's predictions on it."""

    rows: int
    features: dict[str, Summary]
    predictions: Summary | None = None

    @classmethod
    def of(cls, frame: Any, predictions: Any = None) -> Profile:
        """Profile a DataFrame (or 2-D array: columns become f0, f1, …)."""
        if hasattr(frame, "columns"):
            columns = {str(c): frame[c].to_numpy() for c in frame.columns}
            rows = len(frame)
        else:
            import numpy as np

            arr = np.asarray(frame)
            arr = arr.reshape(len(arr), -1)
            columns = {f"f{i}": arr[:, i] for i in range(arr.shape[1])}
            rows = len(arr)
        preds = None
        if predictions is not None:
            import numpy as np

            p = np.asarray(predictions)
            # Class probabilities: profile the positive/top class score.
            p = p[:, -1] if p.ndim == 2 and p.shape[1] == 2 else p
            preds = summarise(p.reshape(len(p), -1)[:, 0] if p.ndim > 1 else p)
        return cls(rows, {k: summarise(v) for k, v in columns.items()}, preds)

    def merge(self, other: Profile) -> Profile:
        if self.features.keys() != other.features.keys():
            diff = sorted(self.features.keys() ^ other.features.keys())
            raise ValueError(f"profiles of different features cannot merge: {diff}")
        features: dict[str, Summary] = {}
        for k, a in self.features.items():
            b = other.features[k]
            if type(a) is not type(b):
                raise ValueError(f"feature {k!r} is {a.kind} in one profile, {b.kind} in the other")
            features[k] = a.merge(b)  # type: ignore[arg-type]
        preds: Summary | None = None
        if self.predictions is not None and other.predictions is not None:
            preds = self.predictions.merge(other.predictions)  # type: ignore[arg-type]
        return Profile(self.rows + other.rows, features, preds)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "relative_accuracy": RELATIVE_ACCURACY,
            "rows": self.rows,
            "features": {k: v.to_json() for k, v in self.features.items()},
            "predictions": None if self.predictions is None else self.predictions.to_json(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Profile:
        preds = d.get("predictions")
        return cls(
            d["rows"],
            {k: _summary_from_json(v) for k, v in d["features"].items()},
            None if preds is None else _summary_from_json(preds),
        )
