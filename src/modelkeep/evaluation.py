"""Metrics of a model on labelled rows: the ones that fit its task, or the user's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelkeep.formats.predict import predict

if TYPE_CHECKING:
    from collections.abc import Callable

CLASSIFICATION = ("accuracy", "f1", "precision", "recall", "auc")
REGRESSION = ("rmse", "mae", "r2")
# Which way is better (reported in tables, and the gate's check of new data against
# a parent's record; the gate rule itself says what it wants). A user's metric: unknown.
LOWER_IS_BETTER = frozenset({"rmse", "mae"})
HIGHER_IS_BETTER = frozenset({*CLASSIFICATION, "r2"})


def known_metrics(task: str | None, user: dict[str, Any] | None = None) -> set[str]:
    names = set(CLASSIFICATION if task == "classification" else REGRESSION)
    if task is None:
        names |= set(CLASSIFICATION)
    return names | set(user or {})


def as_fitted(model: Any, x: Any) -> Any:
    """``x`` (a DataFrame) in the form a scikit-learn-style ``model`` was fitted on.

    Data always arrives as a table, but a model fitted on a bare array warns ("X has
    feature names, but ... was fitted without feature names") at every call given one,
    and one fitted on a table warns when given an array: a warning about our own
    plumbing, which the user can do nothing about. So: the fitted columns in the fitted
    order, or the values alone. Anything else (river, PyTorch, ONNX) is left as it is.
    """
    if not hasattr(x, "columns") or not hasattr(model, "n_features_in_"):
        return x
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return x.to_numpy()
    wanted = list(names)
    if set(wanted) <= set(x.columns):
        return x[wanted]
    return x  # names the data lacks: the model's own check says which


def evaluate(
    model: Any,
    x: Any,
    y: Any,
    task: str | None,
    user: dict[str, Callable[[Any, Any], float]] | None = None,
) -> dict[str, float]:
    """Every metric of ``task`` (and the user's), on the same rows."""
    import numpy as np
    from sklearn import metrics as m

    x = as_fitted(model, x)
    pred = np.asarray(predict(model, x))
    y = np.asarray(y)
    if task != "regression" and pred.ndim == 2:  # class scores (e.g. a Booster)
        pred = pred.argmax(axis=1) if pred.shape[1] > 1 else (pred[:, 0] > 0.5)
    out = scores(y, pred, task, getattr(model, "classes_", None))
    if task != "regression" and hasattr(model, "predict_proba") and len(np.unique(y)) == 2:
        proba = model.predict_proba(x)[:, 1]
        out["auc"] = float(m.roc_auc_score(y, proba))
    for name, fn in (user or {}).items():
        out[name] = float(fn(y, pred))
    return out


def scores(y: Any, pred: Any, task: str | None, classes: Any = None) -> dict[str, float]:
    """Metrics from true values and predictions alone (live feedback has no model call)."""
    import numpy as np
    from sklearn import metrics as m

    y, pred = np.asarray(y), np.asarray(pred)
    out: dict[str, float] = {}
    if task == "regression":
        pred = pred.astype(float).ravel()
        out["rmse"] = float(np.sqrt(m.mean_squared_error(y, pred)))
        out["mae"] = float(m.mean_absolute_error(y, pred))
        out["r2"] = float(m.r2_score(y, pred)) if len(y) > 1 else 0.0
        return out
    labels = np.unique(np.concatenate([np.unique(y), np.unique(pred)]))
    binary = len(labels) <= 2
    # Binary scores are about the positive class: the model's last class (1, True,
    # "yes"…), as predict_proba's last column is.
    kw: dict[str, Any] = {"average": "binary" if binary else "macro", "zero_division": 0}
    if binary:
        kw["pos_label"] = (classes if classes is not None else labels)[-1]
    out["accuracy"] = float(m.accuracy_score(y, pred))
    out["f1"] = float(m.f1_score(y, pred, **kw))
    out["precision"] = float(m.precision_score(y, pred, **kw))
    out["recall"] = float(m.recall_score(y, pred, **kw))
    return out
