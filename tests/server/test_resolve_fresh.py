"""The team server answers a resolve from memory only while that memory is current: an
alias moved, or a token revoked, by any process (this test's, another server's on the
same repository) is seen at the very next request; and an answer sent before routing
(``_KnownAnswers``) is refused to whoever the route would refuse."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import modelkeep
from modelkeep.server.app import TOKEN_SECONDS, create_app
from server_process import ServerProcess, _wait_until_up, free_port, start_server

PRODUCTION = "/api/v1/versions/churn@production"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fresh") / "repo"
    with modelkeep.Repo.init(root) as repo:
        x = np.random.default_rng(0).normal(size=(40, 3))
        y = (x[:, 0] > 0).astype(int)
        for name in ("churn", "fraud"):
            for c in (1.0, 0.1, 0.01):
                repo.commit(name, LogisticRegression(C=c).fit(x, y), f"{name} C={c}")
            repo.set_alias(f"{name}@production", f"{name}:1")
    return root


@pytest.fixture
def repo(root: Path) -> Iterator[modelkeep.Repo]:
    with modelkeep.Repo(root) as repo:
        yield repo


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[ServerProcess]:
    with start_server(root) as process:
        yield process


def resolved(client: httpx.Client, token: str, path: str = PRODUCTION) -> int:
    r = client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return int(r.json()["number"])


def test_an_alias_moved_by_another_process_is_answered_at_the_next_request(
    server: ServerProcess, repo: modelkeep.Repo
) -> None:
    _, token = repo.tokens.create("bob", "read")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for target in (2, 3, 1, 2, 1):
            for _ in range(3):  # the answer is known: kept, and sent before routing
                resolved(client, token)
            repo.set_alias("churn@production", f"churn:{target}")
            assert resolved(client, token) == target


def test_an_alias_moved_through_another_server_is_answered_by_this_one(
    server: ServerProcess, root: Path, repo: modelkeep.Repo
) -> None:
    _, token = repo.tokens.create("alice", "write")
    with (
        start_server(root) as other,
        httpx.Client(base_url=server.url, timeout=10) as here,
        httpx.Client(base_url=other.url, timeout=10) as there,
    ):
        for target in (3, 1):
            before = resolved(here, token)
            moved = there.put(
                "/api/v1/models/churn/aliases/production",
                json={"to": str(target), "expected": before},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert moved.status_code == 200, moved.text
            assert resolved(here, token) == target


def test_a_token_revoked_elsewhere_is_refused_at_the_next_request(
    server: ServerProcess, repo: modelkeep.Repo
) -> None:
    made, token = repo.tokens.create("dan", "read")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for _ in range(3):
            resolved(client, token)
        assert client.get("/api/v1/models", headers={"Authorization": f"Bearer {token}"}).is_success
        repo.tokens.revoke(made.id, "left")
        for path in (PRODUCTION, "/api/v1/models", "/api/v1/whoami"):
            r = client.get(path, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401, (path, r.text)
            assert r.json()["error"] == f"token {made.id} was revoked"


def test_a_known_answer_is_refused_to_whoever_the_route_refuses(
    server: ServerProcess, repo: modelkeep.Repo
) -> None:
    _, reader = repo.tokens.create("bob", "read")
    _, elsewhere = repo.tokens.create("eve", "read", "fraud*")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        resolved(client, reader)  # the answer is known now
        for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer x"}):
            r = client.get(PRODUCTION, headers=headers)
            assert r.status_code == 401, (headers, r.text)
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
        hidden = client.get(PRODUCTION, headers={"Authorization": f"Bearer {elsewhere}"})
        missing = client.get(
            "/api/v1/versions/nothing@production", headers={"Authorization": f"Bearer {elsewhere}"}
        )
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json() == missing.json()
        # Not this route: the same path with a suffix, or another method.
        auth = {"Authorization": f"Bearer {reader}"}
        assert client.get(PRODUCTION + "/files", headers=auth).is_success
        assert client.post(PRODUCTION, headers=auth).status_code == 405


def test_a_known_answer_is_the_routes_answer(server: ServerProcess, repo: modelkeep.Repo) -> None:
    _, token = repo.tokens.create("bob", "read")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        first = client.get(PRODUCTION, headers={"Authorization": f"Bearer {token}"})
        again = client.get(PRODUCTION, headers={"Authorization": f"Bearer {token}"})
    assert first.status_code == again.status_code == 200
    assert first.content == again.content
    assert first.headers["content-type"] == again.headers["content-type"] == "application/json"
    assert first.json() == repo.show("churn@production").to_dict()


@contextlib.contextmanager
def server_with_workers(root: Path, workers: int) -> Iterator[ServerProcess]:
    port = free_port()
    fd, log = tempfile.mkstemp(prefix="modelkeep-server-", suffix=".log")
    argv = [sys.executable, "-m", "modelkeep", "--repo", str(root), "server"]
    proc = subprocess.Popen(
        [*argv, "--port", str(port), "--workers", str(workers)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=fd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,  # its workers are in its group: stopped with it
    )
    os.close(fd)
    server = ServerProcess(f"http://127.0.0.1:{port}", root, port, proc, Path(log))
    try:
        _wait_until_up(server)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait(timeout=20)
            server.log.unlink(missing_ok=True)


def test_workers_each_answer_the_current_target(tmp_path: Path) -> None:
    """Its own repository, so that under MODELKEEP_TEST_ENGINE=pg the workers share a
    PostgreSQL registry (no change mark: every answer read)."""
    with modelkeep.Repo.init(tmp_path / "repo") as repo:
        x = np.random.default_rng(0).normal(size=(40, 3))
        for c in (1.0, 0.1, 0.01):
            repo.commit("churn", LogisticRegression(C=c).fit(x, x[:, 0] > 0), f"C={c}")
        repo.set_alias("churn@production", "churn:1")
        _, token = repo.tokens.create("carol", "write")
        with server_with_workers(repo.root, 2) as server:
            for target in (2, 1):
                repo.set_alias("churn@production", f"churn:{target}")
                # A new connection each time: the requests land on both workers.
                for _ in range(8):
                    with httpx.Client(base_url=server.url, timeout=10) as client:
                        assert resolved(client, token) == target
            with httpx.Client(base_url=server.url, timeout=10) as client:
                moved = client.put(
                    "/api/v1/models/churn/aliases/production",
                    json={"to": "3"},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert moved.status_code == 200, moved.text
            for _ in range(8):
                with httpx.Client(base_url=server.url, timeout=10) as client:
                    assert resolved(client, token) == 3


def test_without_a_change_mark_a_token_is_remembered_briefly() -> None:
    """A registry with no change mark (PostgreSQL; here one in memory): a token revoked
    through another process works here for at most TOKEN_SECONDS."""
    repo = modelkeep.Repo.memory()
    app = create_app(repo)
    assert app.state.tokens.seconds == TOKEN_SECONDS <= 5
    repo.close()


def test_a_known_answer_reads_the_change_mark_once(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kept answer and the remembered token are both checked against one read of
    the mark (on PostgreSQL each read is a round trip). The app runs in a real uvicorn
    server in this process, so that the mark can be counted."""
    import threading
    import time

    import uvicorn

    import modelkeep.server.app as app_module

    reads: list[object] = []
    real = app_module.mark_of

    class Counted:
        def __init__(self, mark: Any) -> None:
            self.mark = mark

        def __call__(self) -> object:
            reads.append(self.mark())
            return reads[-1]

        def close(self) -> None:
            self.mark.close()

    monkeypatch.setattr(app_module, "mark_of", lambda registry: Counted(real(registry)))
    with modelkeep.Repo(root) as repo:
        _, token = repo.tokens.create("mark", "read")
        config = uvicorn.Config(create_app(repo), host="127.0.0.1", port=0, log_config=None)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while not server.started:
                assert thread.is_alive(), "the server thread died"
                assert time.monotonic() < deadline, "no server start in 10 s"
                time.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                # Through the route: the first verifies the token (which notes its use,
                # a change), the second is read under a mark that then holds: kept.
                resolved(client, token)
                resolved(client, token)
                reads.clear()
                for _ in range(3):
                    resolved(client, token)
            assert len(reads) == 3
        finally:
            server.should_exit = True
            thread.join(timeout=10)


