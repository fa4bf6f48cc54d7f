"""A periodic check: a batch of traffic (or a labelled sample) against a version's
reference profile — drift per feature and for predictions, metrics when labelled —
stored as a report with the version."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelkeep.artifact import features_of
from modelkeep.errors import DataFormatError, Hint, PathNotFoundError, UsageError
from modelkeep.evaluation import as_fitted, evaluate
from modelkeep.formats import tabular
from modelkeep.formats.predict import predict, task_of
from modelkeep.monitor.drift import compare
from modelkeep.monitor.records import Records
from modelkeep.profiles import Profile

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping

    from modelkeep._engine import Engine
    from modelkeep.registry.records import Version


def reference_of(engine: Engine, version: Version) -> Profile:
    """The version's reference profile, or an error that says how to give it one."""
    reference = engine.versions.profile(version)
    if reference is None:
        raise UsageError(
            f"{version.rev} has no reference profile to compare with: commit the model with "
            "its training data and label column",
            hint=Hint(
                cli="commit it with --data FILE --target COL",
                api="commit it with data=['FILE'], target='COL'",
            ),
        )
    return reference


def run_check(
    engine: Engine,
    rev: str,
    data: str | os.PathLike[str],
    *,
    target: str | None = None,
    thresholds: Mapping[str, Mapping[str, float]] | None = None,
    store: bool = True,
    source: str | None = None,
) -> dict[str, Any]:
    """Check ``data`` against the reference profile of the version ``rev`` names.

    ``source`` is what the stored report says it judged (default: the data path)."""
    version = engine.versions.resolve(rev)
    reference = reference_of(engine, version)
    if not Path(data).is_file():
        raise PathNotFoundError(f"{data}: no such data file")
    frame = tabular.read(Path(data))
    if not hasattr(frame, "columns") or not len(frame):
        raise DataFormatError(f"{data}: a monitoring batch is a non-empty table")
    features = features_of(frame, version.artifact, target)
    missing = [f for f in reference.features if f not in features.columns]
    if missing:
        raise DataFormatError(
            f"{data}: lacks the feature column(s) {', '.join(missing)} of {version.rev}"
        )
    # The model's inputs in the batch's order (a signature's, when there is one): a
    # format-1 reference lists its features sorted by name, not in the model's order.
    features = features[[c for c in features.columns if c in reference.features]]
    model = engine.versions.load(version)
    # As the model was fitted (named columns, or bare values): a model fitted on an
    # array warns at every call given a table, about our plumbing, not the user's data.
    preds = predict(model, as_fitted(model, features))
    # On the reference's grids: the batch lines up with it bin for bin, however few its rows.
    current = Profile.of(features, preds, like=reference)
    report = compare(reference, current, thresholds)
    # The batch's own profile, so its distributions can be drawn against the reference later.
    body: dict[str, Any] = {
        "version": version.rev,
        "drift": report.to_dict(),
        "profile": current.to_json(),
    }
    if target is not None:
        task = version.artifact.get("task") or task_of(model)
        body["metrics"] = evaluate(model, features, frame[target], task)
        body["task"] = task
    if store:
        body["id"] = Records(engine).record_report(
            version,
            kind="batch",
            source=source or str(data),
            drifted=report.drifted,
            body=body,
        )
    return body
