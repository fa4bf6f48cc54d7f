"""Updating a model: train a candidate, gate it against its parent, commit either way.

A passed candidate becomes the next version on its parent's branch (and moves an
alias if asked); a rejected one is still committed — on the ``candidates`` branch,
with status ``rejected`` and the reason — so nothing is lost and the decision can
be audited or overridden. Everything is checked before anything is stored.

Three checks decide, all of which must pass:

- the new data must not contradict the parent: scored on the new holdout, the parent
  may not fall far below the metrics recorded with it (``gate.contradictions``); if it
  does, the candidate is rejected unless the caller accepts contradicting data
  explicitly (``accept_contradicting_data=True``);
- the gate rule, candidate against parent on the new holdout;
- the same rule on the parent's validation data, when it is stored: the holdout of the
  update that made the parent. Each update stores its holdout as a dataset
  (``<model>-holdout``; content-addressed, and the last version is reused when the
  rows are the same), so that its child is checked on it in turn.
"""

from __future__ import annotations

import copy
import tempfile
import traceback
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from modelkeep._engine.drafts import CommitDraft
from modelkeep.artifact import features_of
from modelkeep.errors import (
    DataFormatError,
    GateRuleError,
    Hint,
    InvalidNameError,
    NotFoundError,
    NotIncrementalError,
    RefExistsError,
    TrainerError,
    UsageError,
)
from modelkeep.evaluation import as_fitted, evaluate, known_metrics
from modelkeep.formats import tabular
from modelkeep.formats._deps import import_path
from modelkeep.formats.predict import task_of
from modelkeep.revision import check_name
from modelkeep.update.gate import CONTRADICTION_DROP, CONTRADICTION_RATIO, Gate, contradictions

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from modelkeep._engine import Engine
    from modelkeep.registry.records import Version

STRATEGIES = ("batch", "incremental", "custom")
CANDIDATES = "candidates"
HOLDOUT_SHARE = 0.2
DEFAULT_GATES = {"classification": "f1 >= parent", "regression": "rmse <= parent"}
HOLDOUTS = "{model}-holdout"  # the dataset each update stores its holdout in


@dataclass(frozen=True)
class Evaluation:
    """Parent and candidate scored on the same rows, and the gate rule's verdict there."""

    data: str  # which rows: a dataset revision, a file, or a share of the new data
    rows: int
    parent_metrics: dict[str, float]
    candidate_metrics: dict[str, float]
    passed: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "rows": self.rows,
            "parent_metrics": self.parent_metrics,
            "candidate_metrics": self.candidate_metrics,
            "passed": self.passed,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Evaluation:
        """The evaluation ``to_dict`` gave (as a team server answers it)."""
        return cls(
            doc["data"],
            int(doc["rows"]),
            dict(doc["parent_metrics"]),
            dict(doc["candidate_metrics"]),
            bool(doc["passed"]),
            doc["reason"],
        )


