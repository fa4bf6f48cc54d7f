"""Updating a model: train a candidate, gate it against its parent, commit either way.

A passed candidate becomes the next version on its parent's branch (and moves an
alias if asked); a rejected one is still committed — on the ``candidates`` branch,
with status ``rejected`` and the reason — so nothing is lost and the decision can
be audited or overridden. Everything is checked before anything is stored.
"""

from __future__ import annotations

import copy
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from modelkeep.artifact import features_of
from modelkeep.errors import (
    DataFormatError,
    GateRuleError,
    NotIncrementalError,
    TrainerError,
    UsageError,
)
from modelkeep.evaluation import evaluate, known_metrics
from modelkeep.formats import tabular
from modelkeep.formats._deps import import_path
from modelkeep.formats.predict import task_of
from modelkeep.revision import check_name
from modelkeep.update.gate import Gate

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from modelkeep.registry.records import Version
    from modelkeep.repo import Repo

STRATEGIES = ("batch", "incremental", "custom")
CANDIDATES = "candidates"
HOLDOUT_SHARE = 0.2
DEFAULT_GATES = {"classification": "f1 >= parent", "regression": "rmse <= parent"}


@dataclass(frozen=True)
class UpdateResult:
    """What an update made and decided."""

    candidate: Version
    parent: Version
    strategy: str
    gate: str
    passed: bool
    reason: str
    parent_metrics: dict[str, float] = field(default_factory=dict)
    candidate_metrics: dict[str, float] = field(default_factory=dict)
    promoted: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate.to_dict(),
            "parent": self.parent.rev,
            "strategy": self.strategy,
            "gate": self.gate,
            "passed": self.passed,
            "reason": self.reason,
            "parent_metrics": self.parent_metrics,
            "candidate_metrics": self.candidate_metrics,
            "promoted": self.promoted,
        }


@dataclass
class _Table:
    spec: str  # what lineage records: a path or a dataset revision
    frame: Any


def _table(repo: Repo, spec: Any, what: str) -> _Table:
    """A DataFrame from a file path or a stored dataset revision (NAME:N)."""
    text = str(spec)
    path = Path(text)
    if not path.exists() and ":" in text:
        version = repo.resolve(text)
        if version.format != "dataset":
            raise UsageError(f"{what} {text} is a model version, not a dataset")
        frame = repo.load(version)
        return _Table(version.rev, frame)
    if not path.is_file():
        raise DataFormatError(f"{what} {text}: no such file (or dataset NAME:VERSION)")
    frame = tabular.read(path)
    if not hasattr(frame, "columns"):
        raise DataFormatError(f"{what} {text}: updates need a table (CSV or Parquet)")
    return _Table(text, frame)


def _xy(table: _Table, parent: Version, target: str, what: str) -> tuple[Any, Any]:
    frame = table.frame
    if not len(frame):
        raise DataFormatError(f"{what} {table.spec} has no rows")
    x = features_of(frame, parent.artifact, target)
    y = frame[target]
    if y.isna().any():
        raise DataFormatError(
            f"{what} {table.spec}: {int(y.isna().sum())} row(s) have no {target!r} value"
        )
    return x, y


