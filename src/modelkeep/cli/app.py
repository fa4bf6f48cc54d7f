"""The `modelkeep` command: the app (``modelkeep.cli.base``) with every command group
registered, in the order `modelkeep --help` lists them. Each command parses, calls one
Repo method, and prints."""

from __future__ import annotations

import copy
import importlib
import os
import sys

import typer
from typer.main import get_command_name

from modelkeep.cli import render
from modelkeep.cli.base import app

# Each module registers its commands when imported, and --help lists them in that order.
for _group in ("versions", "jobs", "refs", "monitor", "data", "access", "remote", "maintenance"):
    importlib.import_module(f"modelkeep.cli.{_group}")

__all__ = ["app", "main"]


def _for(argv: list[str]) -> typer.Typer:
    """The app with only the command ``argv`` runs registered (the whole app for
    `--help`, no command, or a name it does not know, which it then lists): typer
    builds every registered command's parser before it runs one, 0.05 s a process."""
    words = iter(argv)
    word = next(words, None)
    while word is not None and word.startswith("--repo"):
        if word == "--repo":
            next(words, None)  # its value
        word = next(words, None)
    if word is None or word.startswith("-"):
        return app
    only = copy.copy(app)
    only.registered_commands = [
        c
        for c in app.registered_commands
        if (c.name or get_command_name(getattr(c.callback, "__name__", ""))) == word
    ]
    only.registered_groups = [g for g in app.registered_groups if g.name == word]
    return only if only.registered_commands or only.registered_groups else app


def main() -> None:
    try:
        _for(sys.argv[1:])()
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
