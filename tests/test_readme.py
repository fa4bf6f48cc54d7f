"""The README's CLI session and Python snippet run as written."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(after_heading: str, lang: str) -> str:
    text = README.read_text()
    start = text.index(after_heading)
    match = re.search(rf"```{lang}\n(.*?)```", text[start:], re.S)
    assert match, f"no {lang} block after {after_heading!r}"
    return match.group(1)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder with what the README's examples start from: a model file and data."""
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    sio.dump(model, tmp_path / "model.skops")
    (tmp_path / "train.csv").write_text("x,label\n0,0\n1,0\n2,1\n3,1\n")
    return tmp_path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELKEEP_")}
    env["MODELKEEP_AUTHOR"] = "readme <readme@example.org>"
    return env


def test_cli_session_runs_as_written(workdir: Path) -> None:
    lines = [ln.split("#")[0].strip() for ln in _block("### A session", "sh").splitlines()]
    for line in filter(None, lines):
        argv = shlex.split(line)
        assert argv[0] == "modelkeep"
        proc = subprocess.run(
            argv, cwd=workdir, env=_env(), capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, f"{line!r} failed: {proc.stderr}"
    history = subprocess.run(
        ["modelkeep", "history", "churn@production", "--json"],
        cwd=workdir,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"action": "rollback"' in history
    show = subprocess.run(
        ["modelkeep", "show", "churn@production", "--json"],
        cwd=workdir,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"number": 1' in show  # the comment in the README says: back to churn:1


def _run_snippet(heading: str, cwd: Path, timeout: int) -> str:
    """The README's Python block under ``heading``, run as written; its stdout."""
    proc = subprocess.run(
        [sys.executable, "-c", _block(heading, "python")],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_python_snippet_runs_as_written(workdir: Path) -> None:
    stdout = _run_snippet("## Python API", workdir, timeout=120)
    # The snippet prints the alias target after the rollback: version 1.
    assert "\n1\n" in stdout


def test_monitoring_snippet_runs_as_written(tmp_path: Path) -> None:
    stdout = _run_snippet("### Monitoring that acts", tmp_path, timeout=300)
    assert "['a'] True" in stdout  # the comment in the README says so
    page = (tmp_path / "report.html").read_text()
    assert "<svg" in page
    assert "churn" in page
