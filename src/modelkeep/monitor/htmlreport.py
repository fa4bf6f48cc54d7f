"""One self-contained HTML page on how a model is doing in monitoring.

The page needs nothing but itself: styles are inline, plots are inline SVG drawn by
matplotlib (on a bare ``Figure``, so no GUI backend is ever selected), and a Content
Security Policy forbids it to load anything, so it reads the same offline, attached to
a ticket or archived years later. Plot text stays text (``svg.fonttype: none``): the
file stays small and feature names stay searchable.

A job: it takes the engine (``modelkeep._engine``), never ``Repo``.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

from modelkeep.errors import Hint, NotFoundError
from modelkeep.formats._deps import need
from modelkeep.monitor.drift import DATASET_SHARE
from modelkeep.monitor.records import Records
from modelkeep.profiles import (
    CategoricalSummary,
    NumericSummary,
    Profile,
    Summary,
    cdf_points,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from jinja2 import Template
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from modelkeep._engine import Engine
    from modelkeep.registry import Event

# Actions on an alias that are not moves of it (see registry.NON_MOVES).
_NON_MOVES = ("deploy.", "monitor.", "policy.")
BINS = 30
TOP_CATEGORIES = 12
# Ids matplotlib gives its groups ("figure_1", "axes_1"…) repeat in every figure and
# nothing refers to them; ids inside <defs> (markers, clip paths) are kept.
_GROUP_ID = re.compile(r'<g id="[^"]*"')


@dataclass
class Plot:
    """One inline SVG with the caption the page shows above it."""

    key: str
    caption: str
    svg: Any  # markupsafe.Markup: the page inserts it unescaped
    drifted: bool = False


@dataclass
class Page:
    """Everything the template shows, computed here so the template only lays it out."""

    title: str
    model: str
    rev: str
    version: str
    generated_at: str
    refs: list[tuple[str, str, str]]
    latest: dict[str, Any] | None
    features: list[dict[str, Any]]
    distributions: list[Plot] = field(default_factory=list)
    distribution_note: str = ""
    metrics: list[Plot] = field(default_factory=list)
    drift: Plot | None = None
    moves: list[dict[str, Any]] = field(default_factory=list)
    report_count: int = 0
    versions: list[str] = field(default_factory=list)


def render(engine: Engine, rev: str, *, limit: int | None = 1000) -> str:
    """The page for ``rev``: the latest report of the version it names, and the
    series of every version of its model (the newest ``limit`` reports)."""
    # Say what is missing before any work is done.
    need("matplotlib", "report")
    need("jinja2", "report")
    version = engine.versions.resolve(rev)
    model = version.model
    series = Records(engine).model_reports(model, limit)
    if not series:
        raise NotFoundError(
            f"{model} has no monitoring reports yet: check a batch of data first",
            hint=Hint(
                cli=f"`modelkeep monitor run {rev} --data FILE` checks one",
                api=f"Repo.monitor({rev!r}, 'FILE') checks one",
            ),
        )
    newest = Records(engine).reports(version.rev, 1)
    latest = newest[0] if newest else None
    start = min(_when(r["at"]) for r in series)
    moves = [e for e in reversed(engine.refs.events(model)) if _is_alias_move(e) and e.at >= start]

    page = Page(
        title=f"{model} monitoring — {version.rev}",
        model=model,
        rev=rev,
        version=version.rev,
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        refs=[(r.kind, r.name, f"{model}:{r.version}") for r in engine.refs.refs(model)],
        latest=latest,
        features=_feature_rows(latest),
        report_count=len(series),
        versions=[f"{model}:{n}" for n in sorted({r["number"] for r in series})],
        moves=[
            {
                "at": e.at.strftime("%Y-%m-%d %H:%M:%S"),
                "action": e.action,
                "alias": e.ref_name,
                "before": "—" if e.before is None else f"{model}:{e.before}",
                "after": f"{model}:{e.after}",
                "actor": e.actor,
                "message": e.message,
            }
            for e in moves
        ],
    )
    # Live windows keep their data's profile only now and then (it is most of their
    # size): distributions come from the newest report of the version that has one.
    profiled = latest
    if latest is not None and not latest.get("profile"):
        stored = Records(engine).reports(version.rev, 200)
        profiled = next((r for r in stored if r.get("profile")), latest)
    figures = _Figures()
    page.distributions, page.distribution_note = _distributions(
        figures, engine.versions.profile(version), profiled
    )
    if profiled is not latest and profiled is not None:
        page.distribution_note = (
            f"Distributions from report #{profiled['id']} ({profiled['source']}, "
            f"{_shown_time(profiled['at'])}), the newest of {version.rev} that kept its "
            "data's profile."
        )
    page.metrics = _metric_plots(figures, model, series, moves)
    page.drift = _drift_plot(figures, model, series, moves)
    return _template().render(page=page, fmt=_fmt, when=_shown_time)


# -- the latest report ----------------------------------------------------------------


def _feature_rows(latest: dict[str, Any] | None) -> list[dict[str, Any]]:
    drift = (latest or {}).get("drift")
    if not drift:
        return []
    rows = list(drift["features"])
    if drift.get("predictions"):
        rows.append(drift["predictions"])
    return rows


def _distributions(
    figures: _Figures, reference: Profile | None, latest: dict[str, Any] | None
) -> tuple[list[Plot], str]:
    if latest is None:
        return [], ""
    if reference is None:
        return [], f"{latest['version']} has no reference profile to draw distributions from."
    if not latest.get("profile"):
        return [], "This report has no stored profile of its data, so no distributions."
    current = Profile.from_json(latest["profile"])
    drifted = {f["name"] for f in _feature_rows(latest) if f["drifted"]}
    pairs: list[tuple[str, Summary, Summary]] = [
        (name, ref, current.features[name])
        for name, ref in reference.features.items()
        if name in current.features
    ]
    if reference.predictions is not None and current.predictions is not None:
        pairs.append(("prediction", reference.predictions, current.predictions))
    # Drifting features first: they are what the reader came for.
    pairs.sort(key=lambda p: p[0] not in drifted)
    plots = []
    for name, ref, cur in pairs:
        svg = figures.distribution(ref, cur)
        if svg is not None:
            plots.append(Plot(f"distribution:{name}", name, svg, name in drifted))
    return plots, ""


# -- series over time -------------------------------------------------------------------


def _when(at: str) -> datetime:
    return datetime.fromisoformat(at)


def _is_alias_move(e: Event) -> bool:
    return e.ref_kind == "alias" and e.after is not None and not e.action.startswith(_NON_MOVES)


def _by_version(
    series: Iterable[dict[str, Any]], value: Any
) -> dict[int, list[tuple[datetime, float]]]:
    """version number → (time, value) oldest first, for the reports that have a value."""
    out: dict[int, list[tuple[datetime, float]]] = {}
    for r in series:
        v = value(r)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out.setdefault(r["number"], []).append((_when(r["at"]), float(v)))
    return {n: sorted(points) for n, points in sorted(out.items())}


def _metric_plots(
    figures: _Figures, model: str, series: list[dict[str, Any]], moves: list[Event]
) -> list[Plot]:
    names = sorted({k for r in series for k in (r.get("metrics") or {})})
    plots = []
    for name in names:
        lines = _by_version(series, lambda r, n=name: (r.get("metrics") or {}).get(n))
        if lines:
            svg = figures.over_time(lines, moves, ylabel=name, model=model, size=(5.2, 2.3))
            plots.append(Plot(f"metric:{name}", name, svg))
    return plots


def _drift_plot(
    figures: _Figures, model: str, series: list[dict[str, Any]], moves: list[Event]
) -> Plot | None:
    lines = _by_version(series, lambda r: (r.get("drift") or {}).get("share"))
    if not lines:
        return None
    svg = figures.over_time(
        lines,
        moves,
        ylabel="share of drifting features",
        model=model,
        threshold=DATASET_SHARE,
        ylim=(-0.03, 1.03),
    )
    return Plot("drift", "Share of drifting features", svg)


# -- drawing ------------------------------------------------------------------------------


class _Figures:
    """Draws figures and turns each into inline SVG with ids of its own."""

    REFERENCE = "#4c78a8"
    CURRENT = "#e45756"

    def __init__(self) -> None:
        self.count = 0

    def _new(
        self, width: float, height: float, *, right: float = 0.1, bottom: float = 0.32
    ) -> tuple[Figure, Axes]:
        """A figure with fixed margins (in inches): a layout engine would draw every
        figure twice, and drawing is most of the time a page takes."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(width, height))
        fig.subplots_adjust(
            left=0.62 / width,
            right=1 - right / width,
            bottom=bottom / height,
            top=1 - 0.1 / height,
        )
        ax = fig.add_subplot()
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(labelsize=8)
        return fig, ax

    def _svg(self, fig: Figure) -> Any:
        import matplotlib
        from markupsafe import Markup

        self.count += 1
        buf = io.StringIO()
        with matplotlib.rc_context(
            {
                "svg.fonttype": "none",
                # Ids of markers and clip paths derive from this: unique per figure, as
                # every figure shares one HTML document.
                "svg.hashsalt": f"modelkeep-{self.count}",
                "font.family": "sans-serif",
                "font.sans-serif": ["DejaVu Sans", "Arial"],
            }
        ):
            fig.savefig(
                buf,
                format="svg",
                metadata={"Date": None, "Creator": None, "Format": None, "Type": None},
            )
        text = buf.getvalue()
        text = _GROUP_ID.sub("<g", text[text.index("<svg") :])
        return Markup(text)  # noqa: S704 (matplotlib escapes the text it writes)

    def distribution(self, ref: Summary, cur: Summary) -> Any | None:
        if isinstance(ref, NumericSummary) and isinstance(cur, NumericSummary):
            return self._numeric(ref, cur)
        if isinstance(ref, CategoricalSummary) and isinstance(cur, CategoricalSummary):
            return self._categorical(ref, cur)
        return None

    def _numeric(self, ref: NumericSummary, cur: NumericSummary) -> Any | None:
        import numpy as np

        if not ref.count or not cur.count:
            return None
        # The middle 99 % of both, stretched to the true min and max when they are near:
        # a few far outliers would squash everything else into a bin or two.
        lo = min(q for q in (ref.quantile(0.005), cur.quantile(0.005)) if q is not None)
        hi = max(q for q in (ref.quantile(0.995), cur.quantile(0.995)) if q is not None)
        low, high = min(ref.low, cur.low), max(ref.high, cur.high)
        lo = low if lo - low <= 0.1 * (hi - lo) else lo
        hi = high if high - hi <= 0.1 * (hi - lo) else hi
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, BINS + 1)
        fig, ax = self._new(3.4, 1.9)
        for summary, color, label, fill in (
            (ref, self.REFERENCE, "reference", True),
            (cur, self.CURRENT, "current", False),
        ):
            share = np.diff(_cdf(summary, edges)) / summary.count
            if fill:
                ax.stairs(share, edges, fill=True, color=color, alpha=0.35, label=label)
            else:
                ax.stairs(share, edges, color=color, linewidth=1.4, label=label)
        ax.set_ylabel("share of rows", fontsize=8)
        ax.legend(fontsize=7, frameon=False)
        return self._svg(fig)

    def _categorical(self, ref: CategoricalSummary, cur: CategoricalSummary) -> Any | None:
        import numpy as np

        if not ref.count or not cur.count:
            return None
        pa = {k: v / ref.count for k, v in ref.categories.items()}
        pb = {k: v / cur.count for k, v in cur.categories.items()}
        keys = sorted(set(pa) | set(pb), key=lambda k: -(pa.get(k, 0) + pb.get(k, 0)))
        shown, rest = keys[:TOP_CATEGORIES], keys[TOP_CATEGORIES:]
        a = [pa.get(k, 0.0) for k in shown]
        b = [pb.get(k, 0.0) for k in shown]
        if rest:
            shown.append("(other)")
            a.append(sum(pa.get(k, 0.0) for k in rest))
            b.append(sum(pb.get(k, 0.0) for k in rest))
        x = np.arange(len(shown))
        rotate = len(shown) > 4
        fig, ax = self._new(3.4, 2.2 if rotate else 1.9, bottom=0.62 if rotate else 0.32)
        ax.bar(x - 0.2, a, 0.4, color=self.REFERENCE, alpha=0.6, label="reference")
        ax.bar(x + 0.2, b, 0.4, color=self.CURRENT, label="current")
        labels = [k if len(k) <= 12 else k[:11] + "…" for k in shown]
        ax.set_xticks(x, labels, rotation=30 if rotate else 0, ha="right" if rotate else "center")
        ax.tick_params(axis="x", labelsize=7)
        ax.set_ylabel("share of rows", fontsize=8)
        ax.legend(fontsize=7, frameon=False)
        return self._svg(fig)

    def over_time(
        self,
        lines: dict[int, list[tuple[datetime, float]]],
        moves: Sequence[Event],
        *,
        ylabel: str,
        model: str,
        threshold: float | None = None,
        ylim: tuple[float, float] | None = None,
        size: tuple[float, float] = (7.2, 2.6),
    ) -> Any:
        import matplotlib

        fig, ax = self._new(*size, right=1.15, bottom=0.5)
        short = model if len(model) <= 12 else model[:11] + "…"
        # Concise date ticks: reports minutes apart and months apart both read well.
        with matplotlib.rc_context({"date.converter": "concise"}):
            for number, points in lines.items():
                xs, ys = zip(*points, strict=True)
                # One colour per version number, the same in every plot.
                ax.plot(
                    xs,
                    ys,
                    marker="o",
                    markersize=3,
                    linewidth=1.2,
                    color=f"C{number % 10}",
                    label=f"{short}:{number}",
                )
        if threshold is not None:
            ax.axhline(threshold, color="#888888", linewidth=0.8, linestyle="--")
        if ylim is not None:
            ax.set_ylim(*ylim)
        for e in moves:
            at: Any = e.at  # a datetime: matplotlib converts it like the lines' x values
            ax.axvline(at, color="#555555", linewidth=0.9, linestyle=":")
            # x in data (time), y in axes units: the label hangs from the top.
            ax.text(
                at,
                0.98,
                f"{e.action} @{e.ref_name} → {e.after} ",
                rotation=90,
                va="top",
                ha="right",
                fontsize=6.5,
                color="#555555",
                transform=ax.get_xaxis_transform(),
            )
        ax.set_ylabel(ylabel, fontsize=8)
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return self._svg(fig)


def _cdf(summary: NumericSummary, edges: Any) -> Any:
    """Rows below each plot edge, interpolated between the points where the profile
    knows the count exactly (its log buckets' and its grid's edges, see
    ``profiles.cdf_points``) — fine near zero and far from it alike."""
    import numpy as np

    x, below, _ = cdf_points(summary, summary)
    # The exact min and max bound the outermost bins.
    xs = np.concatenate(([summary.low], np.clip(x, summary.low, summary.high), [summary.high]))
    cs = np.concatenate(([0.0], below, [float(summary.count)]))
    return np.interp(np.asarray(edges, dtype=np.float64), xs, cs, left=0.0, right=summary.count)


# -- the page --------------------------------------------------------------------------


def _shown_time(at: str) -> str:
    return _when(at).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _template() -> Template:
    import jinja2

    text = resources.files("modelkeep.monitor").joinpath("report.html.j2").read_text("utf-8")
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    return env.from_string(text)
