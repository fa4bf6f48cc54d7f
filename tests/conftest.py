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
