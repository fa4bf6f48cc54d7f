"""Fixtures for every test folder (a folder's own conftest may override them)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
# inprocess_cli.py is imported by name from the folders below.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import inprocess_cli  # noqa: E402 - needs the path above


@pytest.fixture(scope="session")
def cli() -> Any:
    """``cli(root, *args)``: `modelkeep --repo ROOT ARGS` run in-process; the result
    has ``code``, ``out``, ``err`` and ``one_line_error()``."""
    return inprocess_cli.run


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real PostgreSQL server on 127.0.0.1 for the session (``services.Postgres``)."""
    import services

    server = services.start_postgres(tmp_path_factory.mktemp("postgres"))
    yield server
    server.stop()


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
