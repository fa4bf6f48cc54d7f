"""Drift checks: statistics computed from profiles (mergeable summaries) against scipy
on the raw data, verdicts and thresholds, merging, and `monitor run` / `monitor report`
end to end through the Python API and the CLI.

Numeric summaries hold a log-bucket sketch (fine near zero) and a grid whose width
follows the data's spread (fine far from zero: years, kelvin); the tests below cover
both kinds of data.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

import modelkeep
from modelkeep.errors import ModelkeepError
from modelkeep.monitor.drift import (
    DEFAULT_THRESHOLDS,
    SMALL_SAMPLE,
    FeatureDrift,
    compare,
    compare_summary,
)
from modelkeep.profiles import CategoricalSummary, NumericSummary, Profile

SMALL = (800, 600)  # reference, current rows: KS / chi-square
LARGE = (5000, 4000)  # Wasserstein / Jensen–Shannon


def numeric(kind: str, rng: np.random.Generator, n: int, drift: bool) -> np.ndarray:
    """``n`` values of a distribution; ``drift`` moves it clearly (≥ 0.18 std in
    Wasserstein terms, a KS p-value far below 0.05 at a few hundred rows)."""
    d = 1.0 if drift else 0.0
    if kind == "normal":
        return rng.normal(0.3 * d, 1.0, n)
    if kind == "wider":
        return rng.normal(5.0, 2.0 + d, n)
    if kind == "lognormal":
        return rng.lognormal(0.3 * d, 1.0, n)
    if kind == "exponential":
        return rng.exponential(1.0 + 0.5 * d, n)
    if kind == "uniform":
        return rng.uniform(-10.0 + 2 * d, 10.0 + 2 * d, n)
    if kind == "poisson":  # integers: many ties
        return rng.poisson(4.0 + d, n).astype(np.float64)
    if kind == "zeros":  # exact zeros and both signs
        x = rng.normal(0.3 * d, 1.0, n)
        x[rng.random(n) < 0.1] = 0.0
        return x
    if kind == "negative":
        return -rng.lognormal(0.3 * d, 0.7, n)
    raise AssertionError(kind)


KINDS = ["normal", "wider", "lognormal", "exponential", "uniform", "poisson", "zeros", "negative"]


def pair(kind: str, sizes: tuple[int, int], drift: bool, seed: int) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    return numeric(kind, rng, sizes[0], False), numeric(kind, rng, sizes[1], drift)


def drift_of(a: Any, b: Any, thresholds: dict[str, float] | None = None) -> FeatureDrift:
    return compare_summary("x", NumericSummary.of(a), NumericSummary.of(b), thresholds)


def counts_drift(ref: dict[str, int], cur: dict[str, int]) -> FeatureDrift:
    return compare_summary(
        "plan",
        CategoricalSummary(sum(ref.values()), 0, dict(ref)),
        CategoricalSummary(sum(cur.values()), 0, dict(cur)),
    )


def proportions(ref: dict[str, int], cur: dict[str, int]) -> tuple[Any, Any]:
    keys = sorted(set(ref) | set(cur))
    a = np.array([ref.get(k, 0) for k in keys], float)
    b = np.array([cur.get(k, 0) for k in keys], float)
    return a / a.sum(), b / b.sum()


# -- statistics against scipy on the raw data -----------------------------------------


@pytest.mark.parametrize("drift", [False, True], ids=["stable", "drifted"])
@pytest.mark.parametrize("kind", KINDS)
def test_ks_statistic_matches_scipy(kind: str, drift: bool) -> None:
    for seed in range(3):
        a, b = pair(kind, SMALL, drift, seed)
        got = drift_of(a, b)
        truth = stats.ks_2samp(a, b)
        assert got.test == "ks"
        assert abs(got.statistic - truth.statistic) <= 0.02, (seed, got, truth)
        assert got.p_value is not None
        assert got.drifted == (truth.pvalue < 0.05), (seed, got, truth)


@pytest.mark.parametrize("drift", [False, True], ids=["stable", "drifted"])
@pytest.mark.parametrize("kind", KINDS)
def test_wasserstein_matches_scipy(kind: str, drift: bool) -> None:
    for seed in range(3):
        a, b = pair(kind, LARGE, drift, seed)
        got = drift_of(a, b)
        truth = stats.wasserstein_distance(a, b) / a.std()
        assert got.test == "wasserstein"
        assert got.p_value is None
        assert abs(got.statistic - truth) <= 0.05 * truth, (seed, got.statistic, truth)
        assert got.drifted == (truth >= 0.1), (seed, got.statistic, truth)


CHISQUARE = [
    # (reference counts ≤ 1000 rows, current counts): chi-square is the small-sample test
    ({"basic": 400, "plus": 250, "pro": 150}, {"basic": 290, "plus": 190, "pro": 120}),
    ({"basic": 400, "plus": 250, "pro": 150}, {"basic": 200, "plus": 250, "pro": 150}),
    ({"a": 120, "b": 80, "c": 60, "d": 40, "e": 20}, {"a": 100, "b": 90, "c": 50, "d": 45}),
    ({"a": 500, "b": 499}, {"a": 2000, "b": 2100}),
]
JENSENSHANNON = [
    ({"a": 3000, "b": 2000, "c": 1000}, {"a": 2450, "b": 1650, "c": 900}),
    ({"a": 3000, "b": 2000, "c": 1000}, {"a": 1500, "b": 2000, "c": 1500, "new": 500}),
    ({"a": 3000, "b": 2000, "c": 1000, "gone": 10}, {"a": 100, "b": 20}),
]


@pytest.mark.parametrize(("ref", "cur"), CHISQUARE)
def test_chisquare_matches_scipy_on_the_same_counts(
    ref: dict[str, int], cur: dict[str, int]
) -> None:
    got = counts_drift(ref, cur)
    keys = sorted(ref)
    observed = np.array([cur.get(k, 0) for k in keys], float)
    expected = np.array([ref[k] for k in keys], float)
    expected *= observed.sum() / expected.sum()
    truth = stats.chisquare(observed, expected)
    assert got.test == "chisquare"
    assert got.statistic == pytest.approx(truth.statistic, rel=1e-9)
    assert got.p_value == pytest.approx(truth.pvalue, rel=1e-6, abs=1e-300)
    assert got.drifted == (truth.pvalue < 0.05)


@pytest.mark.parametrize(("ref", "cur"), JENSENSHANNON)
def test_jensenshannon_is_scipys_on_the_same_counts(
    ref: dict[str, int], cur: dict[str, int]
) -> None:
    """The statistic is scipy's Jensen–Shannon distance of the two sets of proportions,
    with scipy's default natural log (as Evidently uses)."""
    got = counts_drift(ref, cur)
    pa, pb = proportions(ref, cur)
    assert got.test == "jensenshannon"
    assert got.statistic == pytest.approx(float(jensenshannon(pa, pb)), rel=1e-9)


