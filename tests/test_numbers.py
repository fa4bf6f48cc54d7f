"""Numbers a user types are bounded and ASCII: refused in one line, exit 2, nothing stored.

Each of these printed a traceback, or stored something that broke a later command,
before numbers went through modelkeep.quantities.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import modelkeep
from modelkeep import quantities
from modelkeep.errors import RevisionSyntaxError, UsageError
from modelkeep.revision import Revision
from repo_state import snapshot

HUGE = "9" * 5000  # past int()'s 4,300-digit limit
ARABIC_THREE = "\u0663"  # int() and \d take it; a version number is ASCII


@pytest.fixture(scope="module")
def repo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("numbers")
    repo = modelkeep.Repo.init(root)
    model = root / "model.bin"
    for i in range(3):
        model.write_bytes(b"weights %d" % i)
        repo.commit("churn", model, f"v{i + 1}", metrics={"f1": 0.8 + i / 100})
    repo.promote("churn:2", "production")
    return root


BAD = [
    (["show", f"churn:{HUGE}"], "numbers above 2147483647"),
    (["show", "churn:99999999999"], "numbers above 2147483647"),
    (["show", f"churn@main~{HUGE}"], "numbers above 2147483647"),
    (["show", f"churn@main~1~{'9' * 12}"], "numbers above 2147483647"),
    (["show", f"churn:{ARABIC_THREE}"], "cannot parse revision"),
    (["show", "churn@main~\u0662"], "cannot parse revision"),
    (["checkout", f"churn:{HUGE}", "out"], "numbers above"),
    (["tag", f"churn:{HUGE}", "v"], "numbers above"),
    (["rollback", "churn@production", "--to", f"churn:{HUGE}"], "numbers above"),
    (["promote", f"churn:{HUGE}", "production"], "numbers above"),
    (["log", "churn", "-n", HUGE], "-n:"),
    (["log", "churn", "-n", "0"], "-n: '0' is out of range"),
    (["log", "churn", "-n", ARABIC_THREE], "not a whole number"),
    (["log", "churn", "-n", "1_000"], "not a whole number"),
    (["events", "-n", "-1"], "not a whole number"),
    (["events", "-n", "99999999999"], "out of range"),
    (["monitor", "report", "churn:1", "-n", HUGE], "-n:"),
    (["monitor", "unschedule", HUGE], "ID:"),
    (["monitor", "daemon", "--once", "--poll", "inf"], "--poll"),
    (["monitor", "daemon", "--once", "--poll", "1e999"], "--poll"),
    (
        ["deploy", "churn", "--strategy", "canary", "--candidate", "churn:3", "--percent", "nan"],
        "--percent",
    ),
    (
        ["deploy", "churn", "--strategy", "canary", "--candidate", "churn:3", "--percent", "0"],
        "out of range",
    ),
    (
        ["deploy", "churn", "--strategy", "canary", "--candidate", "churn:3", "--percent", "101"],
        "out of range",
    ),
    (
        ["deploy", "churn", "--strategy", "canary", "--candidate", "churn:3", "--percent", HUGE],
        "--percent",
    ),
    (
        [
            "deploy",
            "churn",
            "--strategy",
            "canary",
            "--candidate",
            "churn:3",
            "--steps",
            "10,50,1e400",
            "--interval",
            "1m",
        ],
        "steps",
    ),
    (
        [
            "deploy",
            "churn",
            "--strategy",
            "canary",
            "--candidate",
            "churn:3",
            "--steps",
            "10,\u0665\u0660",
            "--interval",
            "1m",
        ],
        "steps",
    ),
    (
        [
            "deploy",
            "churn",
            "--strategy",
            "canary",
            "--candidate",
            "churn:3",
            "--steps",
            "10,50",
            "--interval",
            "99999999999d",
        ],
        "out of range; use",
    ),
    (["commit", "churn", "model.bin", "--metric", f"a={'9' * 4000}"], "not a finite number"),
    (["commit", "churn", "model.bin", "--metric", f"a={HUGE}"], "not a finite number"),
    (["commit", "churn", "model.bin", "--metric", "a=NaN"], "not a finite number"),
    (["commit", "churn", "model.bin", "--metric", "a=1e999"], "not a finite number"),
]


@pytest.mark.parametrize(("args", "fragment"), BAD, ids=[" ".join(a)[:50] for a, _ in BAD])
def test_bad_numbers_are_one_line_errors_that_change_nothing(
    cli: Any, repo_root: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], fragment: str
) -> None:
    monkeypatch.chdir(repo_root)
    before = snapshot(repo_root)
    res = cli(repo_root, *args)
    message = res.one_line_error()
    assert res.code == 2, message
    assert fragment in message
    assert len(message) < 400, "the input is quoted shortened, not whole"
    assert snapshot(repo_root) == before


def test_usage_errors_from_the_parser_are_one_line_too(cli: Any, repo_root: Path) -> None:
    for args in (["log"], ["nosuch"], ["log", "churn", "--bogus"], ["monitor"]):
        res = cli(repo_root, *args)
        assert res.code == 2
        assert "--help" in res.one_line_error()


@pytest.mark.parametrize(
    "text",
    [f"churn:{HUGE}", f"churn@main~{HUGE}", "churn:\u0663", "churn:1" + "0" * 10, "x" * 5000],
)
def test_the_python_api_refuses_the_same_revisions(text: str) -> None:
    with pytest.raises(RevisionSyntaxError) as info:
        Revision.parse(text)
    assert len(str(info.value)) < 300


def test_the_largest_number_still_parses() -> None:
    assert Revision.parse("churn:2147483647").number == 2147483647
    assert Revision.parse("churn@main~2147483647").ancestry == 2147483647


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (
            lambda r: r.deploy(
                "churn", strategy="canary", candidate="churn:3", percent=float("nan")
            ),
            "percent",
        ),
        (
            lambda r: r.deploy(
                "churn",
                strategy="canary",
                candidate="churn:3",
                steps=[10, float("inf")],
                interval=60,
            ),
            "steps",
        ),
        (
            lambda r: r.deploy(
                "churn", strategy="canary", candidate="churn:3", steps=[10, 50], interval=1e30
            ),
            "interval",
        ),
        (lambda r: r.commit("churn", "model.bin", "x", metrics={"a": 10**5000}), "finite"),
    ],
)
def test_the_python_api_bounds_the_same_numbers(
    repo_root: Path, monkeypatch: pytest.MonkeyPatch, call: Any, fragment: str
) -> None:
    monkeypatch.chdir(repo_root)
    repo = modelkeep.Repo(repo_root)
    before = snapshot(repo)
    with pytest.raises(UsageError, match=fragment):
        call(repo)
    assert snapshot(repo) == before


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("12", 12),
        (" 7 ", 7),
        ("0", 0),
        ("-1", None),
        ("+1", None),
        ("1.0", None),
        ("\u0661", None),
        ("1_0", None),
        ("", None),
        (HUGE, None),
        (True, None),
        (2**31, None),
    ],
)
def test_whole_numbers_are_ascii_digits_in_range(value: Any, ok: int | None) -> None:
    if ok is None:
        with pytest.raises(UsageError):
            quantities.whole(value, "n")
    else:
        assert quantities.whole(value, "n") == ok


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1.5", 1.5),
        ("366d", 366 * 86400.0),
        ("367d", None),
        ("99999999999d", None),
        ("\u0661h", None),
        ("-1s", None),
        ("1w", None),
        (float("inf"), None),
        (float("nan"), None),
    ],
)
def test_durations_are_bounded(value: Any, seconds: float | None) -> None:
    if seconds is None:
        with pytest.raises(UsageError):
            quantities.duration(value, "every")
    else:
        assert quantities.duration(value, "every") == seconds


@pytest.mark.local_engine  # writes an older release's row straight into the SQLite file
def test_a_schedule_stored_by_an_older_release_with_a_huge_period_still_lists(
    cli: Any, tmp_path: Path
) -> None:
    """Releases before periods were bounded stored `--every 99999999999d`, after which
    `monitor schedules` crashed until the row was removed."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    repo = modelkeep.Repo.init(tmp_path)
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(50, 2)), columns=["a", "b"])
    y = (x["a"] > 0).astype(int)
    train = tmp_path / "train.csv"
    x.assign(label=y).to_csv(train, index=False)
    repo.commit("churn", LogisticRegression().fit(x, y), "m", data=[str(train)], target="label")
    repo.schedule("churn:1", "1d", str(tmp_path / "{date}.csv"))
    with sqlite3.connect(tmp_path / ".modelkeep" / "registry.db") as db:
        db.execute("UPDATE monitor_schedules SET every_seconds = ?", (99999999999 * 86400,))
    res = cli(tmp_path, "monitor", "schedules", "--json")
    assert res.code == 0, res.err
    assert "9999-12-31" in res.out
    assert repo.schedules()[0].next_due == datetime.max.replace(tzinfo=UTC).replace(microsecond=0)
