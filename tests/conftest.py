"""Fixtures for every test folder (a folder's own conftest may override them)."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
# inprocess_cli.py is imported by name from the folders below.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import inprocess_cli  # noqa: E402 - needs the path above

# Never ask a cloud's instance metadata service for credentials (169.254.169.254 is off
# this machine): a test without S3 credentials must fail on loopback, at once.
os.environ.setdefault("AWS_METADATA_ENDPOINT", "http://127.0.0.1:9")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def cli() -> Any:
    """``cli(root, *args)``: `modelkeep --repo ROOT ARGS` run in-process; the result
    has ``code``, ``out``, ``err`` and ``one_line_error()``."""
    return inprocess_cli.run


@pytest.fixture(scope="session")
def postgres() -> Any:
    """A real PostgreSQL server on 127.0.0.1 for the session (``services.Postgres``).
    Its data folder is not under pytest's own temporary folder: pytest makes that
    private to root (the server runs as ``postgres``) and prunes old ones, which
    another pytest session starting meanwhile would do under a running server."""
    import shutil
    import tempfile

    import services

    base = Path(tempfile.mkdtemp(prefix="modelkeep-pg-"))
    server = services.start_postgres(base)
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real S3 emulator (moto) on 127.0.0.1 for the session (``services.S3Server``);
    its credentials are set in the environment of this process and its children."""
    import os

    import services

    server = services.start_s3(tmp_path_factory.mktemp("moto") / "moto.log")
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    yield server
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


# The suite runs against one engine per session, chosen by MODELKEEP_TEST_ENGINE:
#   local  (default) SQLite + a local folder, the embedded default
#   pg     PostgreSQL + a local folder (a shared file system's setup)
#   pg-s3  PostgreSQL + an S3 bucket (the moto emulator)
# Tests make repositories with Repo.init(path) / `modelkeep init`; under pg and pg-s3,
# each such call without URLs of its own gets a fresh database and a fresh prefix in
# the session's bucket, so every test of the suite runs on the shared engines through
# this one fixture. (The in-memory engine is covered by the tests that use
# Repo.memory(): it cannot back a repository that a test reopens by its folder.)
ENGINE = os.environ.get("MODELKEEP_TEST_ENGINE", "local")
if ENGINE != "local":
    # gc on a shared store keeps unreferenced objects for an hour by default; the
    # suite's gc tests expect the embedded default's immediate collection.
    os.environ.setdefault("MODELKEEP_GC_GRACE", "0")


@pytest.fixture(scope="session")
def pg_template(postgres: Any) -> str:
    """A database with the registry's schema, copied for every repository (faster than
    running the migrations each time)."""
    from modelkeep.registry import Registry

    url = postgres.new_database("mk_template")
    reg = Registry(url)
    reg.create()
    reg.dispose()
    return str(url.rsplit("/", 1)[1])


@pytest.fixture(autouse=True)
def _engine_under_test(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    if ENGINE == "local":
        yield
        return
    from modelkeep._engine import layout

    postgres = request.getfixturevalue("postgres")
    template = request.getfixturevalue("pg_template")
    s3 = request.getfixturevalue("s3_server") if ENGINE == "pg-s3" else None
    bucket = request.getfixturevalue("_test_bucket") if s3 is not None else None
    made: list[tuple[str, str | None]] = []
    real_init = layout.init

    def init(
        path: Any = ".",
        params: Any = None,
        *,
        db_url: str | None = None,
        store: str | None = None,
        s3_endpoint: str | None = None,
    ) -> Any:
        if db_url is None and store is None and path is not None:
            db_url = postgres.new_database(template=template)
            prefix = None
            if bucket is not None:
                prefix = uuid.uuid4().hex
                store = f"s3://{bucket}/{prefix}"
            made.append((db_url, prefix))
        return real_init(path, params, db_url=db_url, store=store, s3_endpoint=s3_endpoint)

    monkeypatch.setattr(layout, "init", init)
    yield
    for db_url, prefix in made:
        postgres.drop_database(db_url)
        if prefix is not None and s3 is not None:
            client: Any = s3.client()
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    client.delete_objects(Bucket=bucket, Delete={"Objects": keys})


@pytest.fixture(scope="session")
def _test_bucket(s3_server: Any) -> str:
    return str(s3_server.new_bucket("suite"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a shared engine's pass, tests marked ``local_engine`` (the folder's own files,
    or tests that pick their engines themselves) already ran on the default's pass."""
    if ENGINE == "local":
        return
    kept = [i for i in items if i.get_closest_marker("local_engine") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(
            items=[i for i in items if i.get_closest_marker("local_engine") is not None]
        )
        items[:] = kept