def test_jensenshannon_agrees_with_evidently() -> None:
    ref = {"basic": 2500, "plus": 1500, "pro": 1000}
    cur = {"basic": 1480, "plus": 1480, "pro": 1040}
    pa, pb = proportions(ref, cur)
    evidently = float(jensenshannon(pa, pb))  # what DataDriftPreset computes: 0.0931
    got = counts_drift(ref, cur)
    assert got.statistic == pytest.approx(evidently, rel=1e-9)
    assert evidently < 0.1
    assert not got.drifted


# -- verdicts ---------------------------------------------------------------------------


@pytest.mark.parametrize("drift", [False, True], ids=["stable", "drifted"])
@pytest.mark.parametrize(
    ("rows", "numeric_test", "categorical_test"),
    [
        ((300, 300), "ks", "chisquare"),
        ((SMALL_SAMPLE, 700), "ks", "chisquare"),
        ((SMALL_SAMPLE + 1, 700), "wasserstein", "jensenshannon"),
        ((20_000, 20_000), "wasserstein", "jensenshannon"),
    ],
)
def test_verdicts_in_both_sample_regimes(
    rows: tuple[int, int], numeric_test: str, categorical_test: str, drift: bool
) -> None:
    """Clearly drifted: a 0.6-std shift, plan shares 50/30/20 % → 25/35/40 %. Clearly
    stable: the same normal, and the reference's own plan shares."""
    rng = np.random.default_rng(rows[0])
    n, m = rows
    ref = pd.DataFrame(
        {
            "x": rng.normal(2.0, 1.0, n),
            "plan": rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2]),
        }
    )
    if drift:
        plan = rng.choice(["basic", "plus", "pro"], m, p=[0.25, 0.35, 0.4])
    else:
        shares = ref["plan"].value_counts(normalize=True)
        plan = np.repeat(shares.index.to_numpy(), np.round(shares.to_numpy() * m).astype(int))
    cur = pd.DataFrame({"x": rng.normal(2.0 + 0.6 * drift, 1.0, len(plan)), "plan": plan})
    report = compare(Profile.of(ref), Profile.of(cur))
    x, plan_drift = report.features
    assert (x.name, x.kind, x.test) == ("x", "numeric", numeric_test)
    assert (plan_drift.name, plan_drift.kind) == ("plan", "categorical")
    assert plan_drift.test == categorical_test
    assert x.threshold == DEFAULT_THRESHOLDS[numeric_test]
    assert plan_drift.threshold == DEFAULT_THRESHOLDS[categorical_test]
    assert x.drifted == drift
    assert plan_drift.drifted == drift
    assert report.drifted == drift
    assert report.drifted_features == (["x", "plan"] if drift else [])
    assert (report.reference_rows, report.current_rows) == (n, len(cur))
    # scipy on the raw data says the same.
    if numeric_test == "ks":
        assert (stats.ks_2samp(ref["x"], cur["x"]).pvalue < 0.05) == drift
    else:
        w = stats.wasserstein_distance(ref["x"], cur["x"]) / ref["x"].std(ddof=0)
        assert (w >= 0.1) == drift
    # PSI is reported for every feature; at 20k rows it separates the two cleanly.
    if n >= 20_000:
        for f in report.features:
            assert (f.psi >= 0.2) if drift else (f.psi < 0.02), f