def _call(what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run user code; its failure is reported with its own traceback."""
    try:
        return fn(*args)
    except Exception as exc:
        trace = "".join(traceback.format_exception(exc))
        raise TrainerError(
            f"the {what} raised {type(exc).__name__}: {exc}; nothing was committed", trace
        ) from exc


def _resolve_callable(value: Any, what: str) -> Callable[..., Any]:
    if callable(value):
        return cast("Callable[..., Any]", value)
    if isinstance(value, str) and ":" in value:
        fn = import_path(value)
        if callable(fn):
            return fn
    raise UsageError(f"the {what} must be a callable or 'module:function', got {value!r}")


def _incremental(
    model: Any, x: Any, y: Any, step: Callable[..., Any] | None, params: Mapping[str, Any]
) -> Any:
    candidate = copy.deepcopy(model)
    if step is not None:
        out = _call("step function", step, candidate, x, y, dict(params))
        return candidate if out is None else out
    if hasattr(candidate, "partial_fit"):
        _call("partial_fit", candidate.partial_fit, x, y)
        return candidate
    if hasattr(candidate, "learn_one"):  # river-style online models
        for row, label in zip(x.to_dict(orient="records"), y, strict=True):
            _call("learn_one", candidate.learn_one, row, label)
        return candidate
    raise NotIncrementalError(
        f"{type(model).__name__} cannot continue training (no partial_fit or learn_one); "
        "use --strategy batch, or give a step function (Python API: step=...)"
    )


def _parent_training(repo: Repo, parent: Version, target: str) -> tuple[Any, Any, str]:
    if not parent.datasets:
        raise UsageError(
            f"{parent.rev} has no recorded training data to retrain from in a batch: "
            "name the full training data with --train FILE (or NAME:VERSION)"
        )
    ref = parent.datasets[0]
    if ":" in ref.path and not Path(ref.path).exists():
        table = _table(repo, ref.path, "the parent's training data")
    else:
        from modelkeep.store import hash_file

        path = Path(ref.path)
        if not path.is_file() or hash_file(str(path)).hex != ref.content_id:
            raise UsageError(
                f"{parent.rev} was trained on {ref.path}, which is gone or has changed since "
                "(its content differs): name the training set with --train FILE, or store "
                "datasets with `modelkeep data add` so they stay available"
            )
        table = _Table(str(path), tabular.read(path))
    x, y = _xy(table, parent, target, "the parent's training data")
    return x, y, table.spec


def run_update(
    repo: Repo,
    rev: str,
    *,
    data: Any,
    target: str,
    strategy: str = "incremental",
    gate: str | None = None,
    holdout: Any = None,
    train: Any = None,
    promote: str | None = None,
    trainer: Any = None,
    step: Any = None,
    metrics: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    message: str | None = None,
    candidates_branch: str = CANDIDATES,
) -> UpdateResult:
    """Train a candidate from the version ``rev`` names; see the module docstring."""
    import pandas as pd

    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    parent = repo.resolve(rev)
    if promote is not None:
        # Checked now: once the candidate is committed it is too late to refuse.
        check_name(promote, "alias name")
        clash = [r for r in repo.refs(parent.model) if r.name == promote and r.kind != "alias"]
        if clash:
            raise UsageError(
                f"--promote {promote}: {parent.model}@{promote} is a {clash[0].kind}, not an "
                "alias; choose an alias name"
            )
    if parent.format == "files" or parent.format == "dataset":
        raise UsageError(
            f"{parent.rev} holds {parent.format}, not a model modelkeep can load; updates "
            "start from a committed model object"
        )
    params = dict(params or {})
    user_metrics = {k: _resolve_callable(v, f"metric {k}") for k, v in (metrics or {}).items()}
    trainer_fn = _resolve_callable(trainer, "trainer") if trainer is not None else None
    step_fn = _resolve_callable(step, "step function") if step is not None else None
    if strategy == "custom" and trainer_fn is None:
        raise UsageError("--strategy custom needs --trainer module:function")

    new = _table(repo, data, "data")
    x_new, y_new = _xy(new, parent, target, "data")
    model = repo.load(parent)
    task = parent.artifact.get("task") or task_of(model)
    rule = Gate(
        gate or DEFAULT_GATES.get(task or "", "f1 >= parent"), known_metrics(task, user_metrics)
    )
    if "auc" in rule.metrics and not hasattr(model, "predict_proba"):
        raise GateRuleError(
            f"the gate uses auc, but {type(model).__name__} gives no probabilities "
            "(predict_proba); gate on f1 or accuracy instead"
        )

    if holdout is not None:
        held = _table(repo, holdout, "holdout")
        x_hold, y_hold = _xy(held, parent, target, "holdout")
        x_train, y_train = x_new, y_new
        holdout_doc = {"source": held.spec, "rows": len(x_hold)}
    else:
        if len(x_new) < 10:
            raise DataFormatError(
                f"data {new.spec} has {len(x_new)} rows: too few to hold some out; give "
                "--holdout FILE"
            )
        from sklearn.model_selection import train_test_split

        x_train, x_hold, y_train, y_hold = train_test_split(
            x_new, y_new, test_size=HOLDOUT_SHARE, random_state=0
        )
        holdout_doc = {"source": f"{HOLDOUT_SHARE:.0%} of {new.spec} (seed 0)", "rows": len(x_hold)}

    used = [new.spec]
    if strategy == "incremental":
        candidate = _incremental(model, x_train, y_train, step_fn, params)
    elif strategy == "batch":
        if train is not None:
            full = _table(repo, train, "training set")
            x_old, y_old = _xy(full, parent, target, "training set")
            used.append(full.spec)
        else:
            x_old, y_old, spec = _parent_training(repo, parent, target)
            used.append(spec)
        x_all = pd.concat([x_old, x_train], ignore_index=True)
        y_all = pd.concat([y_old, y_train], ignore_index=True)
        try:
            from sklearn.base import clone

            candidate = clone(model)
        except (ImportError, TypeError):
            if trainer_fn is None:
                raise UsageError(
                    f"{type(model).__name__} is not a scikit-learn estimator, so a fresh copy "
                    "cannot be made: give --trainer module:function"
                ) from None
            candidate = None
        if trainer_fn is not None:
            candidate = _call("trainer", trainer_fn, None, (x_all, y_all), params)
        else:
            _call("fit", candidate.fit, x_all, y_all)
    else:
        assert trainer_fn is not None
        candidate = _call("trainer", trainer_fn, model, (x_train, y_train), params)
    if candidate is None:
        raise TrainerError(
            "the trainer returned None instead of a model; nothing was committed", ""
        )

    parent_scores = evaluate(model, x_hold, y_hold, task, user_metrics)
    cand_scores = evaluate(candidate, x_hold, y_hold, task, user_metrics)
    verdict = rule.evaluate(cand_scores, parent_scores)
    if holdout is not None:
        used.append(str(held.spec))

    branch = parent.branch
    if not verdict.passed:
        branch = candidates_branch
        if branch not in {r.name for r in repo.refs(parent.model, "branch")}:
            repo.branch(parent.model, branch, parent.rev)
    status = "ok" if verdict.passed else "rejected"
    annotations = {
        "update": {
            "strategy": strategy,
            "parent": parent.rev,
            "gate": rule.text,
            "verdict": "passed" if verdict.passed else "rejected",
            "reason": verdict.reason,
            "holdout": holdout_doc,
            "metrics": {"parent": parent_scores, "candidate": cand_scores},
            "datasets": used,
        }
    }
    version = repo.commit(
        parent.model,
        candidate,
        message or f"{strategy} update of {parent.rev}: gate {annotations['update']['verdict']}",
        branch=branch,
        params={**parent.params, **params, "strategy": strategy},
        metrics=cand_scores,
        data=used,
        input_example=x_hold.head(5),
        target=target,
        parents=[parent.number],
        kind=f"update.{strategy}",
        status=status,
        annotations=annotations,
    )
    promoted = None
    if verdict.passed and promote:
        repo.promote(version.rev, promote, f"update passed its gate: {verdict.reason}")
        promoted = promote
    return UpdateResult(
        version,
        parent,
        strategy,
        rule.text,
        verdict.passed,
        verdict.reason,
        parent_scores,
        cand_scores,
        promoted,
    )
