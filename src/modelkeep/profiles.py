"""Reference profiles: mergeable summaries of a dataset and of a model's predictions.

A numeric column keeps its count, missing count (NaN and ±inf), moments, min/max and
two histograms. Where a value lands in either depends only on the value (and, for the
grid, on a width), never on the rest of the data, so summaries of any split of a
dataset merge into the summary of the whole — counts and bins exactly, sums up to
float rounding:

- a DDSketch-style log-bucket sketch (bucket ``ceil(log_gamma |x|)``): buckets 2 % of
  a value wide, so quantiles come back within 1 % relative error, values near zero are
  told apart and a heavy tail costs few buckets;
- a fixed-width grid (bin ``floor(x / 2**exp)``) whose width is a power of two picked
  from the data's spread (64 to 128 bins per standard deviation, or per IQR / 1.349
  when that is smaller): its resolution is relative to the spread, so a feature far
  from zero (a year around 2010 ± 10, temperatures of 290 ± 5 K) gets bins of 1/8 of
  a year or 1/16 K where the log sketch has buckets 40 years or 6 K wide.

Widths are powers of two and bin edges multiples of the width, so a bin of width 2w is
exactly two bins of width w (bin ``i`` becomes ``i >> 1``): summaries on different
grids merge exactly by re-binning the finer into the coarser. Similar data picks the
same width; a window summarised ``like=`` a reference takes the reference's, and the
two line up bin for bin. A grid keeps at most ``MAX_BINS`` occupied bins and doubles
its width until it does (extreme outliers, very heavy tails: the log sketch keeps
their shape). Drift tests read both histograms together (``cdf_points``).

A categorical column keeps counts per category.

Format 2 adds the grid, ``m2`` (the sum of squared deviations from the mean: a
variance that stays accurate far from zero) and the features' order, and keeps every
key of format 1: profiles stored as format 1 load and compare on their log sketch,
and older modelkeep reads a format 2 profile as a format 1 one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelkeep.errors import RepositoryFormatError, UsageError

if TYPE_CHECKING:
    import numpy as np

RELATIVE_ACCURACY = 0.01
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
# Values this close to zero share the zero bucket.
_MIN_MAGNITUDE = 1e-12
FORMAT = 2

# A grid has at least this many bins per spread (std, or IQR / 1.349), fewer than twice.
BINS_PER_SPREAD = 64
# Occupied grid bins at most; beyond, the width doubles.
MAX_BINS = 4096
# The bulk of a column sits within 2**52 widths of zero (floats are no finer) ...
_BULK_BITS = 52
# ... and bins up to 2**62 are counted with numpy; values beyond (outliers) in Python.
_FAST_BITS = 62
# The smallest width is the smallest subnormal float.
_MIN_EXP = -1074
# Bin ranges this long are counted with bincount (O(n)); longer ones (outliers) sorted.
_DENSE_SPAN = 1 << 18
# The spread that picks a width is estimated on a strided sample of this many values.
_SPREAD_SAMPLE = 4096


def _add(a: dict[Any, int], b: dict[Any, int]) -> dict[Any, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


def _sparse(counts: np.ndarray, first: int) -> dict[int, int]:
    """{first + i: counts[i]} for the non-zero counts."""
    import numpy as np

    nz = np.flatnonzero(counts)
    return dict(zip((nz + first).tolist(), counts[nz].tolist(), strict=True))


def _collapse(keys: np.ndarray, counts: np.ndarray, exp: int) -> tuple[Any, Any, int]:
    """Double the width of sorted int64 bins until at most MAX_BINS are occupied."""
    import numpy as np

    while keys.size > MAX_BINS:
        keys = keys >> 1  # an arithmetic shift: floor(i / 2), negative bins included
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        keys, counts = keys[starts], np.add.reduceat(counts, starts)
        exp += 1
    return keys, counts, exp


def _capped(bins: dict[int, int], exp: int) -> Grid:
    """Bins (of any size: Python ints) doubled in width until at most MAX_BINS."""
    while len(bins) > MAX_BINS:
        halved: dict[int, int] = {}
        for i, c in bins.items():
            halved[i >> 1] = halved.get(i >> 1, 0) + c
        bins, exp = halved, exp + 1
    return Grid(exp, bins)


def _bin(x: float, exp: int) -> int:
    """floor(x / 2**exp), exactly, for any finite float and width."""
    m, e = math.frexp(x)
    mantissa, shift = int(m * (1 << 53)), e - 53 - exp  # x = mantissa * 2**(e - 53)
    return mantissa << shift if shift >= 0 else mantissa >> -shift


@dataclass
class Grid:
    """Fixed-width bins: bin ``i`` counts the values in ``[i * 2**exp, (i + 1) * 2**exp)``."""

    exp: int
    bins: dict[int, int] = field(default_factory=dict)

    @property
    def width(self) -> float:
        return math.ldexp(1.0, self.exp)

    def at(self, exp: int) -> Grid:
        """The same counts in bins of width ``2**exp`` (not finer): exact, since every
        coarse bin is ``2**(exp - self.exp)`` whole bins of this grid."""
        if exp < self.exp:
            raise ValueError(f"a grid of width 2**{self.exp} cannot be made finer (2**{exp})")
        if exp == self.exp:
            return self
        shift = exp - self.exp
        out: dict[int, int] = {}
        for i, c in self.bins.items():
            j = i >> shift
            out[j] = out.get(j, 0) + c
        return Grid(exp, out)

    def merge(self, other: Grid) -> Grid:
        """Both grids' counts, on the coarser grid (then capped at MAX_BINS)."""
        exp = max(self.exp, other.exp)
        return _capped(_add(self.at(exp).bins, other.at(exp).bins), exp)

    @classmethod
    def of(cls, present: np.ndarray, exp: int, low: float, high: float, buf: Any = None) -> Grid:
        """The finite values ``present`` (from ``low`` to ``high``) in bins of width
        ``2**exp`` — or wider, to keep MAX_BINS. ``buf``: scratch space of their size."""
        import numpy as np

        buf = np.empty_like(present) if buf is None else buf
        ends = np.array([low, high])
        with np.errstate(over="ignore"):  # an outlier scaled past the float range: inf
            for x, out in ((present, buf), (ends, ends)):
                # A power of two scales exactly, so a value's bin depends on it alone.
                if -1022 <= exp <= 1023:
                    np.multiply(x, math.ldexp(1.0, -exp), out=out)
                else:
                    np.ldexp(x, -exp, out=out)
                np.floor(out, out=out)
        if exp > 0 and low < 0:
            # Scaling down can round a tiny negative value to -0.0, whose floor is 0.
            buf[(buf == 0) & (present < 0)] = -1
            ends[(ends == 0) & (np.array([low, high]) < 0)] = -1
        limit = math.ldexp(1.0, _FAST_BITS)
        outliers: dict[int, int] = {}
        if ends[0] <= -limit or ends[1] >= limit:
            far = np.abs(buf) >= limit
            # Scaled past 2**53, a float is a whole number: the bin, unless it overflowed.
            for scaled, x in zip(buf[far].tolist(), present[far].tolist(), strict=True):
                i = int(scaled) if math.isfinite(scaled) else _bin(x, exp)
                outliers[i] = outliers.get(i, 0) + 1
            buf = buf[~far]
            if not buf.size:
                return _capped(outliers, exp)
            ends = np.array([buf.min(), buf.max()])
        first, last = float(ends[0]), float(ends[1])
        if last - first < _DENSE_SPAN:
            buf -= first
            counts = np.bincount(buf.astype(np.int64))
            nz = np.flatnonzero(counts)
            keys, counts = nz.astype(np.int64) + int(first), counts[nz]
        else:
            keys, counts = np.unique(buf.astype(np.int64), return_counts=True)
        keys, counts, wider = _collapse(keys, counts, exp)
        bins = dict(zip(keys.tolist(), counts.tolist(), strict=True))
        # The outliers on the grid the rest doubled to, then as many doublings as both need.
        return _capped(_add(bins, cls(exp, outliers).at(wider).bins), wider)


