"""The fuzz harness: one small template repository, a fresh copy of it per example,
and a count of the examples each test ran.

The counts are printed at the end of the session (``fuzz examples`` in the summary,
shown with ``-q`` too), written to ``fuzz-examples.json`` in pytest's base temporary
folder, and kept as the property ``hypothesis_examples`` of each test (--junitxml).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import sys
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest

import modelkeep

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # fuzzkit.py, however pytest was started
    sys.path.insert(0, str(HERE))

from fuzzkit import EXAMPLES, Example, state  # noqa: E402 - needs the path above

from inprocess_cli import Result  # noqa: E402 - tests/ is on the path (tests/conftest.py)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

FEATURES = ["a", "b", "c"]
COUNTS: dict[str, int] = defaultdict(int)
_REPORT: list[Path] = []


def training(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(rows, 3)), columns=FEATURES)
    return x.assign(label=(x["a"] + 0.5 * x["b"] > 0).astype(np.int64))


@pytest.fixture(scope="session")
def cli() -> Callable[..., Result]:
    """tests/conftest.py's in-process ``cli``, with the click command built once.

    typer's test runner rebuilds the command from every function's signature at each
    call (about 0.1 s of the 0.15 s a call took here); the rest is the same: typer's
    isolation (stdout strict UTF-8, stderr with backslashreplace, as a real process
    has), the same environment, and an exception other than the exit re-raised.
    """
    from typer.main import get_command
    from typer.testing import CliRunner

    from modelkeep.cli.app import app

    command = get_command(app)
    runner = CliRunner(env={"NO_COLOR": "1", "COLUMNS": "200"})

    def run(root: Path, *args: str | os.PathLike[str]) -> Result:
        with runner.isolation() as (stdout, stderr, _):
            try:
                command.main(
                    args=["--repo", str(root), *map(str, args)],
                    prog_name=command.name or "root",
                )
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
            out, err = stdout.getvalue(), stderr.getvalue()
        return Result(code, _text(out), _text(err))

    return run


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").replace("\r\n", "\n")


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A repository with something for every revision form, and its snapshot:

    churn (plain files): churn:1..3 on main, churn:4 on exp (from churn:1);
    @production churn:1 → churn:2 (so ^ has a move to step back through),
    @staging churn:3, tag v1 churn:1.
    clf (scikit-learn, classification, reference profile): clf:1 @production.
    clf-train: a dataset.
    """
    from sklearn.linear_model import LogisticRegression

    base = tmp_path_factory.mktemp("fuzz-template")
    _REPORT.append(tmp_path_factory.getbasetemp() / "fuzz-examples.json")
    root = base / "repo"
    blob = base / "weights.bin"
    train = training()
    train.to_csv(base / "train.csv", index=False)
    with modelkeep.Repo.init(root) as repo:
        for i in range(3):
            blob.write_bytes(bytes([i]) * 64)
            repo.commit("churn", blob, f"churn {i + 1}", metrics={"f1": 0.5 + i / 10})
        repo.branch("churn", "exp", "churn:1")
        blob.write_bytes(b"exp" * 20)
        repo.commit("churn", blob, "on exp", branch="exp")
        repo.promote("churn:1", "production")
        repo.promote("churn:2", "production")
        repo.promote("churn:3", "staging")
        repo.tag("churn:1", "v1")
        model = LogisticRegression().fit(train[FEATURES], train["label"])
        repo.commit(
            "clf",
            model,
            "baseline",
            data=[base / "train.csv"],
            target="label",
            input_example=train[FEATURES].head(),
            metrics={"f1": 0.9, "accuracy": 0.9},
        )
        repo.promote("clf:1", "production")
        repo.data_add("clf-train", base / "train.csv")
    return root, state(root)


@pytest.fixture
def fresh(
    template: tuple[Path, dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Callable[[], Example]]:
    """``fresh()``: a new copy of the template for one example (the previous example's
    copy is removed: a few hundred copies would otherwise pile up)."""
    root, before = template
    base = tmp_path_factory.mktemp("fuzz")
    serial = itertools.count()
    made: list[Path] = []
    ran = 0

    def new() -> Example:
        nonlocal ran
        ran += 1
        for old in made:
            shutil.rmtree(old, ignore_errors=True)
        made.clear()
        folder = base / str(next(serial))
        shutil.copytree(root, folder / "repo")
        (folder / "scratch").mkdir()
        made.append(folder)
        return Example(folder / "repo", folder / "scratch", before)

    yield new
    if getattr(request.function, "is_hypothesis_test", False):  # not test_findings.py
        COUNTS[request.node.nodeid] += ran
        # As record_property does, without its warning under junit_family xunit2.
        request.node.user_properties.append(("hypothesis_examples", ran))
    # On a failure hypothesis's pytest plugin would write an @example patch into
    # .hypothesis/ of the working tree, importing libcst to do so, whose import warns
    # (mypy_extensions.TypedDict is deprecated): under filterwarnings=error that turned
    # every failure into an INTERNALERROR hiding it. The failing example is printed
    # anyway ("Falsifying example").
    with contextlib.suppress(AttributeError):
        del request.node._hypothesis_failing_examples


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not COUNTS:
        return
    targets: dict[str, int] = defaultdict(int)
    for nodeid, n in COUNTS.items():
        targets[Path(nodeid.split("::")[0]).stem.removeprefix("test_")] += n
    doc = {"examples_per_test": EXAMPLES, "targets": dict(targets), "tests": dict(COUNTS)}
    terminalreporter.section("fuzz examples")
    for target, n in sorted(targets.items()):
        terminalreporter.line(f"{target}: {n}")
    for nodeid, n in sorted(COUNTS.items()):
        terminalreporter.line(f"  {nodeid}: {n}")
    terminalreporter.line(f"total: {sum(COUNTS.values())} (MODELKEEP_FUZZ_EXAMPLES={EXAMPLES})")
    if _REPORT:
        _REPORT[0].write_text(json.dumps(doc, indent=2) + "\n")
        terminalreporter.line(f"written to {_REPORT[0]}")
