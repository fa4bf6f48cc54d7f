"""`modelkeep monitor report REV --html FILE`: one self-contained page with plots.

A model with a reference profile gets batch reports (some drifted) across two
versions, with promotions and a rollback in between; the page is written through
the CLI and opened in a real browser (Debian's chromium, driven by Playwright) that
may load nothing but the file itself.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import modelkeep
from modelkeep.errors import MissingDependencyError, NotFoundError
from modelkeep.profiles import Profile

FEATURES = ["a", "b", "c", "d", "plan"]
CHROMIUM = "/usr/bin/chromium"
METRICS = {"accuracy", "f1", "precision", "recall", "auc"}
ROLLBACK_WHY = "<script>alert('rolled back')</script>"


def batch(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    """Rows of the training distribution; ``shift`` moves a, b and c (not d, not plan)
    far enough that each drifts: three of five features, so the dataset drifts."""
    x = pd.DataFrame(
        {
            "a": rng.normal(shift, 1.0, n),
            "b": rng.normal(2.0 + shift, 1.5, n),
            "c": rng.normal(-1.0 - shift, 1.0, n),
            "d": rng.uniform(0.0, 10.0, n),
            "plan": rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2]),
        }
    )
    score = x["a"] + 0.5 * x["b"] - 0.3 * x["c"] + (x["plan"] == "pro") + rng.normal(0, 0.5, n)
    return x.assign(label=(score > 2.0).astype(np.int64))


def model(train: pd.DataFrame, c: float) -> object:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    return make_pipeline(
        make_column_transformer((OneHotEncoder(), ["plan"]), remainder="passthrough"),
        LogisticRegression(C=c, max_iter=500),
    ).fit(train[FEATURES], train["label"])


@dataclass(frozen=True)
class Setup:
    root: Path
    files: dict[str, Path]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    """churn:1 and churn:2 (both with the training data's profile); production went
    1 → 2 and was rolled back to 1. Reports, oldest first: 1 stable, 1 drifted, 2
    stable, 2 drifted, 1 drifted. ``fresh``: a model with a profile and no report."""
    base = tmp_path_factory.mktemp("html")
    rng = np.random.default_rng(7)
    frames = {
        "train": batch(rng, 2000),
        "stable": batch(rng, 1500),
        "drifted": batch(rng, 1500, shift=1.0),
    }
    files = {}
    for name, frame in frames.items():
        files[name] = base / f"{name}.csv"
        frame.to_csv(files[name], index=False)
    train = frames["train"]
    root = base / "repo"
    with modelkeep.Repo.init(root) as repo:
        for c in (1.0, 0.1):
            repo.commit(
                "churn",
                model(train, c),
                f"C={c}",
                data=[files["train"]],
                target="label",
                input_example=train[FEATURES].head(),
            )
        repo.commit(
            "fresh",
            model(train, 1.0),
            data=[files["train"]],
            target="label",
            input_example=train[FEATURES].head(),
        )
        repo.promote("churn:1", "production")
        repo.monitor("churn@production", files["stable"], target="label")
        repo.monitor("churn@production", files["drifted"], target="label")
        repo.promote("churn:2", "production")
        repo.monitor("churn@production", files["stable"], target="label")
        repo.monitor("churn@production", files["drifted"], target="label")
        repo.rollback("churn@production", message=ROLLBACK_WHY)
        repo.monitor("churn@production", files["drifted"], target="label")
    return Setup(root, files)


@pytest.fixture(scope="module")
def page(cli: Any, setup: Setup, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("page") / "report.html"
    res = cli(setup.root, "monitor", "report", "churn@production", "--html", out)
    assert res.code == 0, res.err
    assert res.out.strip() == str(out)
    return out


# -- the report's data -------------------------------------------------------------------


def test_a_batch_report_stores_the_batch_profile(setup: Setup) -> None:
    frame = pd.read_csv(setup.files["drifted"])
    with modelkeep.Repo(setup.root) as repo:
        body = repo.monitor("churn:2", setup.files["drifted"], target="label", store=False)
        stored = repo.reports("churn:1", 1)[0]
    assert stored["source"] == str(setup.files["drifted"])
    for report in (body, stored):
        profile = Profile.from_json(report["profile"])
        assert profile.rows == len(frame)
        assert list(profile.features) == FEATURES
        assert profile.features["a"].count == len(frame)
        assert profile.features["plan"].categories == frame["plan"].value_counts().to_dict()
        assert profile.predictions is not None
        assert profile.predictions.count == len(frame)
    # What is stored is what the check computed (the same batch, the same version).
    expected = Profile.of(frame[FEATURES]).features["d"].to_json()
    assert stored["profile"]["features"]["d"] == expected


def test_reports_of_a_model_span_its_versions_newest_first(setup: Setup) -> None:
    with modelkeep.Repo(setup.root) as repo:
        series = repo.model_reports("churn")
        assert [r["number"] for r in series] == [1, 2, 2, 1, 1]
        assert [r["drifted"] for r in series] == [True, True, False, True, False]
        assert [r["at"] for r in series] == sorted((r["at"] for r in series), reverse=True)
        # The profile is left out unless asked for; the rest of the body is there.
        assert all("profile" not in r and "share" in r["drift"] for r in series)
        full = repo.model_reports("churn", 2, profiles=True)
        assert [r["id"] for r in full] == [r["id"] for r in series[:2]]
        assert all(Profile.from_json(r["profile"]).rows == 1500 for r in full)
        # since: only reports at or after a time.
        cut = datetime.fromisoformat(series[2]["at"])
        assert [r["id"] for r in repo.model_reports("churn", since=cut)] == [
            r["id"] for r in series[:3]
        ]
        assert repo.model_reports("churn", since=datetime.now(UTC)) == []
        assert repo.model_reports("fresh") == []
        with pytest.raises(NotFoundError, match="nope"):
            repo.model_reports("nope")


# -- the page, as text -----------------------------------------------------------------------


def test_the_page_is_self_contained_and_escaped(page: Path) -> None:
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>")
    # Nothing to fetch: no scripts, no links, no external sources (SVG namespaces aside).
    lowered = html.lower()
    for needle in ("<script", "<link", "src=", "@import", "url(http"):
        assert needle not in lowered, needle
    # The rollback's message is shown as text, not run.
    assert "&lt;script&gt;alert(" in html
    # Small: a few hundred KB would hold 20 features; this page has 5 and a prediction.
    assert len(html.encode()) < 250_000, len(html.encode())


def test_the_page_replaces_an_existing_file_and_leaves_no_temp(
    cli: Any, setup: Setup, tmp_path: Path
) -> None:
    out = tmp_path / "r.html"
    out.write_text("old")
    res = cli(setup.root, "monitor", "report", "churn:2", "--html", out, "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out) == {"html": str(out)}
    assert os.listdir(tmp_path) == ["r.html"]
    html = out.read_text()
    assert "<title>churn monitoring — churn:2</title>" in html


def test_no_reports_yet_is_a_one_line_error(cli: Any, setup: Setup, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    res = cli(setup.root, "monitor", "report", "fresh", "--html", out)
    message = res.one_line_error()
    assert "fresh has no monitoring reports yet" in message
    assert "modelkeep monitor run fresh --data FILE" in message
    assert res.code == 3
    assert not out.exists()
    assert os.listdir(tmp_path) == []


def test_a_missing_output_folder_is_a_one_line_error(
    cli: Any, setup: Setup, tmp_path: Path
) -> None:
    res = cli(setup.root, "monitor", "report", "churn:1", "--html", tmp_path / "no" / "r.html")
    message = res.one_line_error()
    assert str(tmp_path / "no") in message
    assert "does not exist" in message
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("library", ["matplotlib", "jinja2"])
def test_missing_libraries_name_the_extra(
    cli: Any, setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, library: str
) -> None:
    # A None entry in sys.modules makes `import library` raise ImportError, as if it
    # were not installed.
    for name in list(sys.modules):
        if name == library or name.startswith(f"{library}."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, library, None)
    with modelkeep.Repo(setup.root) as repo, pytest.raises(MissingDependencyError) as info:
        repo.report_html("churn@production")
    assert library in str(info.value)
    assert "pip install 'modelkeep[report]'" in str(info.value)
    out = tmp_path / "r.html"
    message = cli(setup.root, "monitor", "report", "churn:1", "--html", out).one_line_error()
    assert "pip install 'modelkeep[report]'" in message
    assert not out.exists()


# -- the page, in a browser ------------------------------------------------------------------


@pytest.mark.browser
def test_the_page_in_a_browser(setup: Setup, page: Path) -> None:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: apt-get install chromium"
    with modelkeep.Repo(setup.root) as repo:
        latest = repo.reports("churn@production", 1)[0]["drift"]
    drifting = {f["name"] for f in latest["features"] if f["drifted"]}
    assert {"a", "b", "c"} <= drifting
    assert not {"d", "plan"} & drifting
    if latest["predictions"]["drifted"]:
        drifting.add("prediction")

    url = page.as_uri()
    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            tab.on("request", lambda r: requests.append(r.url))
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.goto(url, wait_until="load")

            assert tab.title() == "churn monitoring — churn:1"
            header = tab.locator("header").inner_text()
            assert "churn@production" in header
            assert "churn@main" in header

            table = tab.locator("table.features tr.drifted")
            assert set(table.evaluate_all("rs => rs.map(r => r.dataset.feature)")) == drifting
            assert tab.locator(".verdict.drifted").is_visible()
            marked = tab.locator("figure.plot.drifted figcaption").all_inner_texts()
            assert {t.split(" — ")[0] for t in marked} == drifting

            # Every plot is a visible SVG with room on the page.
            plots = tab.locator("figure.plot")
            keys = plots.evaluate_all("fs => fs.map(f => f.dataset.plot)")
            assert {k for k in keys if k.startswith("distribution:")} == {
                f"distribution:{n}" for n in [*FEATURES, "prediction"]
            }
            assert {k for k in keys if k.startswith("metric:")} == {f"metric:{m}" for m in METRICS}
            assert "drift" in keys
            for i in range(plots.count()):
                svg = plots.nth(i).locator("svg")
                assert svg.count() == 1, keys[i]
                svg.scroll_into_view_if_needed()
                assert svg.is_visible(), keys[i]
                box = svg.bounding_box()
                assert box is not None
                assert box["width"] > 50, (keys[i], box)
                assert box["height"] > 50, (keys[i], box)

            text = tab.locator("body").inner_text()
            for name in FEATURES:
                assert name in tab.locator("#distributions").inner_text()
                assert tab.locator(f'table.features tr[data-feature="{name}"]').count() == 1
            # The alias moves: listed, and drawn on the drift plot.
            assert "rollback" in tab.locator("table.moves").inner_text()
            assert ROLLBACK_WHY in text  # shown as text, never run
            drift_svg = tab.locator('figure[data-plot="drift"] svg').inner_html()
            assert "rollback @production → 1" in drift_svg
            assert "promote @production → 2" in drift_svg
        finally:
            browser.close()

    assert errors == []
    assert requests == [url]
