"""What a policy does when a rule fires — for the server's live windows and for
scheduled checks alike: describe the evidence, roll the alias back, update, alert.

A rule with ``action = "update"`` trains a candidate from the alias's version on
labelled data — the traffic the server has seen (predictions joined to their late
labels), or a scheduled check's labelled batch — gates it against that version, and
moves the alias if it passes. Live rows are stored first as a dataset version
(``<model>-feedback``), so the candidate's lineage names exactly what it learned from.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelkeep.errors import ModelkeepError

if TYPE_CHECKING:
    from modelkeep._engine import Engine
    from modelkeep.monitor.policy import Firing, Rule

log = logging.getLogger("modelkeep.monitor")


def evidence_of(firing: Firing, rev: str, source: str = "live") -> tuple[str, dict[str, Any]]:
    """The one-line reason and the evidence (windows or reports, values, bound)."""
    rule = firing.rule
    cmp = "<" if rule.below is not None else ">"
    values = ", ".join(f"{v:.4g}" for v in firing.values)
    what = "window(s)" if source == "live" else f"report(s) of {source}"
    text = (
        f"policy {rule.name!r}: {rule.metric} {values} {cmp} {firing.bound:.4g} in "
        f"{what} {', '.join(f'#{w}' for w in firing.windows)} of {rev}"
    )
    evidence: dict[str, Any] = {
        "rule": rule.name,
        "metric": rule.metric,
        "windows": firing.windows,
        "values": firing.values,
        "bound": firing.bound,
        "version": rev,
        "action": rule.action,
        "source": source,
    }
    return text, evidence


def moved(engine: Engine, model: str, alias: str, judged: str) -> str | None:
    """Why not to act: the alias no longer names the version the evidence is about
    (someone, or another server or daemon, already acted). Rolling back again would
    undo that rollback."""
    return _moved(alias, engine.versions.resolve(f"{model}@{alias}").rev, judged)


def _moved(alias: str, now: str, judged: str) -> str | None:
    return None if now == judged else f"@{alias} is {now} now, no longer {judged}"


def rollback(engine: Engine, model: str, alias: str, why: str, judged: str) -> str:
    try:
        reason = moved(engine, model, alias, judged)
        if reason is not None:
            return f"no rollback: {reason}"
        before, ref = engine.refs.rollback(f"{model}@{alias}", message=why)
    except ModelkeepError as exc:
        return f"could not roll back: {exc}"
    return f"rolled back {model}:{before} → {model}:{ref.version}"


def post(url: str, evidence: dict[str, Any]) -> None:
    """The alert webhook: POST the evidence; a failing hook is logged, never raised."""
    import httpx

    try:
        httpx.post(url, json=evidence, timeout=5.0)
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        log.warning("alert webhook %s failed: %s", url, exc)


def feedback_frame(
    labelled: list[tuple[int, Any, Any]], columns: list[str] | None, target: str
) -> Any:
    """One table of (inputs…, target) from the server's labelled requests."""
    import numpy as np
    import pandas as pd

    parts = []
    for _version, x, truth in labelled:
        if hasattr(x, "columns"):
            part = x.reset_index(drop=True).copy()
        else:
            arr = np.asarray(x)
            part = pd.DataFrame(arr.reshape(len(arr), -1), columns=columns)
        part[target] = np.asarray(truth).ravel()
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=[*(columns or []), target])
    return pd.concat(parts, ignore_index=True)


def update_from_feedback(
    engine: Engine,
    model: str,
    alias: str,
    rule: Rule,
    labelled: list[tuple[int, Any, Any]],
    columns: list[str] | None,
    why: str,
    judged: str,
) -> tuple[str, dict[str, Any]]:
    """The rule's update on the server's labelled traffic (stored as a dataset first)."""
    version = engine.versions.resolve(f"{model}@{alias}")
    reason = _moved(alias, version.rev, judged)
    if reason is not None:
        return f"no update: {reason}", {}
    target = version.artifact.get("target")
    if not target:
        return (
            f"cannot update: {version.rev} records no label column (commit it with "
            "target=… / --target)",
            {},
        )
    rows = sum(len(t) for _, _, t in labelled)
    if rows < rule.min_rows:
        return f"no update: {rows} labelled row(s), the rule needs {rule.min_rows}", {}
    frame = feedback_frame(labelled, columns, target)
    try:
        with tempfile.TemporaryDirectory(prefix="modelkeep-feedback-") as tmp:
            path = Path(tmp) / "feedback.csv"
            frame.to_csv(path, index=False)
            data = engine.commits.data_add(f"{model}-feedback", path, message=why)
    except ModelkeepError as exc:
        return f"update failed: {exc}", {"rows": len(frame)}
    return update(engine, model, alias, rule, data.rev, target, why, judged, rows=len(frame))


def update(
    engine: Engine,
    model: str,
    alias: str,
    rule: Rule,
    data: str,
    target: str,
    why: str,
    judged: str,
    rows: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """Train, gate and (if the rule says so) promote; returns a one-line outcome and
    its details. A failed update is an outcome to record, never an exception."""
    try:
        # Checked again here: storing the feedback rows took time, and the alias may
        # have moved meanwhile.
        reason = moved(engine, model, alias, judged)
        if reason is not None:
            return f"no update: {reason}", {}
        from modelkeep.update import run_update

        result = run_update(
            engine,
            f"{model}@{alias}",
            data=data,
            target=target,
            strategy=rule.strategy,
            gate=rule.gate,
            promote=alias if rule.promote else None,
            message=f"{rule.strategy} update by {why}",
        )
    except ModelkeepError as exc:
        return f"update failed: {exc}", {"data": data}
    details: dict[str, Any] = {
        "dataset": data,
        "rows": rows,
        "candidate": result.candidate.rev,
        "passed": result.passed,
        "reason": result.reason,
        "promoted": result.promoted,
    }
    refused = bool(result.contradiction) and not result.accepted_contradiction
    if refused:
        details["contradiction"] = list(result.contradiction)
    if result.promoted:
        outcome = f"updated: {result.candidate.rev} passed its gate and is now @{alias}"
    elif result.passed:
        outcome = f"updated: {result.candidate.rev} passed its gate (not promoted)"
    elif refused:
        # Not the gate's verdict: the data was refused before the gate could count
        # (the parent scores far below its own record on it).
        outcome = (
            f"update refused: the new data contradicts {result.parent.rev} "
            f"({'; '.join(result.contradiction)}: flipped labels, a broken join, a concept "
            f"shift?); {result.candidate.rev} is kept as rejected and @{alias} did not move"
        )
    else:
        outcome = f"update rejected: {result.candidate.rev} failed its gate ({result.reason})"
    return outcome, details
