"""Repositories with versions of "churn" and real servers of ``churn@production``.

A server is the app of ``modelkeep.serve.run.prepare`` run by a real ``uvicorn.Server``
on 127.0.0.1 (a free port) in a background thread of the test process: the test process
has already paid for importing scikit-learn and skops, and the tests can move the alias
through the Python API while the server follows it.

Repositories and servers that tests only read are module-scoped; tests that move the
alias or start rollouts take fresh ones from ``fresh_churn``.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression, SGDClassifier

import modelkeep
from modelkeep.serve.run import prepare

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from fastapi import FastAPI

    from modelkeep.serve.follower import Follower

HERE = Path(__file__).resolve().parent
# flaky.FlakyModel is stored by import path: the server (in this process) must find it.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import flaky  # noqa: E402 - needs the path above

VERSION_HEADER = "X-Model-Version"
INTERVAL = 0.1  # the followers' poll interval in these tests
COLUMNS = ["tenure", "monthly_spend", "support_calls", "age"]


class _MessageOnly(logging.Filter):
    """Logs an error's type and message instead of its traceback.

    On Python 3.11 formatting a traceback parses source with ``ast``, and the AST
    constructor's recursion counter is shared between threads: a server thread logging a
    traceback while pytest builds a report in the main thread can fail either with
    "SystemError: AST constructor recursion depth mismatch" (pytest-dev/pytest#10763,
    python/cpython#106905). The server threads of these tests log without tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


@pytest.fixture(scope="session", autouse=True)
def _no_tracebacks_from_server_threads() -> Iterator[None]:
    loggers = [logging.getLogger(n) for n in ("uvicorn.error", "modelkeep.serve")]
    only = _MessageOnly()
    for logger in loggers:
        logger.addFilter(only)
    yield
    for logger in loggers:
        logger.removeFilter(only)


@dataclass(frozen=True)
class Data:
    x: np.ndarray
    y: np.ndarray

    @property
    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.x, columns=COLUMNS)


@pytest.fixture(scope="session")
def data() -> Data:
    x, y = make_classification(
        n_samples=200, n_features=4, n_informative=3, n_redundant=0, random_state=0
    )
    return Data(x, y)


def wait_until(
    predicate: Callable[[], Any], timeout: float, step: float = 0.02, what: str = "condition"
) -> float:
    """Seconds until ``predicate()`` is truthy; fails the test after ``timeout``."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(step)


@pytest.fixture(scope="session")
def waiter() -> Callable[..., float]:
    """``waiter(predicate, timeout, what=...)``: see ``wait_until``."""
    return wait_until


@dataclass
class Served:
    """A running server: its follower, app, base URL and a client for the test thread."""

    follower: Follower
    app: FastAPI
    url: str
    http: httpx.Client

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def predict(self, rows: Any, key: str | None = None) -> httpx.Response:
        headers = {"X-Request-Key": key} if key is not None else None
        return self.http.post("/predict", json={"inputs": rows}, headers=headers)

    def version(self, key: str | None = None) -> str:
        """The version that answers a one-row /predict now (with ``key`` if given)."""
        r = self.predict([[0.1, 0.2, 0.3, 0.4]], key)
        assert r.status_code == 200, r.text
        return r.headers[VERSION_HEADER]

    def wait_serving(self, rev: str, timeout: float = 1.0) -> float:
        """Seconds until requests are answered by ``rev``; fails after ``timeout``."""
        return wait_until(lambda: self.version() == rev, timeout, what=f"serving {rev}")


@contextmanager
def serving(root: Path, rev: str = "churn@production", **options: Any) -> Iterator[Served]:
    """``prepare`` + a real uvicorn server on 127.0.0.1, stopped on exit."""
    follower, app = prepare(root, rev, interval=INTERVAL, **options)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
    )
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), 10, what="server start")
        assert thread.is_alive(), "the server thread died while starting"
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=10) as http:
            wait_until(lambda: http.get("/v2/health/ready").status_code == 200, 10, what="ready")
            yield Served(follower, app, url, http)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        follower.stop()
        assert not thread.is_alive(), "the server did not stop"


def build_churn(root: Path, data: Data) -> modelkeep.Repo:
    """churn:1..3 on NumPy arrays (they predict differently); churn@production → churn:1."""
    repo = modelkeep.Repo.init(root)
    models = [
        LogisticRegression(),
        SGDClassifier(random_state=0),
        LogisticRegression(C=0.001, fit_intercept=False),
    ]
    for i, model in enumerate(models, 1):
        model.fit(data.x, data.y)
        repo.commit("churn", model, f"version {i}", input_example=data.x[:5])
    repo.set_alias("churn@production", "churn:1")
    return repo


@contextmanager
def churn_served(repo: modelkeep.Repo, **options: Any) -> Iterator[Served]:
    """A server of churn@production (at churn:1), after which churn:2 is promoted: the
    server then serves churn:2 and keeps churn:1 loaded as the previous target.

    (Promoting after the start matters: a server started on an alias that has already
    moved loads only its target; see test_hot_swap.py.)"""
    with serving(repo.root, **options) as served:
        repo.promote("churn:2", "production")
        served.wait_serving("churn:2", timeout=5)
        wait_until(lambda: 1 in served.follower.snapshot.models, 5, what="churn:1 kept")
        yield served


@pytest.fixture(scope="module")
def server_options() -> dict[str, Any]:
    """Options of the module's ``server`` (override in a test module)."""
    return {}


