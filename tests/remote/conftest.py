"""Fixtures of the remote tests: a team server per test, clients of it, and no token
from this machine's environment or credentials file unless a test gives one."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# The helpers here are imported by name from the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from remote_team import Team, start_team

import modelkeep


@pytest.fixture(autouse=True)
def _own_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELKEEP_TOKEN", raising=False)
    monkeypatch.setenv("MODELKEEP_CREDENTIALS", str(tmp_path / "credentials.json"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Team]]:
    """``start(setup=None, name="server")``: a team server over a new repository in
    which ``setup(repo)`` committed first; stopped after the test."""
    teams: list[Team] = []

    def make(setup: Callable[[modelkeep.Repo], None] | None = None, name: str = "server") -> Team:
        team = start_team(tmp_path / name, setup)
        teams.append(team)
        return team

    yield make
    for team in teams:
        team.close()


@pytest.fixture
def team(start: Callable[..., Team]) -> Team:
    """A team server over an empty repository."""
    return start()


@pytest.fixture
def client(tmp_path: Path, team: Team) -> Iterator[Callable[[str], modelkeep.Repo]]:
    """``client(name)``: a new repository in tmp_path/name with the server as origin."""
    made: list[modelkeep.Repo] = []

    def make(name: str) -> modelkeep.Repo:
        repo = modelkeep.Repo.init(tmp_path / name)
        repo.remotes.add("origin", team.url)
        made.append(repo)
        return repo

    yield make
    for repo in made:
        repo.close()
