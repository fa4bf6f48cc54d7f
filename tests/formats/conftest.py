"""Shared helpers for the model-format tests.

CLI checks run the real typer app in-process (``cli``): the test process has already
paid for importing skops (several seconds, it imports every scikit-learn estimator),
which a subprocess would pay again on every call. A few cheap cases also run the real
``modelkeep`` executable (``cli_proc``) to check exit codes and stderr end to end.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest

import modelkeep

if TYPE_CHECKING:
    from collections.abc import Iterator

HERE = Path(__file__).resolve().parent
# Classes and functions of torch_models.py are stored by import path: make it
# importable however pytest was started.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[modelkeep.Repo]:
    with modelkeep.Repo.init(tmp_path / "repo") as r:
        yield r


def _table(n: int = 60, seed: int = 0, columns: str = "abc") -> tuple[pd.DataFrame, pd.Series]:
    """Numeric features and a binary label that depends on them (both classes present)."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, len(columns))), columns=list(columns))
    y = pd.Series((x.iloc[:, 0] + 0.5 * x.iloc[:, 1] > 0).astype(np.int64), name="label")
    return x, y


def _snapshot(repo: modelkeep.Repo) -> dict[str, Any]:
    """What a failed command must leave unchanged: versions, events and stored objects."""
    return {
        "versions": {m.name: [v.rev for v in repo.log(m.name)] for m in repo.models()},
        "events": [e.id for e in repo.events()],
        "objects": set(repo.store.iter_ids()),
        "unreferenced": repo.fsck().unreferenced,
    }


@pytest.fixture(scope="session")
def table() -> Any:
    """``table(n, seed, columns)`` → (features DataFrame, int64 label Series)."""
    return _table


@pytest.fixture(scope="session")
def snapshot() -> Any:
    """``snapshot(repo)``: versions, events and objects, for before/after checks."""
    return _snapshot


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def one_line_error(self) -> str:
        """The message of a failed command, checked to be one `error: …` line on stderr."""
        assert self.code != 0, f"succeeded: {self.out}"
        assert "Traceback" not in self.err, self.err
        assert self.out == "", f"printed on stdout: {self.out!r}"
        message = self.err.strip()
        assert "\n" not in message, f"multi-line error:\n{self.err}"
        assert message.startswith("error: "), message
        return message


@pytest.fixture
def cli() -> Any:
    """``cli(root, *args)``: `modelkeep --repo ROOT ARGS` run in-process."""
    from typer.testing import CliRunner

    from modelkeep.cli.app import app

    def run(root: Path, *args: str | os.PathLike[str]) -> Result:
        runner = CliRunner(env={"NO_COLOR": "1", "COLUMNS": "200"})
        res = runner.invoke(app, ["--repo", str(root), *map(str, args)])
        if res.exception is not None and not isinstance(res.exception, SystemExit):
            raise res.exception
        return Result(res.exit_code, res.stdout, res.stderr)

    return run


@pytest.fixture
def cli_proc(tmp_path: Path) -> Any:
    """``cli_proc(root, *args)``: the real `modelkeep` executable in a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELKEEP_")}
    env.update(
        GIT_CEILING_DIRECTORIES=str(tmp_path),
        NO_COLOR="1",
        COLUMNS="200",
        PYTHONPATH=os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )

    def run(root: Path, *args: str | os.PathLike[str]) -> Result:
        proc = subprocess.run(
            ["modelkeep", "--repo", str(root), *map(str, args)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run
