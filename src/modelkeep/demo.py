"""`modelkeep demo`: a realistic session on a throw-away repository.

Trains small scikit-learn models, commits them with lineage, promotes, rolls back
and branches, printing each step as the command a user would type.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelkeep.errors import UsageError
from modelkeep.graph import graph_lines, labels_by_version
from modelkeep.repo import Repo

if TYPE_CHECKING:
    from collections.abc import Callable


def _train(kind: str, seed: int = 0) -> tuple[Any, dict[str, Any], dict[str, float], Any]:
    try:
        import numpy as np
        from sklearn.datasets import make_classification
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import accuracy_score, f1_score
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise UsageError(
            "the demo trains scikit-learn models: install them with "
            "`pip install 'modelkeep[sklearn]'`"
        ) from None
    x, y = make_classification(n_samples=4000, n_features=20, n_informative=8, random_state=seed)
    x_train, x_test, y_train, y_test = train_test_split(x, y, random_state=seed)
    params: dict[str, Any]
    if kind == "logreg":
        params = {"model": "LogisticRegression", "C": 0.05, "max_iter": 500}
        model = LogisticRegression(C=0.05, max_iter=500)
    else:
        params = {"model": "RandomForestClassifier", "n_estimators": 60, "max_depth": 10}
        model = RandomForestClassifier(n_estimators=60, max_depth=10, random_state=seed)
    model.fit(x_train, y_train)
    pred = model.predict(x_test)
    metrics = {
        "accuracy": round(float(accuracy_score(y_test, pred)), 4),
        "f1": round(float(f1_score(y_test, pred)), 4),
    }
    data = np.column_stack([x_train, y_train])
    return model, params, metrics, data


def _save(model: Any, path: Path) -> None:
    import skops.io as sio

    sio.dump(model, path)


def run_demo(keep: Path | None, say: Callable[[str], None]) -> None:
    """Run the session in ``keep`` (or a temp folder, removed afterwards)."""
    import numpy as np

    workdir = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="modelkeep-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        _session(workdir, say, np)
    finally:
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            say(f"\nThe repository is kept in {workdir}: try `cd {workdir} && modelkeep log churn`")


def _session(workdir: Path, say: Callable[[str], None], np: Any) -> None:
    say(f"$ cd {workdir} && modelkeep init")
    repo = Repo.init(workdir)
    train_dir = workdir / "train"
    train_dir.mkdir()

    model, params, metrics, data = _train("logreg")
    data_file = workdir / "train.csv"
    np.savetxt(data_file, data, delimiter=",", fmt="%.6f")
    _save(model, train_dir / "model.skops")
    (train_dir / "config.json").write_text('{"features": 20, "target": "label"}\n')
    v1 = repo.commit(
        "churn",
        train_dir,
        "logistic regression baseline",
        params=params,
        metrics=metrics,
        data=[data_file],
    )
    say(
        f"$ modelkeep commit churn train/ -m '{v1.message}' --data train.csv "
        f"--metric f1={metrics['f1']}"
    )
    say(
        f"  → {v1.rev}: {v1.file_count} files, f1={v1.metrics['f1']}, "
        f"dataset blake3:{v1.datasets[0].content_id[:12]}"
    )

    model, params, metrics, _ = _train("forest")
    _save(model, train_dir / "model.skops")
    v2 = repo.commit(
        "churn",
        train_dir,
        "random forest: better f1",
        params=params,
        metrics=metrics,
        data=[data_file],
    )
    say(f"$ modelkeep commit churn train/ -m '{v2.message}'")
    say(f"  → {v2.rev}: f1={v2.metrics['f1']} (parent {v1.rev})")

    d = repo.diff(v1.rev, v2.rev)
    say(f"$ modelkeep diff {v1.rev} {v2.rev}")
    for f in d.changed:
        say(f"  changed {f.path}: {f.size_before} → {f.size_after} bytes")
    for k, (a, b) in d.metrics.items():
        say(f"  metric {k}: {a} → {b}")

    repo.promote(v1.rev, "production", "baseline goes live")
    say(f"$ modelkeep promote {v1.rev} production")
    repo.promote(v2.rev, "production", "forest beats the baseline offline")
    say(f"$ modelkeep promote {v2.rev} production -m 'forest beats the baseline offline'")
    repo.rollback("churn@production", message="latency too high in production")
    now = repo.resolve("churn@production")
    say("$ modelkeep rollback churn@production -m 'latency too high in production'")
    say(f"  → churn@production is {now.rev} again")

    say("$ modelkeep history churn@production")
    for e in repo.history("churn@production"):
        before = "-" if e.before is None else e.before
        say(f"  {e.action:<9} {before} → {e.after}  {e.message}")

    out = workdir / "restored"
    repo.checkout(v1.rev, out)
    st = repo.status(v1.rev, out)
    say(f"$ modelkeep checkout {v1.rev} restored/ && modelkeep status {v1.rev} restored/")
    say(f"  → {'matches' if st.clean else 'DIFFERS FROM'} {v1.rev} byte for byte")

    repo.branch("churn", "experiment", v1.rev)
    say(f"$ modelkeep branch churn experiment --from {v1.rev}")
    model, params, metrics, _ = _train("logreg", seed=1)
    _save(model, out / "model.skops")
    v3 = repo.commit(
        "churn",
        out,
        "retrain baseline on a new seed",
        branch="experiment",
        params=params,
        metrics=metrics,
    )
    say(f"$ modelkeep commit churn restored/ --branch experiment -m '{v3.message}'")
    say(
        f"  → {v3.rev} on experiment, parent {v3.parents}; "
        f"main still at {repo.resolve('churn').rev}"
    )

    repo.tag(v2.rev, "validated")
    say(f"$ modelkeep tag {v2.rev} validated")

    say("$ modelkeep log churn --graph")
    labels = labels_by_version(repo.refs("churn"))
    for line in graph_lines(repo.log("churn"), labels):
        say("  " + line)
    report = repo.fsck()
    say("$ modelkeep fsck")
    say(f"  → {'ok' if report.ok else 'PROBLEMS'}: {report.objects_checked} objects verified")
