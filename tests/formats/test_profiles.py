"""Reference profiles: mergeable exactly for counts (property tests), also across
grids of different widths; quantiles within the sketch's accuracy; JSON round trip;
format-1 profiles still load and compare; stored with versions and datasets, kept by gc."""

from __future__ import annotations

import json
import math
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from blake3 import blake3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

import modelkeep
from modelkeep.errors import RepositoryFormatError
from modelkeep.monitor.drift import compare
from modelkeep.profiles import (
    BINS_PER_SPREAD,
    FORMAT,
    MAX_BINS,
    RELATIVE_ACCURACY,
    CategoricalSummary,
    Grid,
    NumericSummary,
    Profile,
)

PROPS = settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Finite values of any magnitude a feature may reasonably take (squares stay finite),
# with NaNs and infinities (both count as missing).
numbers = st.one_of(
    st.floats(min_value=-1e100, max_value=1e100, allow_nan=False),
    st.just(math.nan),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, math.inf, -math.inf, 1e-13, -1e-300, 5e-324]),
)
# Values of one feature far from zero: years, kelvin, timestamps.
far = st.sampled_from([2010.0, 290.0, 1.7e9]).flatmap(
    lambda centre: st.lists(
        st.floats(min_value=centre * 0.99, max_value=centre * 1.01), min_size=0, max_size=60
    )
)
categories = st.one_of(st.none(), st.sampled_from(["red", "green", "blue", "", "ünï", "1"]))
# Grid widths from 2**-1074 (the smallest subnormal) to 2**400.
exps = st.one_of(st.integers(-1074, 400), st.integers(-12, 12))


@st.composite
def frames(draw: Any) -> tuple[pd.DataFrame, int]:
    """A table with numeric, integer and categorical columns, and a split point."""
    n = draw(st.integers(min_value=0, max_value=50))
    frame = pd.DataFrame(
        {
            "x": np.array(draw(st.lists(numbers, min_size=n, max_size=n)), dtype=np.float64),
            "k": np.array(
                draw(st.lists(st.integers(-(2**40), 2**40), min_size=n, max_size=n)),
                dtype=np.int64,
            ),
            "colour": pd.Series(draw(st.lists(categories, min_size=n, max_size=n)), dtype=object),
        }
    )
    return frame, draw(st.integers(min_value=0, max_value=n))


def _exact(summary: Any) -> dict[str, Any]:
    """Everything of a summary that must merge exactly (sums are floats: compared apart)."""
    doc = summary.to_json()
    for key in ("sum", "sum_sq", "m2"):
        doc.pop(key, None)
    return doc


def _close(a: float, b: float, scale: float) -> bool:
    """Within 1e-9 relative, measured against the sum of magnitudes (rounding scale)."""
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9 * scale)


def _bins(values: list[float], exp: int) -> dict[int, int]:
    """Grid bins by exact rational arithmetic: floor(x / 2**exp)."""
    width = Fraction(2) ** exp
    return dict(Counter(math.floor(Fraction(v) / width) for v in values if math.isfinite(v)))


@PROPS
@given(frames())
def test_profiles_of_halves_merge_into_profile_of_whole(case: tuple[pd.DataFrame, int]) -> None:
    """The halves may pick different grids: the merge keeps the coarser, and is exactly
    the whole summarised on that grid (which is what ``like=`` does)."""
    frame, cut = case
    merged = Profile.of(frame.iloc[:cut]).merge(Profile.of(frame.iloc[cut:]))
    whole = Profile.of(frame, like=merged)
    assert merged.rows == whole.rows == len(frame)
    assert merged.features.keys() == whole.features.keys() == {"x", "k", "colour"}
    for name, w in whole.features.items():
        m = merged.features[name]
        assert type(m) is type(w)
        assert _exact(m) == _exact(w), name
    for name in ("x", "k"):
        w, m = whole.features[name], merged.features[name]
        assert isinstance(w, NumericSummary)
        assert isinstance(m, NumericSummary)
        values = frame[name].to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        assert _close(m.total, w.total, float(np.abs(values).sum()))
        assert _close(m.total_sq, w.total_sq, float(np.square(values).sum()))
        spread = float(np.square(values - values.mean()).sum()) if values.size else 0.0
        assert _close(m.m2, w.m2, spread)
        # The whole on its own grid is the merge re-binned (or the other way round).
        own = Profile.of(frame).features[name]
        assert isinstance(own, NumericSummary)
        if values.size:
            assert own.grid is not None
            assert m.grid is not None
            exp = max(own.grid.exp, m.grid.exp)
            assert own.grid.at(exp) == m.grid.at(exp)
            assert sum(m.grid.bins.values()) == m.count == values.size
        else:
            assert m.grid is own.grid is None
    assert isinstance(whole.features["colour"], CategoricalSummary)
    x = frame["x"].to_numpy()
    assert whole.features["x"].missing == int((~np.isfinite(x)).sum())
    assert whole.features["colour"].missing == int(frame["colour"].isna().sum())


