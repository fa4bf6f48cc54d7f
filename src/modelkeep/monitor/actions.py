"""What a policy does besides alerting: the ``update`` action.

A rule with ``action = "update"`` trains a candidate from the served version on the
labelled traffic the server has seen (predictions joined to their late labels), gates
it against that version, and moves the alias if it passes. The rows are stored first
as a dataset version (``<model>-feedback``), so the candidate's lineage names exactly
what it learned from.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelkeep.errors import ModelkeepError

if TYPE_CHECKING:
    from modelkeep.monitor.policy import Rule
    from modelkeep.repo import Repo


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
    repo: Repo,
    model: str,
    alias: str,
    rule: Rule,
    labelled: list[tuple[int, Any, Any]],
    columns: list[str] | None,
    why: str,
) -> tuple[str, dict[str, Any]]:
    """Run the rule's update; returns a one-line outcome and its details. Never raises
    a modelkeep error: a failed update is an outcome to record, not a server crash."""
    version = repo.resolve(f"{model}@{alias}")
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
            data = repo.data_add(f"{model}-feedback", path, message=why)
        result = repo.update(
            f"{model}@{alias}",
            data=data.rev,
            target=target,
            strategy=rule.strategy,
            gate=rule.gate,
            promote=alias if rule.promote else None,
            message=f"{rule.strategy} update by {why}",
        )
    except ModelkeepError as exc:
        return f"update failed: {exc}", {"rows": len(frame)}
    details = {
        "dataset": data.rev,
        "rows": len(frame),
        "candidate": result.candidate.rev,
        "passed": result.passed,
        "reason": result.reason,
        "promoted": result.promoted,
    }
    if result.promoted:
        outcome = f"updated: {result.candidate.rev} passed its gate and is now @{alias}"
    elif result.passed:
        outcome = f"updated: {result.candidate.rev} passed its gate (not promoted)"
    else:
        outcome = f"update rejected: {result.candidate.rev} failed its gate ({result.reason})"
    return outcome, details
