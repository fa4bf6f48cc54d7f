"""Comparing two loaded models: hyper-parameters, coefficients, trees, predictions."""

from __future__ import annotations

import math
from typing import Any

from modelkeep.formats.base import qualname
from modelkeep.formats.predict import predict


def _trees(model: Any) -> tuple[int, int] | None:
    """(number of trees, deepest tree) of a fitted scikit-learn tree ensemble."""
    import numpy as np

    ests = getattr(model, "estimators_", None)
    if ests is None:
        return None
    flat = list(np.ravel(np.asarray(ests, dtype=object)))
    depths = [e.tree_.max_depth for e in flat if hasattr(e, "tree_")]
    if not depths:
        return None
    return len(flat), max(depths)


def sklearn(a: Any, b: Any) -> dict[str, Any]:
    """What changed between two scikit-learn estimators (final step of pipelines)."""
    import numpy as np

    out: dict[str, Any] = {}
    if hasattr(a, "steps") and hasattr(b, "steps"):
        a, b = a.steps[-1][1], b.steps[-1][1]
    if qualname(a) != qualname(b):
        out["class"] = [qualname(a), qualname(b)]
    pa, pb = a.get_params(deep=False), b.get_params(deep=False)
    # Across classes only the parameters both have are comparable.
    keys = set(pa) | set(pb) if "class" not in out else set(pa) & set(pb)
    hyper = {
        k: [repr(pa.get(k)), repr(pb.get(k))]
        for k in sorted(keys)
        if repr(pa.get(k)) != repr(pb.get(k))
    }
    if hyper:
        out["hyperparameters"] = hyper
    ca, cb = getattr(a, "coef_", None), getattr(b, "coef_", None)
    if ca is not None and cb is not None:
        ca, cb = np.asarray(ca, dtype=float), np.asarray(cb, dtype=float)
        if ca.shape == cb.shape:
            base = float(np.linalg.norm(ca))
            delta = float(np.linalg.norm(cb - ca))
            out["coefficients"] = {
                "relative_l2": delta / base if base else (0.0 if delta == 0 else math.inf),
                "max_abs": float(np.max(np.abs(cb - ca))) if ca.size else 0.0,
            }
        else:
            out["coefficients"] = {"shape": [list(ca.shape), list(cb.shape)]}
    ta, tb = _trees(a), _trees(b)
    if ta is not None and tb is not None:
        out["trees"] = {"count": [ta[0], tb[0]], "max_depth": [ta[1], tb[1]]}
    return out


def predictions(a: Any, b: Any, x: Any, y: Any | None, task: str | None) -> dict[str, Any]:
    """Both models on the same rows: agreement or absolute difference, and metrics."""
    import numpy as np

    pa, pb = np.asarray(predict(a, x)), np.asarray(predict(b, x))
    out: dict[str, Any] = {"rows": len(pa)}
    classification = task == "classification" or (
        task is None and pa.dtype.kind in "iubOSU" and pb.dtype.kind in "iubOSU"
    )
    if classification:
        out["task"] = "classification"
        out["agreement"] = float(np.mean(pa == pb))
        if y is not None:
            from sklearn.metrics import accuracy_score, f1_score

            y = np.asarray(y)
            avg = "binary" if len(np.unique(y)) <= 2 else "macro"
            out["accuracy"] = [float(accuracy_score(y, pa)), float(accuracy_score(y, pb))]
            out["f1"] = [
                float(f1_score(y, pa, average=avg, zero_division=0)),
                float(f1_score(y, pb, average=avg, zero_division=0)),
            ]
    else:
        out["task"] = "regression"
        d = np.abs(pa.astype(float) - pb.astype(float))
        out["mean_abs_diff"] = float(d.mean()) if d.size else 0.0
        out["max_abs_diff"] = float(d.max()) if d.size else 0.0
        if y is not None:
            y = np.asarray(y, dtype=float)
            out["rmse"] = [
                float(np.sqrt(np.mean((pa.ravel() - y) ** 2))),
                float(np.sqrt(np.mean((pb.ravel() - y) ** 2))),
            ]
            out["mae"] = [
                float(np.mean(np.abs(pa.ravel() - y))),
                float(np.mean(np.abs(pb.ravel() - y))),
            ]
    return out
