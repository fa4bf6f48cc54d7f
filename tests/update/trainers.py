"""Trainers for ``--strategy custom`` tests, imported by ``module:function`` path.

The update job imports them as ``trainers:NAME``: the e2e tests put this folder on
``sys.path`` (and on ``PYTHONPATH`` for the real `modelkeep` subprocess).
"""

from __future__ import annotations

import copy
from typing import Any

# Every call of ``warm_start_twice``: (parent model, number of rows, params).
CALLS: list[tuple[Any, int, dict[str, Any]]] = []


def warm_start_twice(parent: Any, data: tuple[Any, Any], params: dict[str, Any]) -> Any:
    """Continue the parent for two passes over the new rows (a copy: the parent stays)."""
    x, y = data
    CALLS.append((parent, len(x), dict(params)))
    model = copy.deepcopy(parent)
    for _ in range(int(params.get("passes", 2))):
        model.partial_fit(x, y)
    return model


def explode_in_trainer(parent: Any, data: tuple[Any, Any], params: dict[str, Any]) -> Any:
    """A trainer with a bug: it raises from a helper, so the traceback has two frames."""
    return _broken_helper(data)


def _broken_helper(data: tuple[Any, Any]) -> Any:
    raise RuntimeError(f"trainer bug: cannot handle {len(data[0])} rows")


def refit_on_new(parent: Any, data: tuple[Any, Any], params: dict[str, Any]) -> Any:
    """A fresh copy of the parent fitted on the new rows alone: it learns whatever they say."""
    from sklearn.base import clone

    x, y = data
    return clone(parent).fit(x, y)


def warn_then_refit(parent: Any, data: tuple[Any, Any], params: dict[str, Any]) -> Any:
    """A trainer with something of its own to say: its warning must reach the user."""
    import warnings

    warnings.warn("trainer says: check your features", UserWarning, stacklevel=1)
    return refit_on_new(parent, data, params)