@PROPS
@given(
    st.lists(numbers, max_size=60),
    st.lists(numbers, max_size=60),
    st.lists(st.lists(categories, max_size=30), min_size=1, max_size=4),
)
def test_summaries_merge_exactly_in_any_grouping(
    left: list[float], right: list[float], parts: list[list[str | None]]
) -> None:
    a, b = NumericSummary.of(left), NumericSummary.of(right)
    merged = a.merge(b)
    whole = NumericSummary.of(left + right, None if merged.grid is None else merged.grid.exp)
    assert _exact(merged) == _exact(whole)
    assert _exact(b.merge(a)) == _exact(whole)
    merged_c = CategoricalSummary.of(pd.Series(parts[0], dtype=object))
    for part in parts[1:]:
        merged_c = merged_c.merge(CategoricalSummary.of(pd.Series(part, dtype=object)))
    everything = [v for part in parts for v in part]
    expected = CategoricalSummary.of(pd.Series(everything, dtype=object))
    assert merged_c.to_json() == expected.to_json()
    assert merged_c.count == sum(v is not None for v in everything)
    assert sum(merged_c.categories.values()) == merged_c.count


@PROPS
@given(
    st.lists(st.one_of(numbers, far), min_size=1, max_size=3).map(
        lambda parts: [v for p in parts for v in (p if isinstance(p, list) else [p])]
    ),
    st.lists(far, min_size=2, max_size=4),
    st.lists(exps, min_size=4, max_size=4),
    st.randoms(use_true_random=False),
)
def test_merging_grids_of_any_widths_is_exact_for_counts(
    first: list[float], rest: list[list[float]], widths: list[int], rnd: Any
) -> None:
    """Parts summarised on grids of different widths (as ``like=`` different references
    would) merge in any order and grouping into exactly the whole on the coarsest grid;
    every bin holds exactly the values between its edges."""
    chunks = [first, *rest]
    parts = [NumericSummary.of(c, widths[i % len(widths)]) for i, c in enumerate(chunks)]
    rnd.shuffle(parts)
    left_first = parts[0]
    for p in parts[1:]:
        left_first = left_first.merge(p)
    right_first = parts[-1]
    for p in reversed(parts[:-1]):
        right_first = p.merge(right_first)
    everything = [v for c in chunks for v in c]
    finite = [v for v in everything if math.isfinite(v)]
    assert _exact(left_first) == _exact(right_first)
    assert left_first.count == len(finite)
    if not finite:
        assert left_first.grid is None
        return
    grid = left_first.grid
    assert grid is not None
    assert len(grid.bins) <= MAX_BINS
    assert sum(grid.bins.values()) == len(finite)
    assert grid.bins == _bins(finite, grid.exp)
    assert grid.exp >= max(p.grid.exp for p in parts if p.grid is not None)
    assert _exact(NumericSummary.of(everything, grid.exp)) == _exact(left_first)


@PROPS
@given(st.lists(st.one_of(numbers, st.floats(-1e-300, 1e-300)), min_size=1), exps)
def test_values_land_in_the_bin_between_their_edges(values: list[float], exp: int) -> None:
    """Including tiny negative values on wide grids (their scaled value rounds to -0.0)."""
    summary = NumericSummary.of(values, exp)
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        assert summary.grid is None
        return
    assert summary.grid is not None
    assert summary.grid.exp >= exp
    assert summary.grid.bins == _bins(finite, summary.grid.exp)


