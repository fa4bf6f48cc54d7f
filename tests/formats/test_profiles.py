"""Reference profiles: mergeable exactly for counts (property tests), quantiles within
the sketch's accuracy, JSON round trip; stored with versions and datasets, kept by gc."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from blake3 import blake3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelkeep
from modelkeep.profiles import RELATIVE_ACCURACY, CategoricalSummary, NumericSummary, Profile

PROPS = settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Finite values of any magnitude a feature may reasonably take (squares stay finite),
# with NaNs and infinities (both count as missing).
numbers = st.one_of(
    st.floats(min_value=-1e100, max_value=1e100, allow_nan=False),
    st.just(math.nan),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, math.inf, -math.inf, 1e-13, 5e-324]),
)
categories = st.one_of(st.none(), st.sampled_from(["red", "green", "blue", "", "ünï", "1"]))


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
    doc.pop("sum", None)
    doc.pop("sum_sq", None)
    return doc


def _close(a: float, b: float, scale: float) -> bool:
    """Within 1e-9 relative, measured against the sum of magnitudes (rounding scale)."""
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9 * scale)


@PROPS
@given(frames())
def test_profiles_of_halves_merge_into_profile_of_whole(case: tuple[pd.DataFrame, int]) -> None:
    frame, cut = case
    whole = Profile.of(frame)
    merged = Profile.of(frame.iloc[:cut]).merge(Profile.of(frame.iloc[cut:]))
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
    whole = NumericSummary.of(left + right)
    assert _exact(a.merge(b)) == _exact(whole)
    assert _exact(b.merge(a)) == _exact(whole)
    merged = CategoricalSummary.of(pd.Series(parts[0], dtype=object))
    for part in parts[1:]:
        merged = merged.merge(CategoricalSummary.of(pd.Series(part, dtype=object)))
    everything = [v for part in parts for v in part]
    expected = CategoricalSummary.of(pd.Series(everything, dtype=object))
    assert merged.to_json() == expected.to_json()
    assert merged.count == sum(v is not None for v in everything)
    assert sum(merged.categories.values()) == merged.count


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
    doc = json.loads(json.dumps(profile.to_json()))
    back = Profile.from_json(doc)
    assert back == profile
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