@dataclass(frozen=True)
class UpdateResult:
    """What an update made and decided.

    ``passed`` is the whole decision; ``reason`` tells it. ``parent_metrics`` and
    ``candidate_metrics`` are the scores on the new holdout; ``validation`` the scores
    on the parent's validation data, when it is stored. ``contradiction`` lists the
    metrics on which the new data contradicts the parent's record ("accuracy recorded
    0.925, measured 0.075"), ``accepted_contradiction`` whether the caller overrode
    it. ``holdout_dataset`` is where this update's holdout is stored (its child's
    validation data); ``notes`` are what the libraries said that is worth knowing.
    """

    candidate: Version
    parent: Version
    strategy: str
    gate: str
    passed: bool
    reason: str
    parent_metrics: dict[str, float] = field(default_factory=dict)
    candidate_metrics: dict[str, float] = field(default_factory=dict)
    promoted: str | None = None
    validation: Evaluation | None = None
    contradiction: tuple[str, ...] = ()
    accepted_contradiction: bool = False
    holdout_dataset: str | None = None
    notes: tuple[str, ...] = ()

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
            "validation": None if self.validation is None else self.validation.to_dict(),
            "contradiction": list(self.contradiction),
            "accepted_contradiction": self.accepted_contradiction,
            "holdout_dataset": self.holdout_dataset,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], parent: Version) -> UpdateResult:
        """The result ``to_dict`` gave (as a team server answers it); ``to_dict`` names
        the parent by its revision only, so the caller gives the parent's record."""
        from modelkeep.registry.records import Version as VersionRecord
        from modelkeep.registry.records import from_dict

        if doc["parent"] != parent.rev:
            raise UsageError(f"the update's parent is {doc['parent']}, not {parent.rev}")
        validation = doc.get("validation")
        return cls(
            from_dict(VersionRecord, doc["candidate"]),
            parent,
            doc["strategy"],
            doc["gate"],
            bool(doc["passed"]),
            doc["reason"],
            dict(doc["parent_metrics"]),
            dict(doc["candidate_metrics"]),
            doc.get("promoted"),
            validation=None if validation is None else Evaluation.from_dict(validation),
            contradiction=tuple(doc.get("contradiction", ())),
            accepted_contradiction=bool(doc.get("accepted_contradiction", False)),
            holdout_dataset=doc.get("holdout_dataset"),
            notes=tuple(doc.get("notes", ())),
        )


@dataclass
class _Table:
    spec: str  # what lineage records: a path or a dataset revision
    frame: Any
    stored: bool = False  # a dataset revision (so already kept in the repository)


def _table(engine: Engine, spec: Any, what: str) -> _Table:
    """A DataFrame from a file path or a stored dataset revision (NAME:N)."""
    text = str(spec)
    path = Path(text)
    if not path.exists() and ":" in text:
        version = engine.versions.resolve(text)
        if version.format != "dataset":
            raise UsageError(f"{what} {text} is a model version, not a dataset")
        frame = engine.versions.load(version)
        return _Table(version.rev, frame, stored=True)
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


@contextmanager
def _noted(notes: list[str]) -> Iterator[None]:
    """Training that did not converge becomes one note in modelkeep's words.

    scikit-learn's ConvergenceWarning says something worth knowing (the candidate may
    be under-fitted) in terms of solver internals, once per call: it is said once, in
    the result and the lineage. Every other warning goes on as it came.
    """
    try:
        from sklearn.exceptions import ConvergenceWarning
    except ImportError:
        yield
        return
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            # Only this category is changed; the caller's filters decide about the rest.
            warnings.simplefilter("always", ConvergenceWarning)
            yield
    finally:  # a trainer that warned, then raised, still gets its warning said
        for w in caught:
            if issubclass(w.category, ConvergenceWarning):
                note = (
                    "training did not converge (scikit-learn's ConvergenceWarning): the "
                    "candidate may be under-fitted; raise the model's max_iter or scale the "
                    "features if the gate's numbers look low"
                )
                if note not in notes:
                    notes.append(note)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


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
        _call("partial_fit", candidate.partial_fit, as_fitted(candidate, x), y)
        return candidate
    if hasattr(candidate, "learn_one"):  # river-style online models
        for row, label in zip(x.to_dict(orient="records"), y, strict=True):
            _call("learn_one", candidate.learn_one, row, label)
        return candidate
    raise NotIncrementalError(
        f"{type(model).__name__} cannot continue training (no partial_fit or learn_one); "
        "retrain it in a batch, or with a function of your own",
        hint=Hint(
            cli="use --strategy batch, or --strategy custom --trainer module:function",
            api="pass strategy='batch', or step=a function (model, x, y, params)",
        ),
    )