def test_grids_of_different_widths_merge_on_the_coarser() -> None:
    """A narrow and a wide sample pick different widths; their merge re-bins the finer."""
    rng = np.random.default_rng(3)
    narrow, wide = rng.normal(290, 1, 3000), rng.normal(290, 8, 3000)
    a, b = NumericSummary.of(narrow), NumericSummary.of(wide)
    assert a.grid is not None
    assert b.grid is not None
    assert b.grid.exp == a.grid.exp + 3  # a spread 8x as wide
    merged = a.merge(b)
    assert merged.grid is not None
    assert merged.grid.exp == b.grid.exp
    assert merged.grid.bins == _bins([*narrow, *wide], b.grid.exp)
    # Counts of every bin of the coarse grid: those of the 8 fine bins it covers.
    fine = a.grid.bins
    for i, c in merged.grid.bins.items():
        assert c == b.grid.bins.get(i, 0) + sum(fine.get(8 * i + j, 0) for j in range(8))
    with pytest.raises(ValueError, match="cannot be made finer"):
        b.grid.at(a.grid.exp)


def test_grid_width_follows_the_spread_not_the_magnitude() -> None:
    rng = np.random.default_rng(4)
    z = rng.normal(0, 1, 10_000)
    widths = {}
    for name, values in {
        "z": z,
        "year": 2010 + 10 * z,
        "kelvin": 290 + 5 * z,
        "timestamp": 1.7e9 + 86_400 * z,
    }.items():
        summary = NumericSummary.of(values)
        assert summary.grid is not None
        widths[name] = summary.grid.width
        std = float(values.std())
        assert BINS_PER_SPREAD <= std / summary.grid.width < 2 * BINS_PER_SPREAD, name
        assert summary.std == pytest.approx(std, rel=1e-12)
    # std 1 → 2**-7 ≤ 1/64; 10 → 2**-3; 5 → 2**-4; a day → 2**10 s
    assert widths == {"z": 2**-7, "year": 2**-3, "kelvin": 2**-4, "timestamp": 2**10}


def test_heavy_tails_and_outliers_keep_a_fine_grid_and_a_bounded_one() -> None:
    rng = np.random.default_rng(5)
    body = rng.normal(0, 1, 20_000)
    with_outliers = np.r_[body, [1e6, -1e9, 1e100]]
    summary = NumericSummary.of(with_outliers)
    assert summary.grid is not None
    # The IQR, not the std the outliers blow up, sets the width; the outliers have bins
    # far past the int64 range, each exactly where it belongs.
    assert 1 / 256 <= summary.grid.width <= 1 / 32
    assert sum(summary.grid.bins.values()) == with_outliers.size
    assert summary.grid.bins == _bins(with_outliers.tolist(), summary.grid.exp)
    assert max(summary.grid.bins) == math.floor(Fraction(1e100) / Fraction(summary.grid.width))
    cauchy = NumericSummary.of(rng.standard_cauchy(200_000))
    assert cauchy.grid is not None
    assert len(cauchy.grid.bins) <= MAX_BINS
    assert sum(cauchy.grid.bins.values()) == 200_000
    many = NumericSummary.of(np.arange(3 * MAX_BINS, dtype=np.float64), exp=-2)
    assert many.grid is not None
    assert many.grid.exp == 2  # doubled until at most MAX_BINS bins are occupied
    assert len(many.grid.bins) <= MAX_BINS


def test_constant_columns_integers_and_missing_values() -> None:
    const = NumericSummary.of(np.full(100, 2010.0))
    assert const.grid is not None
    assert const.grid.bins == {math.floor(2010 / const.grid.width): 100}
    assert const.std == 0.0
    # Integer columns on a grid at most 1 wide: one bin per integer.
    counts = NumericSummary.of(np.array([3, 3, 4, 7, 7, 7], dtype=np.int64))
    assert counts.grid is not None
    assert counts.grid.width <= 1
    assert sorted(counts.grid.bins.values()) == [1, 2, 3]
    missing = NumericSummary.of([math.nan, math.inf, -math.inf, 1.5])
    assert (missing.count, missing.missing) == (1, 3)
    nothing = NumericSummary.of([math.nan])
    assert nothing.grid is None
    assert nothing.merge(counts) == counts.merge(nothing)
    assert nothing.merge(counts).grid == counts.grid
    assert nothing.merge(counts).missing == 1