@pytest.mark.parametrize(("drifting", "expected"), [(0, False), (1, False), (2, True), (3, True)])
def test_dataset_drifts_when_half_the_features_do(drifting: int, expected: bool) -> None:
    rng = np.random.default_rng(drifting)
    names = ["a", "b", "c", "d"]
    ref = pd.DataFrame({k: rng.normal(0, 1, 3000) for k in names})
    cur = pd.DataFrame(
        {k: rng.normal(1.0 if i < drifting else 0.0, 1, 3000) for i, k in enumerate(names)}
    )
    report = compare(Profile.of(ref), Profile.of(cur))
    assert report.drifted_features == names[:drifting]
    assert report.share == drifting / 4
    assert report.drifted is expected
    assert report.to_dict()["drifted_features"] == names[:drifting]
    # The share is a parameter too.
    assert compare(Profile.of(ref), Profile.of(cur), dataset_share=0.75).drifted is (drifting >= 3)


def test_per_feature_thresholds_change_verdicts() -> None:
    rng = np.random.default_rng(5)
    ref = pd.DataFrame(
        {"x": rng.normal(0, 1, 4000), "y": rng.normal(0, 1, 4000), "z": rng.normal(0, 1, 4000)}
    )
    cur = pd.DataFrame(
        {
            "x": rng.normal(0.3, 1, 4000),
            "y": rng.normal(0.3, 1, 4000),
            "z": rng.normal(0.07, 1, 4000),
        }
    )
    a, b = Profile.of(ref), Profile.of(cur)
    default = compare(a, b)
    assert default.drifted_features == ["x", "y"]
    stats_by_name = {f.name: f.statistic for f in default.features}
    assert 0.25 < stats_by_name["x"] < 0.5
    assert 0.05 < stats_by_name["z"] < 0.1

    tuned = compare(a, b, thresholds={"x": {"wasserstein": 0.5}, "*": {"wasserstein": 0.05}})
    by_name = {f.name: f for f in tuned.features}
    assert by_name["x"].threshold == 0.5  # the feature's own threshold beats "*"
    assert by_name["y"].threshold == 0.05
    assert by_name["z"].threshold == 0.05
    assert tuned.drifted_features == ["y", "z"]
    # Same statistics, only the verdicts moved.
    assert {f.name: f.statistic for f in tuned.features} == stats_by_name

    # A threshold for another test leaves this one alone; a p-value threshold works too.
    assert compare(a, b, thresholds={"x": {"ks": 1e-9}}).drifted_features == ["x", "y"]
    few = Profile.of(ref.head(500)), Profile.of(cur.head(500))
    assert compare(*few).features[0].test == "ks"
    strict = compare(*few, thresholds={"*": {"ks": 1e-300}})
    assert strict.drifted_features == []
    assert all(f.threshold == 1e-300 for f in strict.features)