def _parent_training(engine: Engine, parent: Version, target: str) -> tuple[Any, Any, str]:
    if not parent.datasets:
        raise UsageError(
            f"{parent.rev} has no recorded training data to retrain from in a batch: "
            "name the full training data (a file or a dataset NAME:VERSION)",
            hint=Hint(
                cli="give --train FILE (or --train NAME:VERSION)",
                api="pass train='FILE' (or train='NAME:VERSION')",
            ),
        )
    ref = parent.datasets[0]
    if ":" in ref.path and not Path(ref.path).exists():
        table = _table(engine, ref.path, "the parent's training data")
    else:
        from modelkeep.store import hash_file

        path = Path(ref.path)
        if not path.is_file() or hash_file(str(path)).hex != ref.content_id:
            raise UsageError(
                f"{parent.rev} was trained on {ref.path}, which is gone or has changed since "
                "(its content differs): name the training set, or store datasets in the "
                "repository so they stay available",
                hint=Hint(
                    cli="give --train FILE; `modelkeep data add` stores a dataset",
                    api="pass train='FILE'; Repo.data_add() stores a dataset",
                ),
            )
        table = _Table(str(path), tabular.read(path))
    x, y = _xy(table, parent, target, "the parent's training data")
    return x, y, table.spec


def _validation_data(
    engine: Engine, parent: Version, target: str, notes: list[str]
) -> tuple[str, Any, Any] | None:
    """The parent's validation data (the holdout of the update that made it), when
    stored: its revision, features and labels. Unusable data is a note, not a failure:
    the update can still be judged on the new holdout."""
    doc = parent.annotations.get("update", {})
    holdout = doc.get("holdout") if isinstance(doc, dict) else None
    rev = holdout.get("dataset") if isinstance(holdout, dict) else None
    if not isinstance(rev, str):
        return None
    try:
        table = _table(engine, rev, f"{parent.rev}'s validation data")
        x, y = _xy(table, parent, target, f"{parent.rev}'s validation data")
    except (UsageError, NotFoundError) as exc:
        notes.append(f"not checked on {parent.rev}'s validation data {rev}: {exc}")
        return None
    return rev, x, y


def _store_holdout(
    engine: Engine, parent: Version, held: _Table | None, x: Any, y: Any, why: str, notes: list[str]
) -> str | None:
    """Keep the holdout as a dataset revision, so that the candidate's own update can
    be checked on it later; the dataset's last version when the rows are the same."""
    import pandas as pd

    from modelkeep.store import hash_file

    if held is not None and held.stored:
        return held.spec  # a dataset revision already
    name = HOLDOUTS.format(model=parent.model)
    try:
        check_name(name, "dataset name")
    except InvalidNameError:
        notes.append(f"the holdout was not stored: {name!r} is too long for a dataset name")
        return None
    info = next((m for m in engine.versions.models() if m.name == name), None)
    if info is not None and info.kind != "dataset":
        notes.append(f"the holdout was not stored: {name} is a model, not a dataset")
        return None
    with tempfile.TemporaryDirectory(prefix="modelkeep-holdout-") as tmp:
        if held is not None:
            path = Path(held.spec)
        else:
            frame = pd.concat([x, y], axis=1).reset_index(drop=True)
            path = Path(tmp) / f"{name}.parquet"
            try:
                frame.to_parquet(path, index=False)
            except ImportError:  # pandas without pyarrow: a CSV keeps the values
                path = path.with_suffix(".csv")
                frame.to_csv(path, index=False)
        if info is not None and info.latest is not None:
            last = engine.versions.resolve(f"{name}:{info.latest}")
            if last.artifact.get("content_id") == hash_file(str(path)).hex:
                return last.rev
        try:
            return engine.commits.data_add(name, path, why).rev
        except RefExistsError as exc:  # made a model meanwhile
            notes.append(f"the holdout was not stored: {exc}")
            return None