@PROPS
@given(
    st.lists(
        st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=200,
    ),
    st.floats(min_value=0, max_value=1),
)
def test_sketch_quantiles_within_relative_accuracy(values: list[float], q: float) -> None:
    summary = NumericSummary.of(values)
    ordered = np.sort(np.asarray(values))
    # The sketch answers with the value at rank floor(q · (n - 1)).
    truth = float(ordered[math.floor(q * (len(values) - 1))])
    got = summary.quantile(q)
    assert got is not None
    if abs(truth) > 1e-6:
        assert abs(got - truth) <= RELATIVE_ACCURACY * abs(truth) * (1 + 1e-9), (got, truth)
    assert summary.low <= got <= summary.high


def test_quantiles_of_a_known_sample() -> None:
    values = np.linspace(1, 1000, 1000)
    summary = NumericSummary.of(values)
    for q in (0.0, 0.1, 0.25, 0.5, 0.9, 0.99, 1.0):
        truth = np.quantile(values, q, method="lower")
        got = summary.quantile(q)
        assert got is not None
        assert abs(got - truth) <= RELATIVE_ACCURACY * truth * (1 + 1e-9)
    assert NumericSummary.of([math.nan]).quantile(0.5) is None


@PROPS
@given(frames(), st.lists(st.floats(-5, 5), min_size=0, max_size=80))
def test_json_round_trip(case: tuple[pd.DataFrame, int], scores: list[float]) -> None:
    frame, _ = case
    preds = np.resize(np.asarray(scores, dtype=np.float64), len(frame)) if scores else None
    profile = Profile.of(frame, preds)
    # As the store writes it: keys sorted; the features keep their order all the same.
    doc = json.loads(json.dumps(profile.to_json(), sort_keys=True))
    back = Profile.from_json(doc)
    assert back == profile
    assert list(back.features) == list(profile.features) == ["x", "k", "colour"]
    assert back.to_json() == profile.to_json()


def test_merging_different_features_is_refused() -> None:
    a = Profile.of(pd.DataFrame({"x": [1.0, 2.0], "y": ["a", "b"]}))
    b = Profile.of(pd.DataFrame({"x": [3.0], "z": ["c"]}))
    with pytest.raises(ValueError, match=r"different features.*'y'.*'z'"):
        a.merge(b)
    c = Profile.of(pd.DataFrame({"x": ["one"], "y": ["c"]}))
    with pytest.raises(ValueError, match="'x' is numeric in one profile, categorical"):
        a.merge(c)


def test_profile_of_array_and_class_probabilities() -> None:
    arr = np.arange(12, dtype=np.float64).reshape(4, 3)
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [0.3, 0.7]])
    p = Profile.of(arr, probs)
    assert list(p.features) == ["f0", "f1", "f2"]
    assert p.rows == 4
    assert isinstance(p.predictions, NumericSummary)
    assert p.predictions.count == 4
    assert p.predictions.high == 0.8  # the positive class's score
    assert p.predictions.low == 0.1


# -- summarised like a reference -------------------------------------------------------