def test_prediction_drift_and_its_threshold() -> None:
    rng = np.random.default_rng(11)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 3000)})
    cur = pd.DataFrame({"x": rng.normal(0, 1, 3000)})
    a = Profile.of(ref, rng.normal(0.0, 1.0, 3000))
    b = Profile.of(cur, rng.normal(0.2, 1.0, 3000))
    report = compare(a, b)
    assert report.predictions is not None
    assert report.predictions.name == "prediction"
    assert report.predictions.drifted
    assert report.drifted_features == []  # predictions are not features
    assert not report.drifted
    relaxed = compare(a, b, thresholds={"prediction": {"wasserstein": 0.5}})
    assert relaxed.predictions is not None
    assert not relaxed.predictions.drifted
    assert compare(a, Profile.of(cur)).predictions is None


def test_verdicts_are_json_booleans() -> None:
    ref = {"basic": 400, "plus": 250, "pro": 150}
    cur = {"basic": 200, "plus": 250, "pro": 150}
    got = counts_drift(ref, cur)
    assert type(got.drifted) is bool
    report = compare(
        Profile.of(pd.DataFrame({"plan": [k for k, v in ref.items() for _ in range(v)]})),
        Profile.of(pd.DataFrame({"plan": [k for k, v in cur.items() for _ in range(v)]})),
    )
    assert json.loads(json.dumps(report.to_dict()))["features"][0]["drifted"] is True