def run_update(
    engine: Engine,
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
    accept_contradicting_data: bool = False,
    contradiction_drop: float = CONTRADICTION_DROP,
    contradiction_ratio: float = CONTRADICTION_RATIO,
) -> UpdateResult:
    """Train a candidate from the version ``rev`` names; see the module docstring.

    ``accept_contradicting_data``: promote (if the gate passes) even when the parent
    scores far below its recorded metrics on the new data. ``contradiction_drop`` and
    ``contradiction_ratio`` say how far is far (see ``gate.CONTRADICTION_DROP``).
    """
    import pandas as pd

    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    if not contradiction_drop >= 0 or not contradiction_ratio >= 1:
        raise UsageError(
            f"contradiction_drop must be >= 0 and contradiction_ratio >= 1 (got "
            f"{contradiction_drop!r}, {contradiction_ratio!r}); defaults: "
            f"{CONTRADICTION_DROP}, {CONTRADICTION_RATIO}"
        )
    parent = engine.versions.resolve(rev)
    if promote is not None:
        # Checked now: once the candidate is committed it is too late to refuse.
        check_name(promote, "alias name")
        refs = engine.refs.refs(parent.model)
        clash = [r for r in refs if r.name == promote and r.kind != "alias"]
        if clash:
            raise UsageError(
                f"cannot promote to {promote}: {parent.model}@{promote} is a "
                f"{clash[0].kind}, not an alias; choose an alias name"
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
        raise UsageError(
            "the custom strategy needs a trainer function",
            hint=Hint(
                cli="give --trainer module:function",
                api="pass trainer='module:function' (or a function)",
            ),
        )

    new = _table(engine, data, "data")
    x_new, y_new = _xy(new, parent, target, "data")
    model = engine.versions.load(parent)
    task = parent.artifact.get("task") or task_of(model)
    rule = Gate(
        gate or DEFAULT_GATES.get(task or "", "f1 >= parent"), known_metrics(task, user_metrics)
    )
    if "auc" in rule.metrics and not hasattr(model, "predict_proba"):
        raise GateRuleError(
            f"the gate uses auc, but {type(model).__name__} gives no probabilities "
            "(predict_proba); gate on f1 or accuracy instead"
        )

    held: _Table | None = None
    if holdout is not None:
        held = _table(engine, holdout, "holdout")
        x_hold, y_hold = _xy(held, parent, target, "holdout")
        x_train, y_train = x_new, y_new
        holdout_doc: dict[str, Any] = {"source": held.spec, "rows": len(x_hold)}
    else:
        if len(x_new) < 10:
            raise DataFormatError(
                f"data {new.spec} has {len(x_new)} rows: too few to hold some out; give "
                "evaluation data of its own",
                hint=Hint(cli="give --holdout FILE", api="pass holdout='FILE'"),
            )
        from sklearn.model_selection import train_test_split

        x_train, x_hold, y_train, y_hold = train_test_split(
            x_new, y_new, test_size=HOLDOUT_SHARE, random_state=0
        )
        holdout_doc = {"source": f"{HOLDOUT_SHARE:.0%} of {new.spec} (seed 0)", "rows": len(x_hold)}
    notes: list[str] = []
    validation_data = _validation_data(engine, parent, target, notes)

    used = [new.spec]
    with _noted(notes):
        if strategy == "incremental":
            candidate = _incremental(model, x_train, y_train, step_fn, params)
        elif strategy == "batch":
            if train is not None:
                full = _table(engine, train, "training set")
                x_old, y_old = _xy(full, parent, target, "training set")
                used.append(full.spec)
            else:
                x_old, y_old, spec = _parent_training(engine, parent, target)
                used.append(spec)
            x_all = pd.concat([x_old, x_train], ignore_index=True)
            y_all = pd.concat([y_old, y_train], ignore_index=True)
            try:
                from sklearn.base import clone

                candidate = clone(model)
            except (ImportError, TypeError):
                if trainer_fn is None:
                    raise UsageError(
                        f"{type(model).__name__} is not a scikit-learn estimator, so a fresh "
                        "copy cannot be made: give a trainer function",
                        hint=Hint(
                            cli="give --trainer module:function",
                            api="pass trainer='module:function' (or a function)",
                        ),
                    ) from None
                candidate = None
            if trainer_fn is not None:
                candidate = _call("trainer", trainer_fn, None, (x_all, y_all), params)
            else:
                # Fitted as the parent was (on named columns, or on bare values), so the
                # candidate takes the same input wherever the parent is used.
                _call("fit", candidate.fit, as_fitted(model, x_all), y_all)
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
    if held is not None:
        used.append(held.spec)

    validation = None
    if validation_data is not None:
        vrev, x_val, y_val = validation_data
        on = f"{parent.rev}'s validation data {vrev}"
        parent_val = evaluate(model, x_val, y_val, task, user_metrics)
        cand_val = evaluate(candidate, x_val, y_val, task, user_metrics)
        val_verdict = rule.evaluate(cand_val, parent_val, on)
        validation = Evaluation(
            vrev, len(x_val), parent_val, cand_val, val_verdict.passed, val_verdict.reason
        )

    contradicted = contradictions(
        parent.metrics, parent_scores, drop=contradiction_drop, ratio=contradiction_ratio
    )
    refused = bool(contradicted) and not accept_contradicting_data
    passed = verdict.passed and (validation is None or validation.passed) and not refused
    reason = verdict.reason
    if validation is not None:
        reason += f"; on {parent.rev}'s validation data {validation.data}: {validation.reason}"
    if contradicted:
        reason += (
            f"; the new data contradicts {parent.rev}: {'; '.join(contradicted)} on the "
            "holdout (flipped labels, a broken join, a concept shift?)"
        )
        if accept_contradicting_data:
            reason += ", accepted by explicit override"
        else:
            reason += (
                ", so the candidate is not promoted; an explicit override "
                "(--accept-contradicting-data, Python: accept_contradicting_data=True) "
                "promotes it if the gate passes"
            )

    branch = parent.branch
    if not passed:
        branch = candidates_branch
        if branch not in {r.name for r in engine.refs.refs(parent.model, "branch")}:
            engine.refs.branch(parent.model, branch, parent.rev)
    status = "ok" if passed else "rejected"
    stored = _store_holdout(
        engine,
        parent,
        held,
        x_hold,
        y_hold,
        f"holdout of the {strategy} update of {parent.rev}",
        notes,
    )
    if stored is not None:
        holdout_doc["dataset"] = stored
    update_doc: dict[str, Any] = {
        "strategy": strategy,
        "parent": parent.rev,
        "gate": rule.text,
        "verdict": "passed" if passed else "rejected",
        "reason": reason,
        "holdout": holdout_doc,
        "metrics": {"parent": parent_scores, "candidate": cand_scores},
        "datasets": used,
    }
    if validation is not None:
        update_doc["validation"] = validation.to_dict()
    if contradicted:
        update_doc["contradiction"] = {
            "metrics": contradicted,
            "drop": contradiction_drop,
            "ratio": contradiction_ratio,
            "accepted": accept_contradicting_data,
        }
    if notes:
        update_doc["notes"] = notes
    draft = CommitDraft(
        parent.model,
        candidate,
        message
        or f"{strategy} update of {parent.rev}: "
        + ("contradicted by the new data" if refused else f"gate {update_doc['verdict']}"),
        branch=branch,
        params={**parent.params, **params, "strategy": strategy},
        metrics=cand_scores,
        data=used,
        input_example=x_hold.head(5),
        target=target,
        parents=[parent.number],
        kind=f"update.{strategy}",
        status=status,
        annotations={"update": update_doc},
    )
    version = engine.commits.commit(draft)
    promoted = None
    if passed and promote:
        engine.refs.promote(version.rev, promote, f"update passed its gate: {reason}")
        promoted = promote
    return UpdateResult(
        version,
        parent,
        strategy,
        rule.text,
        passed,
        reason,
        parent_scores,
        cand_scores,
        promoted,
        validation=validation,
        contradiction=tuple(contradicted),
        accepted_contradiction=bool(contradicted) and accept_contradicting_data,
        holdout_dataset=stored,
        notes=tuple(notes),
    )
