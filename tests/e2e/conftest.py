"""Helpers for end-to-end tests that drive the real `modelkeep` command in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import modelkeep

if TYPE_CHECKING:
    from collections.abc import Callable

AUTHOR = "Ada Tester <ada@example.com>"
TIMEOUT = 120


@dataclass(frozen=True)
class Run:
    """One finished `modelkeep` invocation."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def one_line_error(self) -> str:
        """The error message, after checking it is one line on stderr and nothing else."""
        assert self.code != 0, f"{self.args} succeeded: {self.out}"
        assert "Traceback" not in self.err, self.err
        assert self.out == "", f"{self.args} printed on stdout: {self.out!r}"
        message = self.err.strip()
        assert "\n" not in message, f"{self.args}: multi-line error:\n{self.err}"
        assert message.startswith("error: "), message
        return message


def _aws() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("AWS_")}


class Cli:
    """Runs `modelkeep ARGS` in ``cwd`` with a controlled environment."""

    def __init__(self, cwd: Path, ceiling: Path) -> None:
        self.cwd = cwd
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELKEEP_")}
        env.update(
            MODELKEEP_AUTHOR=AUTHOR,
            # Never let git find a repository above the test folders: `code` must
            # be null unless a test makes a git work tree itself.
            GIT_CEILING_DIRECTORIES=str(ceiling),
            GIT_CONFIG_GLOBAL=os.devnull,
            GIT_CONFIG_NOSYSTEM="1",
            NO_COLOR="1",
            COLUMNS="200",
            TMPDIR=str(ceiling),
        )
        self.env = env

    def __call__(
        self,
        *args: str | os.PathLike[str],
        code: int = 0,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Run:
        argv = tuple(str(a) for a in args)
        proc = subprocess.run(
            ["modelkeep", *argv],
            cwd=cwd or self.cwd,
            # S3 credentials as the session has them now (the emulator's fixture sets
            # them after this object was made).
            env={**_aws(), **self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        run = Run(argv, proc.returncode, proc.stdout, proc.stderr)
        assert run.code == code, (
            f"modelkeep {' '.join(argv)}: exit {run.code}, expected {code}\n"
            f"stdout:\n{run.out}\nstderr:\n{run.err}"
        )
        return run


@pytest.fixture(scope="module")
def e2e_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A module-wide folder; git will not look above it."""
    return tmp_path_factory.mktemp("e2e").resolve()


@pytest.fixture(scope="module")
def cli(e2e_base: Path) -> Cli:
    return Cli(e2e_base, e2e_base)


def _registry_state(root: Path) -> dict[str, Any]:
    """Everything the registry knows: models, versions, refs and events."""
    with modelkeep.Repo(root) as repo:
        infos = repo.models()
        return {
            "models": [m.to_dict() for m in infos],
            "versions": {m.name: [v.to_dict() for v in repo.log(m.name)] for m in infos},
            "refs": {m.name: [r.to_dict() for r in repo.refs(m.name)] for m in infos},
            "events": [e.to_dict() for e in repo.events()],
        }


def _store_ids(root: Path) -> set[str]:
    with modelkeep.Repo(root) as repo:
        return {oid.hex for oid in repo.store.iter_ids()}


@pytest.fixture(scope="session")
def registry_state() -> Callable[[Path], dict[str, Any]]:
    """``registry_state(root)``: models, versions, refs and events, for before/after checks."""
    return _registry_state


@pytest.fixture(scope="session")
def store_ids() -> Callable[[Path], set[str]]:
    """``store_ids(root)``: the ids of every object in the store."""
    return _store_ids