@pytest.fixture(scope="module")
def churn_repo(tmp_path_factory: pytest.TempPathFactory, data: Data) -> Iterator[modelkeep.Repo]:
    """churn:1..3; churn@production moves 1 → 2 when ``server`` starts."""
    with build_churn(tmp_path_factory.mktemp("churn") / "repo", data) as repo:
        yield repo


@pytest.fixture(scope="module")
def server(churn_repo: modelkeep.Repo, server_options: dict[str, Any]) -> Iterator[Served]:
    with churn_served(churn_repo, **server_options) as served:
        yield served


@pytest.fixture
def fresh_churn(
    tmp_path: Path, data: Data
) -> Iterator[Callable[..., tuple[modelkeep.Repo, Served | None]]]:
    """``fresh_churn(serve=True, **options)`` → (a new churn repository, its server), with
    churn@production moved 1 → 2 as for ``server`` (``serve=False``: no server)."""
    with ExitStack() as stack:
        made = 0

        def make(serve: bool = True, **options: Any) -> tuple[modelkeep.Repo, Served | None]:
            nonlocal made
            made += 1
            repo = stack.enter_context(build_churn(tmp_path / f"repo{made}", data))
            if not serve:
                repo.promote("churn:2", "production")
                return repo, None
            return repo, stack.enter_context(churn_served(repo, **options))

        yield make


@pytest.fixture(scope="module")
def tabular_repo(tmp_path_factory: pytest.TempPathFactory, data: Data) -> Iterator[modelkeep.Repo]:
    """churn:1 fitted on a DataFrame with named columns (a tabular signature)."""
    with modelkeep.Repo.init(tmp_path_factory.mktemp("tabular") / "repo") as repo:
        model = LogisticRegression().fit(data.frame, data.y)
        repo.commit("churn", model, "on a frame", input_example=data.frame[:5])
        repo.set_alias("churn@production", "churn:1")
        yield repo


@pytest.fixture(scope="module")
def tabular_server(tabular_repo: modelkeep.Repo) -> Iterator[Served]:
    with serving(tabular_repo.root) as served:
        yield served


@pytest.fixture(scope="module")
def flaky_server(tmp_path_factory: pytest.TempPathFactory, data: Data) -> Iterator[Served]:
    """A server of a FlakyModel: it raises when a request's first value is flaky.BOOM."""
    with modelkeep.Repo.init(tmp_path_factory.mktemp("flaky") / "repo") as repo:
        repo.commit("churn", flaky.FlakyModel().fit(data.x, data.y), input_example=data.x[:5])
        repo.set_alias("churn@production", "churn:1")
        with serving(repo.root) as served:
            yield served


@pytest.fixture(scope="session")
def serving_factory() -> Callable[..., Any]:
    """``with serving_factory(root, rev="churn@production", **options) as served``."""
    return serving
