"""Import a format's library, or say which extra installs it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from modelkeep.errors import MissingDependencyError

if TYPE_CHECKING:
    from types import ModuleType


def need(module: str, extra: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"this needs {module.split('.')[0]}, which is not installed: "
            f"`pip install 'modelkeep[{extra}]'`"
        ) from None


def import_path(path: str) -> object:
    """``package.module:Name`` (or ``package.module.Name``) → the object."""
    module, _, name = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        obj: object = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        raise MissingDependencyError(
            f"cannot import {path}: make the module that defines it importable "
            "(installed, or on PYTHONPATH) before loading this version"
        ) from None
    return obj
