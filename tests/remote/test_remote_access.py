"""Who may push and pull: token scopes and model patterns as a client meets them, the
token's lookup (MODELKEEP_TOKEN, then the credentials file, which must be mode 600),
and `modelkeep login`, which writes that file from stdin."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from remote_team import Cli, Client, Team, snapshot, write_random

import modelkeep
from modelkeep.errors import NotFoundError, PermissionDeniedError, UnreachableError
from server_process import free_port


def _three_models(tmp_path: Path) -> Callable[[modelkeep.Repo], None]:
    def setup(repo: modelkeep.Repo) -> None:
        for i, name in enumerate(("churn", "churn-eu", "fraud")):
            repo.commit(name, write_random(tmp_path / name, 400_000, seed=80 + i), name)

    return setup


def test_a_read_token_cannot_push_and_nothing_reaches_the_server(
    team: Team, client: Client, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = client("a")
    a.commit("churn", write_random(tmp_path / "m", 2 << 20, seed=1), "one")
    with team.repo() as server:
        before = snapshot(server)
    monkeypatch.setenv("MODELKEEP_TOKEN", team.tokens["reader"])
    refused = cli(a.root, "push", "churn")
    assert refused.code == 9
    assert "write" in refused.one_line_error()
    with pytest.raises(PermissionDeniedError):
        a.remotes.push("churn")
    with team.repo() as server:
        # Refused at the first question about objects: not one was uploaded.
        assert snapshot(server) == before
    assert a.remotes.mapping("origin", "churn") == {}


def test_a_token_for_some_models_clones_those_and_cannot_learn_of_others(
    start: Callable[..., Team], tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    team = start(_three_models(tmp_path))
    carol = team.tokens["carol"]  # write on churn*
    b, cloned = modelkeep.Repo.clone(team.url, tmp_path / "b", token=carol)
    try:
        assert sorted(m.name for m in b.models()) == ["churn", "churn-eu"]
        assert sorted({m.model for m in cloned.versions}) == ["churn", "churn-eu"]
    finally:
        b.close()

    a = modelkeep.Repo.init(tmp_path / "a")
    try:
        a.remotes.add("origin", team.url)
        a.commit("fraud", write_random(tmp_path / "f", 300_000, seed=90), "mine")
        a.commit("fraudulent", write_random(tmp_path / "g", 300_000, seed=91), "mine")
        with team.repo() as server:
            before = snapshot(server)
        # `fraud` exists there, `fraudulent` does not: the same answer for both.
        errors: list[str] = []
        for name in ("fraud", "fraudulent"):
            with pytest.raises(NotFoundError) as caught:
                a.remotes.push(name, token=carol)
            errors.append(str(caught.value))
        assert errors[0] == errors[1]
        assert "fraud" not in errors[0]
        monkeypatch.setenv("MODELKEEP_TOKEN", carol)
        refused = cli(a.root, "push", "fraud")
        assert refused.code == 3
        assert "fraud" not in refused.one_line_error()
        # Fetching it by name tells nothing either.
        with pytest.raises(NotFoundError) as caught:
            a.remotes.fetch("fraud", token=carol)
        assert "fraud" not in str(caught.value)
        with team.repo() as server:
            assert snapshot(server) == before
    finally:
        a.close()


def test_without_a_token_the_error_says_how_to_give_one(
    team: Team, client: Client, cli: Cli, tmp_path: Path
) -> None:
    a = client("a")
    a.commit("churn", write_random(tmp_path / "m", 300_000, seed=2), "one")
    refused = cli(a.root, "push", "churn")
    assert refused.code == 8
    message = refused.one_line_error()
    assert "MODELKEEP_TOKEN" in message
    assert "modelkeep login" in message
    cloned = cli(tmp_path, "clone", team.url, tmp_path / "b")
    assert cloned.code == 8
    assert "MODELKEEP_TOKEN" in cloned.one_line_error()


def test_a_credentials_file_others_may_read_is_refused(
    team: Team, client: Client, cli: Cli, tmp_path: Path
) -> None:
    a = client("a")
    a.commit("churn", write_random(tmp_path / "m", 300_000, seed=3), "one")
    file = Path(os.environ["MODELKEEP_CREDENTIALS"])
    file.write_text(json.dumps({team.url: team.tokens["alice"]}))
    file.chmod(0o644)
    refused = cli(a.root, "push", "churn")
    assert refused.code == 2
    message = refused.one_line_error()
    assert "chmod 600" in message
    assert str(file) in message
    with team.repo() as server:
        assert server.models() == []
    file.chmod(0o600)
    pushed = cli(a.root, "push", "churn")
    assert pushed.code == 0, pushed.err
    assert pushed.out.splitlines() == ["churn:1 (local) = churn:1 (origin)  new"]


def test_login_keeps_the_token_from_stdin_in_a_private_file_and_push_uses_it(
    team: Team, client: Client, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The default place: $XDG_CONFIG_HOME/modelkeep/credentials.json.
    monkeypatch.delenv("MODELKEEP_CREDENTIALS")
    config = Path(os.environ["XDG_CONFIG_HOME"])
    token = team.tokens["alice"]
    env = {k: v for k, v in os.environ.items() if k != "MODELKEEP_TOKEN"}
    login = subprocess.run(
        [sys.executable, "-m", "modelkeep", "login", team.url + "/"],
        input=token + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert login.returncode == 0, login.stderr
    assert token not in login.stdout + login.stderr
    file = config / "modelkeep" / "credentials.json"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert json.loads(file.read_text()) == {team.url: token}

    a = client("a")
    a.commit("churn", write_random(tmp_path / "m", 300_000, seed=4), "one")
    pushed = cli(a.root, "push", "churn")
    assert pushed.code == 0, pushed.err
    with team.repo() as server:
        assert [v.author for v in server.log("churn")] == [a.resolve("churn:1").author]
        pushes = [e for e in server.events("churn") if e.actor == "alice"]
        assert pushes, server.events("churn")


def test_an_unreachable_server_is_exit_7_in_one_line(
    client: Client, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = client("a")
    a.commit("churn", write_random(tmp_path / "m", 300_000, seed=5), "one")
    a.remotes.add("nowhere", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MODELKEEP_TOKEN", "mkt_x_y")
    refused = cli(a.root, "push", "churn", "--remote", "nowhere")
    assert refused.code == 7
    assert "cannot be reached" in refused.one_line_error()
    with pytest.raises(UnreachableError):
        a.remotes.fetch("churn", "nowhere")