def test_a_window_summarised_like_the_reference_takes_its_grids() -> None:
    rng = np.random.default_rng(12)
    n = 5000
    ref = pd.DataFrame(
        {
            "year": np.round(rng.normal(2010, 10, n)),
            "kelvin": rng.normal(290, 5, n),
            "plan": rng.choice(["basic", "pro"], n),
        }
    )
    reference = Profile.of(ref, rng.random(n))
    window = pd.DataFrame(
        {"year": [2009.0, 2010.0, 2011.0], "kelvin": [270.0, 291.5, 310.0], "plan": ["pro"] * 3}
    )
    own = Profile.of(window, [0.1, 0.5, 0.9])
    like = Profile.of(window, [0.1, 0.5, 0.9], like=reference)
    for name in ("year", "kelvin"):
        r, o, w = reference.features[name], own.features[name], like.features[name]
        assert isinstance(r, NumericSummary)
        assert isinstance(o, NumericSummary)
        assert isinstance(w, NumericSummary)
        assert r.grid is not None
        assert o.grid is not None
        assert w.grid is not None
        assert w.grid.exp == r.grid.exp != o.grid.exp  # three rows would pick their own
        assert w.grid.bins == _bins(window[name].tolist(), r.grid.exp)
        assert _exact(o) == {**_exact(w), "grid": o.to_json()["grid"]}
    assert isinstance(like.predictions, NumericSummary)
    assert isinstance(reference.predictions, NumericSummary)
    assert reference.predictions.grid is not None
    exp = reference.predictions.grid.exp
    assert like.predictions.grid == Grid(exp, _bins([0.1, 0.5, 0.9], exp))
    assert like.features["plan"] == own.features["plan"]
    # Windows like the reference merge without re-binning; columns it lacks pick their own.
    merged = like.merge(Profile.of(window.iloc[:1], [0.3], like=reference))
    assert merged.features["year"].grid.exp == reference.features["year"].grid.exp  # type: ignore[union-attr]
    extra = Profile.of(window.assign(new=[1.0, 2.0, 4.0]), like=reference)
    assert extra.features["new"].grid is not None  # type: ignore[union-attr]


# -- format 1: profiles stored by earlier modelkeep ----------------------------------------

FORMAT1 = Path(__file__).parent / "data" / "profile-format1.json"


def format1_frames(rows: int = 1500) -> tuple[pd.DataFrame, Any, pd.DataFrame, Any]:
    """The data the format-1 fixture was made from (a formula, not a random stream):
    reference and shifted current tables, with predictions."""
    z = stats.norm.ppf((np.arange(rows) + 0.5) / rows)

    def mixed(k: int) -> Any:  # a fixed permutation per column (7919 is prime)
        return z[(np.arange(rows) * 7919 * k + k) % rows]

    def frame(shift: float) -> pd.DataFrame:
        x = mixed(1) + shift
        x[::97] = np.nan
        return pd.DataFrame(
            {
                "x": x,
                "year": np.round(2010 + 10 * (mixed(2) + shift)),
                "kelvin": 290 + 5 * (mixed(3) + shift),
                "plan": np.array(["basic", "plus", "pro"])[np.arange(rows) % 3],
            }
        )

    ref, cur = frame(0.0), frame(0.5)
    return ref, 1 / (1 + np.exp(-mixed(4))), cur, 1 / (1 + np.exp(-mixed(5) - 0.5))


def test_format1_profiles_load_with_what_they_held() -> None:
    """The fixture was written by modelkeep with profiles.FORMAT 1 (before grids)."""
    doc = json.loads(FORMAT1.read_text())
    assert doc["reference"]["format"] == 1
    old = Profile.from_json(doc["reference"])
    ref, ref_preds, _, _ = format1_frames()
    new = Profile.of(ref, ref_preds)
    assert old.rows == new.rows == len(ref)
    assert set(old.features) == set(new.features)
    for name, summary in [*old.features.items(), ("prediction", old.predictions)]:
        fresh = new.predictions if name == "prediction" else new.features[name]
        if isinstance(summary, NumericSummary):
            assert isinstance(fresh, NumericSummary)
            assert summary.grid is None
            # Both formats put every value in the same log bucket.
            assert _exact(summary) == {k: v for k, v in _exact(fresh).items() if k != "grid"}
            assert summary.std == pytest.approx(fresh.std, rel=1e-9)
        else:
            assert summary == fresh
    # Format 2 keeps every key of format 1: older modelkeep reads it as format 1.
    written = new.to_json()
    assert written["format"] == FORMAT == 2
    for name, summary_doc in doc["reference"]["features"].items():
        assert set(summary_doc) <= set(written["features"][name])
        assert set(written["features"][name]) - set(summary_doc) <= {"grid", "m2"}


