"""What a command a person types many times a day may import (``benchmarks/startup.py``
times them; these tests keep the reasons for its figures from coming undone)."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import modelkeep

CLI = Path(__file__).resolve().parents[1] / "src" / "modelkeep" / "cli"

# Imported by a read command or a ref move, each would cost it tens of milliseconds
# (SQLAlchemy alone 0.3 s): they belong to commits, loads, searches and migrations.
HEAVY = ("sqlalchemy", "alembic", "pyfastcdc", "modelkeep.formats", "numpy", "concurrent.futures")

_PROBE = """
import json, sys
from modelkeep.cli.app import main
sys.argv = ["modelkeep", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
found = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY_ROOTS})
print(json.dumps(found), file=sys.stderr)
"""


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("startup") / "repo"
    with modelkeep.Repo.init(root) as r:
        weights = root / "w.bin"
        for i in range(3):
            weights.write_bytes(b"weights %d" % i)
            r.commit("churn", weights, f"v{i}", metrics={"f1": i / 3})
        r.promote("churn:1", "production")
        r.promote("churn:2", "production")
    return root


@pytest.fixture
def repo(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "repo"))


def _loaded(root: Path, *args: str) -> set[str]:
    roots = sorted({h.split(".")[0] for h in HEAVY})
    probe = _PROBE.replace("{HEAVY_ROOTS}", repr(set(roots)))
    env = {**os.environ, "MODELKEEP_AUTHOR": "t <t@example.org>", "MODELKEEP_REPO": str(root)}
    proc = subprocess.run(
        [sys.executable, "-c", probe, *args], cwd=root, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "args",
    [
        ["log", "churn"],
        ["show", "churn"],
        ["models"],
        ["history", "churn@production"],
        ["alias", "set", "churn@production", "1"],
        ["promote", "churn:3", "production"],
        ["rollback", "churn@production"],
        ["--help"],
    ],
    ids=lambda a: " ".join(a),
)
def test_everyday_commands_import_nothing_heavy(repo: Path, args: list[str]) -> None:
    loaded = _loaded(repo, *args)
    heavy = sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert heavy == [], f"`modelkeep {' '.join(args)}` imported {heavy}"


def test_a_search_still_works_where_sqlalchemy_is_needed(repo: Path) -> None:
    # The one read that builds its statement with SQLAlchemy: it is imported then.
    assert "sqlalchemy" in _loaded(repo, "log", "churn", "--where", "metrics.f1 > 0.5")


@pytest.mark.parametrize("module", sorted(p.name for p in CLI.glob("*.py")))
def test_command_modules_keep_annotations_evaluated(module: str) -> None:
    """typer reads each command's parameters from its annotations: postponed ones
    (``from __future__ import annotations``) it must compile and evaluate again in every
    process, about 0.06 s for the whole app on each `modelkeep --help`."""
    tree = ast.parse((CLI / module).read_text())
    registers = any(
        isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "command"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        for d in node.decorator_list
    )
    postponed = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(a.name == "annotations" for a in node.names)
        for node in tree.body
    )
    assert not (registers and postponed), (
        f"cli/{module} registers commands with postponed annotations"
    )
