"""Shared helpers for the model-format tests.

CLI checks run the real typer app in-process (``cli``, from tests/conftest.py). A few
cheap cases also run the real ``modelkeep`` executable (``cli_proc``) to check exit
codes and stderr end to end.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest

import modelkeep
from inprocess_cli import Result

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