def test_comparing_against_a_format1_profile_works_as_before() -> None:
    doc = json.loads(FORMAT1.read_text())
    old_ref, old_cur = Profile.from_json(doc["reference"]), Profile.from_json(doc["current"])
    report = compare(old_ref, old_cur)
    was = {f["name"]: f for f in doc["report"]["features"]}
    assert [f.name for f in report.features] == list(old_ref.features)
    for f in report.features:
        assert (f.test, f.drifted) == (was[f.name]["test"], was[f.name]["drifted"]), f
        assert f.statistic == pytest.approx(was[f.name]["statistic"], rel=0.01, abs=1e-9)
    assert report.drifted is doc["report"]["drifted"]
    assert report.predictions is not None
    assert report.predictions.drifted is doc["report"]["predictions"]["drifted"]

    # A window profiled today, on its own grid or like the old reference (which has no
    # grid to give): compared on the log sketch both have — the same statistics.
    _, _, cur, cur_preds = format1_frames()
    for like in (None, old_ref):
        window = Profile.of(cur, cur_preds, like=like)
        assert compare(old_ref, window).features == report.features
    # And an old profile merges with a new one (on the log sketch: no grid).
    merged = old_cur.merge(Profile.of(cur, cur_preds))
    assert merged.rows == 2 * old_cur.rows
    assert all(getattr(f, "grid", None) is None for f in merged.features.values())
    assert compare(old_ref, merged).features[0].test == "wasserstein"


def test_a_profile_of_a_newer_format_is_refused_with_what_to_do() -> None:
    doc = Profile.of(pd.DataFrame({"x": [1.0, 2.0]})).to_json()
    doc["format"] = FORMAT + 1
    with pytest.raises(RepositoryFormatError, match=rf"format {FORMAT + 1}.*upgrade modelkeep"):
        Profile.from_json(doc)


# -- stored with versions -------------------------------------------------------------


@pytest.fixture
def train_csv(table: Any, tmp_path: Path) -> tuple[Path, pd.DataFrame, Any]:
    """A training CSV (features a, b, c and label) and a model fitted on it."""
    from sklearn.linear_model import LogisticRegression

    x, y = table(n=90, seed=8)
    x.loc[[3, 17], "b"] = np.nan
    path = tmp_path / "train.csv"
    x.assign(label=y).to_csv(path, index=False)
    frame = pd.read_csv(path)
    model = LogisticRegression().fit(frame[["a", "b", "c"]].fillna(0), frame["label"])
    return path, frame, model


def test_commit_with_data_stores_a_profile(repo: modelkeep.Repo, table: Any) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = table(n=90, seed=8)
    model = LogisticRegression().fit(x, y)
    path = repo.root.parent / "train.csv"
    x.assign(label=y).to_csv(path, index=False)
    v = repo.commit("clf", model, data=[path], target="label")
    assert "profile" in v.artifact
    profile = repo.profile(v.rev)
    assert isinstance(profile, Profile)
    assert profile.rows == 90
    assert list(profile.features) == ["a", "b", "c"]  # the label is not a feature
    assert profile == Profile.of(pd.read_csv(path).drop(columns=["label"]), model.predict(x))
    assert profile.predictions is not None
    assert profile.predictions.count == profile.rows
    assert isinstance(profile.predictions, NumericSummary)
    assert profile.predictions.total == float(model.predict(x).sum())
    ((ref),) = v.datasets
    assert ref.path == str(path.resolve())
    assert ref.content_id == blake3(path.read_bytes()).hexdigest()
    assert ref.size == path.stat().st_size


def test_version_without_data_has_no_profile(repo: modelkeep.Repo, table: Any) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = table()
    v = repo.commit("clf", LogisticRegression().fit(x, y))
    assert repo.profile(v.rev) is None