def grid_exp(present: np.ndarray, std: float | None) -> int:
    """The exponent of the width that gives BINS_PER_SPREAD to twice as many bins per
    spread — the std or, when smaller (heavy tails, outliers), IQR / 1.349 — or, with no
    spread, as fine as floats of the bulk's size are. Read on a strided sample."""
    import numpy as np

    sample = present[:: max(1, present.size // _SPREAD_SAMPLE)]
    q1, q3 = (sample.size - 1) // 4, 3 * (sample.size - 1) // 4
    ordered = np.partition(sample, [q1, q3])
    low, high = float(ordered[q1]), float(ordered[q3])
    # The bulk's bins stay within 2**52 (past 2**62, values are binned one by one).
    finest = max(math.frexp(max(-low, high))[1] - _BULK_BITS, _MIN_EXP)
    spreads = [s for s in (std or 0.0, (high - low) / 1.349) if s > 0]
    if not spreads:
        return finest
    return max(math.frexp(min(spreads) / BINS_PER_SPREAD)[1] - 1, finest)


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
    m2: float = 0.0  # sum of squared deviations from the mean
    grid: Grid | None = None  # None: empty, or read from a format-1 profile

    kind = "numeric"

    @classmethod
    def of(cls, values: Any, exp: int | None = None) -> NumericSummary:
        """Summarise ``values``; ``exp`` asks for grid bins of width ``2**exp`` (the
        grid of a reference: see ``Profile.of(like=...)``) instead of picking one."""
        import numpy as np

        arr = np.asarray(values, dtype=np.float64).ravel()
        ok = np.isfinite(arr)
        present = arr if ok.all() else arr[ok]
        out = cls(count=int(present.size), missing=int(arr.size - present.size))
        if not present.size:
            return out
        n = present.size
        out.total = float(present.sum())
        out.low, out.high = float(present.min()), float(present.max())
        # One scratch array serves every step below: fresh arrays cost page faults.
        buf = np.subtract(present, out.total / n)
        # einsum, not dot: BLAS threads cost milliseconds a call on a busy machine.
        out.m2 = float(np.einsum("i,i->", buf, buf))
        out.total_sq = out.m2 + out.total * out.total / n

        mag = np.abs(present, out=buf)
        small = mag < _MIN_MAGNITUDE
        out.zero = int(np.count_nonzero(small))
        if out.zero < n:
            signed = present[~small] if out.zero else present
            logs = mag[~small] if out.zero else mag
            # The very operations of format 1, so that both put a value in one bucket.
            np.log(logs, out=logs)
            np.divide(logs, _LOG_GAMMA, out=logs)
            np.ceil(logs, out=logs)
            first = float(logs.min())
            logs -= first
            key = logs.astype(np.int64)
            span = int(key.max()) + 1
            if out.low < 0 < out.high:  # negatives count in a second run of buckets
                key += np.signbit(signed).astype(np.int64) * span
            counts = np.bincount(key, minlength=2 * span)
            out.pos = _sparse(counts[:span], int(first))
            out.neg = _sparse(counts[span:], int(first))
            if out.high <= 0:  # every value outside the zero bucket is negative
                out.pos, out.neg = {}, out.pos

        exp = grid_exp(present, out.std) if exp is None else max(exp, _MIN_EXP)
        out.grid = Grid.of(present, exp, out.low, out.high, buf)
        return out

    def merge(self, other: NumericSummary) -> NumericSummary:
        n = self.count + other.count
        if not self.count or not other.count:
            m2 = self.m2 + other.m2
        else:  # Chan et al.: the deviations of each part, plus the parts' means apart
            delta = other.total / other.count - self.total / self.count
            m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / n
        if not other.count:
            grid = self.grid
        elif not self.count:
            grid = other.grid
        elif self.grid is not None and other.grid is not None:
            grid = self.grid.merge(other.grid)
        else:  # a format-1 summary's values cannot be placed on a grid
            grid = None
        return NumericSummary(
            count=n,
            missing=self.missing + other.missing,
            total=self.total + other.total,
            total_sq=self.total_sq + other.total_sq,
            low=min(self.low, other.low),
            high=max(self.high, other.high),
            zero=self.zero + other.zero,
            pos=_add(self.pos, other.pos),
            neg=_add(self.neg, other.neg),
            m2=m2,
            grid=grid,
        )

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    @property
    def std(self) -> float | None:
        """The population standard deviation."""
        if not self.count:
            return None
        return math.sqrt(max(self.m2, 0.0) / self.count)

    def buckets(self) -> list[tuple[float, int]]:
        """(representative value, count) of the log sketch, in increasing order of value."""
        rep = [(-2 * _GAMMA**i / (_GAMMA + 1), c) for i, c in self.neg.items()]
        rep += [(0.0, self.zero)] if self.zero else []
        rep += [(2 * _GAMMA**i / (_GAMMA + 1), c) for i, c in self.pos.items()]
        return sorted(rep)

    def quantile(self, q: float) -> float | None:
        """The q-quantile within the log sketch's relative accuracy."""
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
        doc: dict[str, Any] = {
            "kind": self.kind,
            "count": self.count,
            "missing": self.missing,
            "sum": self.total,
            "sum_sq": self.total_sq,
            "m2": self.m2,
            "min": None if self.count == 0 else self.low,
            "max": None if self.count == 0 else self.high,
            "zero": self.zero,
            "pos": {str(k): v for k, v in sorted(self.pos.items())},
            "neg": {str(k): v for k, v in sorted(self.neg.items())},
        }
        if self.grid is not None:
            doc["grid"] = {
                "exp": self.grid.exp,
                "bins": {str(k): v for k, v in sorted(self.grid.bins.items())},
            }
        return doc

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NumericSummary:
        count, total, total_sq = d["count"], d["sum"], d["sum_sq"]
        m2 = d.get("m2")
        if m2 is None:  # format 1: from the raw moments (exact enough near zero)
            m2 = max(total_sq - total * total / count, 0.0) if count else 0.0
        grid = d.get("grid")
        return cls(
            count=count,
            missing=d["missing"],
            total=total,
            total_sq=total_sq,
            low=math.inf if d["min"] is None else d["min"],
            high=-math.inf if d["max"] is None else d["max"],
            zero=d["zero"],
            pos={int(k): v for k, v in d["pos"].items()},
            neg={int(k): v for k, v in d["neg"].items()},
            m2=m2,
            grid=None
            if grid is None
            else Grid(grid["exp"], {int(k): v for k, v in grid["bins"].items()}),
        )


def cdf_points(a: NumericSummary, b: NumericSummary) -> tuple[Any, Any, Any]:
    """Points ``x`` (ascending) where both summaries know how many of their values lie
    below, and those two counts: the edges of the log buckets and, when both have a
    grid, of the grid's bins (on the coarser of the two grids). Each histogram is fine
    where the other is coarse: the log sketch near zero and across heavy tails, the
    grid wherever the data is dense, however far from zero.

    Counts are exact at every point up to whether a value on the edge itself is
    counted (buckets ``(lo, hi]`` and bins ``[lo, hi)``)."""
    import numpy as np

    parts = [_log_edges(a, b)]
    if a.grid is not None and b.grid is not None:
        parts.append(_grid_edges(a.grid, b.grid))
    x = np.concatenate([p[0] for p in parts])
    ca = np.concatenate([p[1] for p in parts])
    cb = np.concatenate([p[2] for p in parts])
    # Points at the same place: the smaller counts (values below it) first.
    order = np.lexsort((ca + cb, x))
    return (
        x[order],
        np.maximum.accumulate(ca[order]) if x.size else ca,
        np.maximum.accumulate(cb[order]) if x.size else cb,
    )


def _keyed(bins: dict[int, int], shift: int = 0) -> tuple[Any, Any]:
    """Bin numbers (as floats: positions; re-binned ``shift`` times coarser) and counts."""
    import numpy as np

    keys = np.fromiter(bins.keys(), dtype=np.float64, count=len(bins))
    counts = np.fromiter(bins.values(), dtype=np.float64, count=len(bins))
    return (np.floor(np.ldexp(keys, -shift)) if shift else keys), counts


def _aligned(a: tuple[Any, Any], b: tuple[Any, Any]) -> tuple[Any, Any, Any]:
    """The union of two sets of keyed counts: keys ascending, counts of each (0 if none)."""
    import numpy as np

    keys = np.unique(np.concatenate((a[0], b[0])))
    return (
        keys,
        np.bincount(np.searchsorted(keys, a[0]), a[1], keys.size),
        np.bincount(np.searchsorted(keys, b[0]), b[1], keys.size),
    )


def _edges(lo: Any, hi: Any, ca: Any, cb: Any) -> tuple[Any, Any, Any]:
    """Cells [lo, hi) in increasing order with their counts → (edge, count below) pairs."""
    import numpy as np

    through_a, through_b = np.cumsum(ca), np.cumsum(cb)
    x = np.column_stack((lo, hi)).ravel()
    return (
        x,
        np.column_stack((through_a - ca, through_a)).ravel(),
        np.column_stack((through_b - cb, through_b)).ravel(),
    )


def _log_edges(a: NumericSummary, b: NumericSummary) -> tuple[Any, Any, Any]:
    import numpy as np

    neg, na, nb = (v[::-1] for v in _aligned(_keyed(a.neg), _keyed(b.neg)))  # by value
    pos, pa, pb = _aligned(_keyed(a.pos), _keyed(b.pos))
    zero = [1.0] if a.zero or b.zero else []
    return _edges(
        np.concatenate(
            (-np.power(_GAMMA, neg), [-_MIN_MAGNITUDE] * len(zero), np.power(_GAMMA, pos - 1))
        ),
        # The buckets next to zero end where the zero bucket starts (not at their edge).
        np.concatenate(
            (
                np.minimum(-np.power(_GAMMA, neg - 1), -_MIN_MAGNITUDE),
                [_MIN_MAGNITUDE] * len(zero),
                np.power(_GAMMA, pos),
            )
        ),
        np.concatenate((na, [float(a.zero)] * len(zero), pa)),
        np.concatenate((nb, [float(b.zero)] * len(zero), pb)),
    )


def _grid_edges(a: Grid, b: Grid) -> tuple[Any, Any, Any]:
    import numpy as np

    exp = max(a.exp, b.exp)
    keys, ca, cb = _aligned(_keyed(a.bins, exp - a.exp), _keyed(b.bins, exp - b.exp))
    return _edges(np.ldexp(keys, exp), np.ldexp(keys + 1, exp), ca, cb)


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


def summarise(values: Any, like: Summary | None = None) -> Summary:
    """Numeric columns get a sketch and a grid (``like``'s grid when it has one);
    anything else (strings, categories, bools) counts."""
    import numpy as np

    dtype = getattr(values, "dtype", None)
    if dtype is None:
        values = np.asarray(values)
        dtype = values.dtype
    if np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.bool_):
        grid = like.grid if isinstance(like, NumericSummary) else None
        return NumericSummary.of(values, None if grid is None else grid.exp)
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
    def of(cls, frame: Any, predictions: Any = None, *, like: Profile | None = None) -> Profile:
        """Profile a DataFrame (or 2-D array: columns become f0, f1, …).

        ``like``: a reference profile whose grids to use, so that this profile (a
        monitoring window, a batch) lines up with it bin for bin — the grid a window's
        own data would pick may be coarser, and then the comparison would be too."""
        if hasattr(frame, "columns"):
            columns = {str(c): frame[c].to_numpy() for c in frame.columns}
            rows = len(frame)
        else:
            import numpy as np

            arr = np.asarray(frame)
            arr = arr.reshape(len(arr), -1)
            columns = {f"f{i}": arr[:, i] for i in range(arr.shape[1])}
            rows = len(arr)
        shape = like.features if like is not None else {}
        preds = None
        if predictions is not None:
            import numpy as np

            p = np.asarray(predictions)
            # Class probabilities: profile the positive/top class score.
            p = p[:, -1] if p.ndim == 2 and p.shape[1] == 2 else p
            preds = summarise(
                p.reshape(len(p), -1)[:, 0] if p.ndim > 1 else p,
                like.predictions if like is not None else None,
            )
        return cls(rows, {k: summarise(v, shape.get(k)) for k, v in columns.items()}, preds)

    def merge(self, other: Profile) -> Profile:
        if self.features.keys() != other.features.keys():
            diff = sorted(self.features.keys() ^ other.features.keys())
            raise UsageError(f"profiles of different features cannot merge: {diff}")
        features: dict[str, Summary] = {}
        for k, a in self.features.items():
            b = other.features[k]
            if type(a) is not type(b):
                raise UsageError(f"feature {k!r} is {a.kind} in one profile, {b.kind} in the other")
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
            # Stores write JSON with sorted keys: the features' order is kept apart.
            "feature_order": list(self.features),
            "features": {k: v.to_json() for k, v in self.features.items()},
            "predictions": None if self.predictions is None else self.predictions.to_json(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Profile:
        fmt = d.get("format", 1)
        if not isinstance(fmt, int) or fmt > FORMAT:
            raise RepositoryFormatError(
                f"a profile of format {fmt!r}: this modelkeep reads formats up to {FORMAT}; "
                "upgrade modelkeep"
            )
        preds = d.get("predictions")
        order = d.get("feature_order")
        if order is None or sorted(order) != sorted(d["features"]):
            order = list(d["features"])  # format 1: in whatever order the JSON has
        return cls(
            d["rows"],
            {k: _summary_from_json(d["features"][k]) for k in order},
            None if preds is None else _summary_from_json(preds),
        )