# -- merging ------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [SMALL, LARGE], ids=["small", "large"])
def test_drift_of_merged_halves_equals_drift_of_the_whole(rows: tuple[int, int]) -> None:
    rng = np.random.default_rng(rows[1])
    n, m = rows

    def frame(k: int, shift: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "x": rng.normal(shift, 1.0, k),
                "z": np.where(rng.random(k) < 0.2, 0.0, rng.normal(-shift, 2.0, k)),
                "count": rng.poisson(3.0 + shift, k),
                "plan": rng.choice(["basic", "plus", "pro"], k, p=[0.5, 0.3, 0.2]),
            }
        )

    ref = frame(n, 0.0)
    cur = frame(m, 0.2)
    ref_preds, cur_preds = rng.random(n), rng.random(m)
    reference = Profile.of(ref, ref_preds)
    # Windows summarised like the reference (as live monitoring does) share its grids:
    # the parts merge into exactly the whole.
    whole = compare(reference, Profile.of(cur, cur_preds, like=reference))
    cut = m // 3
    merged_current = Profile.of(cur.iloc[:cut], cur_preds[:cut], like=reference).merge(
        Profile.of(cur.iloc[cut:], cur_preds[cut:], like=reference)
    )
    merged = compare(reference, merged_current)
    assert merged == whole  # every statistic, p-value, PSI and verdict, exactly
    assert whole.to_dict() == merged.to_dict()
    # Parts that picked their own grids merge too (on the coarsest): same verdicts.
    own = Profile.of(cur.iloc[:cut], cur_preds[:cut]).merge(
        Profile.of(cur.iloc[cut:], cur_preds[cut:])
    )
    for w, g in zip(whole.features, compare(reference, own).features, strict=True):
        assert (g.name, g.test, g.drifted) == (w.name, w.test, w.drifted)
        assert g.statistic == pytest.approx(w.statistic, rel=0.02, abs=1e-3)

    # A reference merged from parts: counts merge exactly, its std up to float rounding.
    parts = Profile.of(ref.iloc[: n // 2], ref_preds[: n // 2]).merge(
        Profile.of(ref.iloc[n // 2 :], ref_preds[n // 2 :])
    )
    again = compare(parts, Profile.of(cur, cur_preds))
    for w, g in zip(whole.features, again.features, strict=True):
        assert (g.name, g.test, g.drifted) == (w.name, w.test, w.drifted)
        assert g.statistic == pytest.approx(w.statistic, rel=1e-9)


# -- errors ---------------------------------------------------------------------------------


def test_a_missing_feature_is_an_error() -> None:
    ref = Profile.of(
        pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [1.0, 2.0, 4.0], "k": ["a", "b", "a"]})
    )
    with pytest.raises(ValueError, match=r"lacks feature\(s\) y, k"):
        compare(ref, Profile.of(pd.DataFrame({"x": [1.0, 2.0]})))
    # Extra features in the current data are ignored.
    extra = Profile.of(pd.DataFrame({"x": [1.0], "y": [2.0], "k": ["a"], "new": [0.0]}))
    assert [f.name for f in compare(ref, extra).features] == ["x", "y", "k"]
    with pytest.raises(ValueError, match="'x' is numeric in the reference, categorical now"):
        compare(ref, Profile.of(pd.DataFrame({"x": ["a"], "y": [2.0], "k": ["a"]})))


@pytest.mark.parametrize("rows", [SMALL, LARGE], ids=["small", "large"])
def test_drift_far_from_zero_is_seen(rows: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    a = np.round(rng.normal(2010, 5, rows[0]))
    b = np.round(rng.normal(2015, 5, rows[1]))
    assert stats.ks_2samp(a, b).pvalue < 1e-10
    assert stats.wasserstein_distance(a, b) / a.std() > 0.9
    assert drift_of(a, b).drifted


# Features far from zero: (mean, std, whole numbers?).
FAR = {"year": (2010.0, 10.0, True), "kelvin": (290.0, 5.0, False)}


@pytest.mark.parametrize("rows", [SMALL, LARGE], ids=["small", "large"])
@pytest.mark.parametrize("feature", sorted(FAR))
def test_half_a_std_shift_far_from_zero_is_seen_and_a_fresh_sample_is_not(
    feature: str, rows: tuple[int, int]
) -> None:
    """A year around 2010 ± 10 and temperatures of 290 ± 5 K: a shift of 0.5 std drifts,
    a fresh sample of the same distribution does not — with the current summarised on
    its own grid or on the reference's (``like=``), and statistics as scipy's on the
    raw values."""
    mean, std, whole = FAR[feature]
    for seed in range(3):
        rng = np.random.default_rng(seed)

        def draw(n: int, shift: float, rng: np.random.Generator = rng) -> Any:
            x = rng.normal(mean + shift * std, std, n)
            return np.round(x) if whole else x

        ref = draw(rows[0], 0.0)
        reference = NumericSummary.of(ref)
        assert reference.grid is not None
        for cur, drift in ((draw(rows[1], 0.0), False), (draw(rows[1], 0.5), True)):
            for current in (NumericSummary.of(cur), NumericSummary.of(cur, reference.grid.exp)):
                got = compare_summary(feature, reference, current)
                assert got.drifted is drift, (seed, got)
                if got.test == "ks":
                    truth = stats.ks_2samp(ref, cur)
                    assert abs(got.statistic - truth.statistic) <= 0.02, (seed, got, truth)
                    assert bool(truth.pvalue < 0.05) is drift
                else:
                    w = stats.wasserstein_distance(ref, cur) / ref.std()
                    assert got.test == "wasserstein"
                    assert abs(got.statistic - w) <= 0.05 * w, (seed, got.statistic, w)
                    assert bool(w >= 0.1) is drift


def test_a_format1_reference_far_from_zero_is_compared_on_its_log_sketch() -> None:
    """A reference stored without a grid (format 1) still compares — on the log sketch
    both sides have, as before: far from zero that sees a 0.5-std shift only in part."""
    rng = np.random.default_rng(8)
    ref, cur = np.round(rng.normal(2010, 10, 5000)), np.round(rng.normal(2015, 10, 4000))
    doc = NumericSummary.of(ref).to_json()
    del doc["grid"], doc["m2"]
    old = NumericSummary.from_json(doc)
    assert old.grid is None
    with_grid = compare_summary("year", NumericSummary.of(ref), NumericSummary.of(cur))
    without = compare_summary("year", old, NumericSummary.of(cur))
    truth = stats.wasserstein_distance(ref, cur) / ref.std()
    assert with_grid.statistic == pytest.approx(truth, rel=0.01)
    assert without.statistic < 0.8 * truth  # 2 % buckets: 40 years wide


# -- end to end: API and CLI ----------------------------------------------------------------

FEATURES = ["a", "b", "c"]


def batch(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    x = pd.DataFrame(
        {
            "a": rng.normal(shift, 1.0, n),
            "b": rng.normal(shift, 1.0, n),
            "c": rng.exponential(1.0, n),
        }
    )
    label = (x["a"] + 0.5 * x["b"] + 0.3 * rng.normal(size=n) > 0).astype(np.int64)
    return x.assign(label=label)


def plans(rng: np.random.Generator, n: int) -> pd.DataFrame:
    x = pd.DataFrame(
        {"a": rng.normal(0.0, 1.0, n), "plan": rng.choice(["basic", "plus", "pro"], n)}
    )
    return x.assign(label=((x["a"] > 0) | (x["plan"] == "pro")).astype(np.int64))


@dataclass(frozen=True)
class Setup:
    root: Path
    files: dict[str, Path]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    """churn:1 (signature, profile), nosig:1 (profile, no signature), bare:1 (neither),
    plans:1 (a categorical input, a reference of 600 rows)."""
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    base = tmp_path_factory.mktemp("monitor")
    rng = np.random.default_rng(2024)
    train = batch(rng, 2000)
    frames = {
        "train": train,
        "stable": batch(rng, 1500),
        "drifted": batch(rng, 1500, shift=1.0),
        "lacking": batch(rng, 300).drop(columns=["b"]),
        "extra": batch(rng, 1500).assign(extra=1.0),
        "plans_train": plans(rng, 600),
        "plans_batch": plans(rng, 400),
    }
    files = {}
    for name, frame in frames.items():
        files[name] = base / f"{name}.csv"
        frame.to_csv(files[name], index=False)
    model = LogisticRegression().fit(train[FEATURES], train["label"])
    root = base / "repo"
    with modelkeep.Repo.init(root) as repo:
        repo.commit(
            "churn",
            model,
            data=[files["train"]],
            target="label",
            input_example=train[FEATURES].head(),
        )
        repo.commit("nosig", model, data=[files["train"]], target="label")
        repo.commit("bare", model)
        small = frames["plans_train"]
        pipeline = make_pipeline(
            make_column_transformer((OneHotEncoder(), ["plan"]), remainder="passthrough"),
            LogisticRegression(),
        ).fit(small[["a", "plan"]], small["label"])
        repo.commit(
            "plans",
            pipeline,
            data=[files["plans_train"]],
            target="label",
            input_example=small[["a", "plan"]].head(),
        )
    return Setup(root, files)


def test_monitor_through_the_python_api(setup: Setup) -> None:
    with modelkeep.Repo(setup.root) as repo:
        reference = repo.profile("churn:1")
        assert reference is not None
        assert list(reference.features) == FEATURES
        before = len(repo.reports("churn:1"))

        stable = repo.monitor("churn:1", setup.files["stable"], target="label")
        assert stable["version"] == "churn:1"
        assert stable["drift"]["drifted"] is False
        assert stable["drift"]["drifted_features"] == []
        assert [f["test"] for f in stable["drift"]["features"]] == ["wasserstein"] * 3
        assert stable["drift"]["reference_rows"] == 2000
        assert stable["drift"]["current_rows"] == 1500
        assert stable["drift"]["predictions"]["drifted"] is False
        assert stable["task"] == "classification"
        assert stable["metrics"]["accuracy"] > 0.85

        drifted = repo.monitor("churn:1", setup.files["drifted"], target="label")
        assert drifted["drift"]["drifted"] is True
        assert drifted["drift"]["drifted_features"] == ["a", "b"]
        assert drifted["drift"]["share"] == pytest.approx(2 / 3)
        assert drifted["drift"]["predictions"]["drifted"] is True
        # The same check as the library call on the raw data (on the reference's grids).
        raw = pd.read_csv(setup.files["drifted"])
        direct = compare(reference, Profile.of(raw[FEATURES], like=reference))
        assert [f["statistic"] for f in drifted["drift"]["features"]] == [
            f.statistic for f in direct.features
        ]
        # Extra columns in the batch are not features of a model with a signature.
        extra = repo.monitor("churn:1", setup.files["extra"], target="label", store=False)
        assert "id" not in extra
        assert extra["drift"]["drifted"] is False

        reports = repo.reports("churn:1")
        assert len(reports) == before + 2
        newest, previous = reports[0], reports[1]
        assert (newest["id"], previous["id"]) == (drifted["id"], stable["id"])
        assert newest["drifted"] is True
        assert previous["drifted"] is False
        assert newest["source"] == str(setup.files["drifted"])
        assert newest["drift"] == drifted["drift"]


def test_monitor_through_the_cli(cli: Any, setup: Setup) -> None:
    stable = cli(
        setup.root,
        "monitor",
        "run",
        "churn:1",
        "--data",
        setup.files["stable"],
        "--target",
        "label",
        "--json",
    )
    assert stable.code == 0, stable.err
    assert json.loads(stable.out)["drift"]["drifted"] is False

    res = cli(
        setup.root,
        "monitor",
        "run",
        "churn:1",
        "--data",
        setup.files["drifted"],
        "--target",
        "label",
        "--json",
    )
    assert res.code == 1, res.err  # drift: exit 1, the report still printed
    body = json.loads(res.out)
    assert body["drift"]["drifted"] is True
    assert body["drift"]["drifted_features"] == ["a", "b"]
    assert set(body["metrics"]) >= {"accuracy", "f1"}

    listed = cli(setup.root, "monitor", "report", "churn:1", "--json")
    assert listed.code == 0, listed.err
    reports = json.loads(listed.out)
    assert reports[0]["id"] == body["id"]
    assert reports[0]["drifted"] is True
    assert reports[0]["source"] == str(setup.files["drifted"])
    assert reports[0]["drift"] == body["drift"]
    assert reports[1]["id"] == json.loads(stable.out)["id"]
    assert reports[1]["drifted"] is False
    assert (
        len(json.loads(cli(setup.root, "monitor", "report", "churn:1", "-n", "1", "--json").out))
        == 1
    )

    table = cli(setup.root, "monitor", "run", "churn:1", "--data", setup.files["drifted"])
    assert table.code == 1
    assert "wasserstein" in table.out


def test_a_batch_lacking_a_feature_is_a_one_line_error(cli: Any, setup: Setup) -> None:
    with modelkeep.Repo(setup.root) as repo:
        before = len(repo.reports("churn:1"))
        with pytest.raises(ModelkeepError, match="lacks the model's input column"):
            repo.monitor("churn:1", setup.files["lacking"], target="label")
    res = cli(
        setup.root,
        "monitor",
        "run",
        "churn:1",
        "--data",
        setup.files["lacking"],
        "--target",
        "label",
    )
    message = res.one_line_error()
    assert res.code == 2
    assert "input column(s) b (it has a, c, label)" in message
    with modelkeep.Repo(setup.root) as repo:
        assert len(repo.reports("churn:1")) == before  # nothing stored


def test_a_version_without_a_profile_says_how_to_get_one(cli: Any, setup: Setup) -> None:
    with (
        modelkeep.Repo(setup.root) as repo,
        pytest.raises(ModelkeepError, match=r"data=\['FILE'\], target='COL'"),
    ):
        repo.monitor("bare:1", setup.files["stable"])
    message = cli(
        setup.root, "monitor", "run", "bare:1", "--data", setup.files["stable"]
    ).one_line_error()
    assert "bare:1 has no reference profile" in message
    assert "--data FILE --target COL" in message


@pytest.mark.parametrize("name", ["lacking", "extra"])
def test_a_version_without_signature_checks_the_profile_columns(
    cli: Any, setup: Setup, name: str
) -> None:
    res = cli(
        setup.root, "monitor", "run", "nosig:1", "--data", setup.files[name], "--target", "label"
    )
    if name == "lacking":
        assert "b" in res.one_line_error()
    else:  # the profile names the features: extra columns are not among them
        assert res.code == 0, res.err


def test_monitor_a_small_categorical_reference(setup: Setup) -> None:
    with modelkeep.Repo(setup.root) as repo:
        body = repo.monitor("plans:1", setup.files["plans_batch"], target="label")
        assert [f["test"] for f in body["drift"]["features"]] == ["ks", "chisquare"]
        assert body["drift"]["drifted"] is False
        assert repo.reports("plans:1")[0]["id"] == body["id"]


def test_reference_profile_matches_scipy_on_the_training_data(setup: Setup) -> None:
    """The stored reference keeps enough to reproduce scipy's KS on the raw columns."""
    train = pd.read_csv(setup.files["train"])
    drifted = pd.read_csv(setup.files["drifted"])
    with modelkeep.Repo(setup.root) as repo:
        reference = repo.profile("churn:1")
    assert reference is not None
    for name in FEATURES:
        summary = reference.features[name]
        assert isinstance(summary, NumericSummary)
        assert summary.count == len(train)
        assert summary.std == pytest.approx(float(train[name].std(ddof=0)), rel=1e-9)
        got = compare_summary(name, summary, NumericSummary.of(drifted[name]))
        truth = stats.wasserstein_distance(train[name], drifted[name]) / train[name].std(ddof=0)
        assert math.isclose(got.statistic, truth, rel_tol=0.05)


def test_monitor_sees_drift_far_from_zero(tmp_path: Path) -> None:
    """A model of years and kelvin temperatures: a batch 0.5 std warmer drifts in kelvin
    alone, a batch of the same climate does not (the check summarises batches on the
    reference's grids)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(21)

    def climate(n: int, warmer: float) -> pd.DataFrame:
        x = pd.DataFrame(
            {"year": np.round(rng.normal(2010, 10, n)), "kelvin": rng.normal(290 + warmer, 5, n)}
        )
        return x.assign(label=(x["kelvin"] + 0.2 * (x["year"] - 2010) > 290).astype(np.int64))

    files = {}
    for name, frame in {
        "train": climate(3000, 0.0),
        "same": climate(2000, 0.0),
        "warmer": climate(2000, 2.5),
    }.items():
        files[name] = tmp_path / f"{name}.csv"
        frame.to_csv(files[name], index=False)
    train = pd.read_csv(files["train"])
    model = LogisticRegression(max_iter=1000).fit(train[["year", "kelvin"]], train["label"])
    with modelkeep.Repo.init(tmp_path / "repo") as repo:
        repo.commit("climate", model, data=[files["train"]], target="label")
        same = repo.monitor("climate:1", files["same"], target="label", store=False)
        warmer = repo.monitor("climate:1", files["warmer"], target="label", store=False)
    assert same["drift"]["drifted_features"] == []
    assert warmer["drift"]["drifted_features"] == ["kelvin"]
    # In the model's order (stored profiles are JSON with sorted keys).
    assert [f["name"] for f in warmer["drift"]["features"]] == ["year", "kelvin"]
    by_name = {f["name"]: f for f in warmer["drift"]["features"]}
    assert by_name["kelvin"]["statistic"] == pytest.approx(0.5, abs=0.06)
    assert by_name["year"]["statistic"] < 0.1