def test_dataset_versions(repo: modelkeep.Repo, tmp_path: Path, table: Any) -> None:
    x, y = table(n=25, seed=9)
    path = tmp_path / "train.csv"
    x.assign(label=y, city=["oslo", "lima", None, "rome", "oslo"] * 5).to_csv(path, index=False)
    v = repo.data_add("train", path, "first cut")
    assert v.rev == "train:1"
    assert v.format == "dataset"
    assert v.artifact["rows"] == 25
    assert [c["name"] for c in v.artifact["columns"]] == ["a", "b", "c", "label", "city"]
    assert v.artifact["columns"][3] == {"name": "label", "dtype": "int64"}
    assert v.artifact["content_id"] == blake3(path.read_bytes()).hexdigest()
    loaded = repo.load("train:1")
    pd.testing.assert_frame_equal(loaded, pd.read_csv(path))
    profile = repo.profile("train:1")
    assert profile is not None
    assert profile.rows == 25
    assert isinstance(profile.features["city"], CategoricalSummary)
    assert profile.features["city"].categories == {"oslo": 10, "lima": 5, "rome": 5}
    assert profile.features["city"].missing == 5
    assert [m.kind for m in repo.models()] == ["dataset"]

    path.write_text(path.read_text() + "0.1,0.2,0.3,1,oslo\n")
    assert repo.data_add("train", path).rev == "train:2"
    assert repo.resolve("train:2").artifact["rows"] == 26
    assert len(repo.load("train:1")) == 25


def test_commit_with_stored_dataset(repo: modelkeep.Repo, train_csv: Any) -> None:
    path, frame, _ = train_csv
    from sklearn.linear_model import LinearRegression

    features = frame[["a", "c"]]
    model = LinearRegression().fit(features, frame["label"])
    repo.data_add("train", path)
    v = repo.commit("reg", model, data=["train:1"], target="label", input_example=features)
    ((ref),) = v.datasets
    assert ref.path == "train:1"
    assert ref.content_id == blake3(path.read_bytes()).hexdigest()
    assert ref.size == path.stat().st_size
    profile = repo.profile(v.rev)
    assert profile is not None
    # The signature names the model's inputs: only those are profiled.
    assert list(profile.features) == ["a", "c"]
    assert profile.predictions is not None
    assert profile.predictions.count == len(frame)


def test_cli_commit_with_stored_dataset(
    repo: modelkeep.Repo, train_csv: Any, tmp_path: Path, cli: Any
) -> None:
    import skops.io as sio
    from sklearn.linear_model import LinearRegression

    path, frame, _ = train_csv
    model = LinearRegression().fit(frame[["a", "c"]], frame["label"])
    sio.dump(model, tmp_path / "model.skops")
    res = cli(repo.root, "data", "add", "train", path)
    assert res.code == 0, res.err
    assert res.out.startswith("[train:1] 90 rows × 4 columns")
    listed = cli(repo.root, "data", "list", "--json")
    assert [d["name"] for d in json.loads(listed.out)] == ["train"]
    # Without a signature every non-label column is a feature: give the model's own.
    frame[["a", "c"]].head().to_csv(tmp_path / "x.csv", index=False)
    res = cli(
        repo.root,
        "commit",
        "reg",
        tmp_path / "model.skops",
        "--data",
        "train:1",
        "--target",
        "label",
        "--example",
        tmp_path / "x.csv",
        "--json",
    )
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["datasets"] == [
        {
            "path": "train:1",
            "content_id": blake3(path.read_bytes()).hexdigest(),
            "size": path.stat().st_size,
        }
    ]
    profile = repo.profile("reg:1")
    assert profile is not None
    assert list(profile.features) == ["a", "c"]


def test_gc_keeps_profiles(repo: modelkeep.Repo, train_csv: Any, tmp_path: Path) -> None:
    path, frame, model = train_csv
    clean = tmp_path / "clean.csv"
    frame.fillna(0).to_csv(clean, index=False)
    v = repo.commit("clf", model, data=[clean], target="label")
    repo.data_add("train", path)
    before = {rev: repo.profile(rev) for rev in (v.rev, "train:1")}
    assert all(p is not None for p in before.values())
    profile_ids = {repo.resolve(rev).artifact["profile"] for rev in before}
    assert profile_ids <= {oid.hex for oid in repo.store.iter_ids()}

    report = repo.gc()
    assert report.objects_removed == 0
    assert profile_ids <= {oid.hex for oid in repo.store.iter_ids()}
    assert {rev: repo.profile(rev) for rev in before} == before
    check = repo.fsck()
    assert check.ok, check.problems
    assert check.unreferenced == 0
