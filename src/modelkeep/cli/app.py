"""The `modelkeep` command: the app (``modelkeep.cli.base``) with every command group
registered, in the order `modelkeep --help` lists them. Each command parses, calls one
Repo method, and prints."""

from __future__ import annotations

import importlib
import os
import sys

from modelkeep.cli import render
from modelkeep.cli.base import app

# Each module registers its commands when imported, and --help lists them in that order.
for _group in ("versions", "jobs", "refs", "monitor", "data", "maintenance"):
    importlib.import_module(f"modelkeep.cli.{_group}")

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        render.err.print("interrupted")
        sys.exit(130)
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            # Output piped into `head` and the like: not an error.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        render.err.print(f"error: {exc}", markup=False)
        sys.exit(1)