def test_an_alias_moved_by_hand_in_sql_is_answered_at_the_next_request(tmp_path: Path) -> None:
    """A change made behind modelkeep's back (an admin's UPDATE, on the registry's own
    database: SQLite here, PostgreSQL under MODELKEEP_TEST_ENGINE=pg-s3) is seen too."""
    from sqlalchemy import text

    with modelkeep.Repo.init(tmp_path / "repo") as repo:
        x = np.random.default_rng(0).normal(size=(40, 3))
        y = (x[:, 0] > 0).astype(int)
        for c in (1.0, 0.1):
            repo.commit("churn", LogisticRegression(C=c).fit(x, y), f"C={c}")
        repo.set_alias("churn@production", "churn:1")
        _, token = repo.tokens.create("bob", "read")
        with start_server(repo.root) as server, httpx.Client(base_url=server.url) as client:
            for target in (2, 1, 2):
                for _ in range(3):  # known: kept, and sent before routing
                    resolved(client, token)
                with repo.registry.engine.begin() as conn:
                    conn.execute(
                        text(
                            "UPDATE refs SET version_id = (SELECT versions.id FROM versions "
                            "JOIN models ON versions.model_id = models.id "
                            "WHERE models.name = 'churn' AND versions.number = :n) "
                            "WHERE name = 'production'"
                        ),
                        {"n": target},
                    )
                assert resolved(client, token) == target
