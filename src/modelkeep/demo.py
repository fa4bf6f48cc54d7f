"""`modelkeep demo`: a realistic session on a throw-away repository.

Trains small scikit-learn models, commits them with lineage, promotes, rolls back
and branches, printing each step as the command a user would type.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelkeep.errors import MissingDependencyError, UsageError
from modelkeep.graph import graph_lines, labels_by_version
from modelkeep.repo import Repo

if TYPE_CHECKING:
    from collections.abc import Callable


def _frames(seed: int = 0) -> tuple[Any, Any]:
    """A churn-like table: 20 numeric features and a label, split train/test."""
    try:
        import pandas as pd
        from sklearn.datasets import make_classification
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise UsageError(
            "the demo trains scikit-learn models on pandas tables: install them with "
            "`pip install 'modelkeep[sklearn,data]'`"
        ) from None
    x, y = make_classification(n_samples=4000, n_features=20, n_informative=8, random_state=seed)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(20)])
    frame["label"] = y
    train, test = train_test_split(frame, random_state=seed)
    return train, test


def _train(
    kind: str, train: Any, test: Any, seed: int = 0
) -> tuple[Any, dict[str, Any], dict[str, float]]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    params: dict[str, Any]
    if kind == "logreg":
        params = {"model": "LogisticRegression", "C": 0.05, "max_iter": 500}
        model: Any = LogisticRegression(C=0.05, max_iter=500, random_state=seed)
    else:
        params = {"model": "RandomForestClassifier", "n_estimators": 60, "max_depth": 10}
        model = RandomForestClassifier(n_estimators=60, max_depth=10, random_state=seed)
    model.fit(train.drop(columns="label"), train["label"])
    pred = model.predict(test.drop(columns="label"))
    metrics = {
        "accuracy": round(float(accuracy_score(test["label"], pred)), 4),
        "f1": round(float(f1_score(test["label"], pred)), 4),
    }
    return model, params, metrics


def run_demo(keep: Path | None, say: Callable[[str], None]) -> None:
    """Run the session in ``keep`` (or a temp folder, removed afterwards)."""
    workdir = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="modelkeep-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        _session(workdir, say)
    finally:
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
            say(
                "\nThe demo's folder is removed: `modelkeep demo --keep DIR` keeps it "
                "(report.html too)"
            )
        else:
            say(f"\nThe repository is kept in {workdir}: try `cd {workdir} && modelkeep log churn`")


def _session(workdir: Path, say: Callable[[str], None]) -> None:
    train, test = _frames()
    say(f"$ cd {workdir} && modelkeep init")
    repo = Repo.init(workdir)
    train.to_csv(workdir / "train.csv", index=False)
    test.to_csv(workdir / "test.csv", index=False)
    data = repo.data_add("churn-train", workdir / "train.csv", "first export of the churn table")
    say(f"$ modelkeep data add churn-train train.csv   → {data.rev}: {data.artifact['rows']} rows")

    example = test.drop(columns="label").head(5)
    model, params, metrics = _train("logreg", train, test)
    v1 = repo.commit(
        "churn",
        model,
        "logistic regression baseline",
        params=params,
        metrics=metrics,
        input_example=example,
        data=[data.rev],
        target="label",
    )
    say(
        f"$ python train.py   # repo.commit('churn', model, input_example=..., data=['{data.rev}'])"
    )
    sig = v1.artifact["signature"]
    profile = repo.profile(v1)
    rows = profile.rows if profile else 0
    say(
        f"  → {v1.rev}: {v1.format} {v1.artifact['class'].rsplit('.', 1)[-1]}, "
        f"f1={metrics['f1']}, {len(sig['inputs']['columns'])} input columns, "
        f"reference profile of {rows} rows"
    )

    model, params, metrics = _train("forest", train, test)
    v2 = repo.commit(
        "churn",
        model,
        "random forest: better f1",
        params=params,
        metrics=metrics,
        input_example=example,
        data=[data.rev],
        target="label",
    )
    say(
        f"  → {v2.rev}: {v2.artifact['class'].rsplit('.', 1)[-1]}, f1={metrics['f1']} "
        f"(parent {v1.rev})"
    )

    d = repo.diff(v1.rev, v2.rev, data=workdir / "test.csv", target="label")
    say(f"$ modelkeep diff {v1.rev} {v2.rev} --data test.csv --target label")
    for k, (a, b) in d.metrics.items():
        say(f"  metric {k}: {a} → {b}")
    for k, (a, b) in d.model.get("hyperparameters", {}).items():
        say(f"  hyper-parameter {k}: {a} → {b}")
    if d.predictions:
        say(
            f"  predictions agree on {100 * d.predictions['agreement']:.1f} % of "
            f"{d.predictions['rows']} rows"
        )

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

    served = repo.load("churn@production")
    say("$ python -c \"repo.load('churn@production').predict(rows)\"")
    say(f"  → {type(served).__name__} predicts {served.predict(example).tolist()}")

    out = workdir / "restored"
    repo.checkout(v1.rev, out)
    st = repo.status(v1.rev, out)
    say(f"$ modelkeep checkout {v1.rev} restored/ && modelkeep status {v1.rev} restored/")
    say(f"  → {'matches' if st.clean else 'DIFFERS FROM'} {v1.rev} byte for byte")

    repo.branch("churn", "experiment", v1.rev)
    say(f"$ modelkeep branch churn experiment --from {v1.rev}")
    model, params, metrics = _train("logreg", train, test, seed=1)
    v3 = repo.commit(
        "churn",
        model,
        "baseline, new seed",
        branch="experiment",
        params=params,
        metrics=metrics,
        input_example=example,
    )
    say(f"$ modelkeep commit churn ... --branch experiment -m '{v3.message}'")
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
    _closed_loop(repo, test, say)


POLICY = """
[[rule]]
name = "quality drop"
metric = "f1"
below = "reference - 0.05"
windows = 2
action = "rollback"
cooldown = "0s"
"""


def _closed_loop(repo: Repo, test: Any, say: Callable[[str], None]) -> None:
    """Serve @production, watch live quality fall, and let the policy roll it back."""
    try:
        import httpx

        from modelkeep.serve.run import serve_in_thread
    except ImportError:
        say("\n(install modelkeep[serve] to see serving and the monitoring loop)")
        return
    say("\n# Serving and monitoring: the loop closes")
    repo.promote("churn:2", "production", "forest back in production")
    say("$ modelkeep promote churn:2 production")
    repo.set_policy("churn", POLICY)
    say("$ modelkeep monitor policy churn policy.toml   # f1 < reference - 0.05 twice → rollback")
    columns = [c for c in test.columns if c != "label"]
    # Labels can move production (through the policy): the server takes them only from
    # clients holding its feedback token.
    token = secrets.token_urlsafe(24)
    with serve_in_thread(
        repo.root, "churn@production", interval=0.1, window_rows=200, feedback_token=token
    ) as (base, follower):
        say(
            f"$ modelkeep serve churn@production --feedback-token-file token   "
            f"# listening on {base}"
        )

        def traffic(rows: Any, flip: bool) -> int:
            sent = 0
            auth = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=base, timeout=10, headers=auth) as client:
                for start in range(0, len(rows), 25):
                    batch = rows.iloc[start : start + 25]
                    r = client.post("/predict", json={"inputs": batch[columns].to_numpy().tolist()})
                    r.raise_for_status()
                    truth = batch["label"].to_numpy()
                    client.post(
                        "/v2/models/churn/feedback",
                        json={
                            "id": r.json()["id"],
                            "value": (1 - truth if flip else truth).tolist(),
                        },
                    ).raise_for_status()
                    sent += 1
            return sent

        n = traffic(test.iloc[:500], flip=False)
        say(f"  {n} requests like the training data, true labels fed back: quality holds")
        deadline = time.monotonic() + 30
        sent = 0
        while repo.resolve("churn@production").number == 2 and time.monotonic() < deadline:
            sent += traffic(test.iloc[500:900], flip=True)
            time.sleep(0.3)
        say(f"  {sent} more requests whose labels disagree with the model: live f1 collapses")
    now = repo.resolve("churn@production")
    for action in follower.actions:
        say(
            f"  policy {action['rule']!r} fired on windows {action['windows']}: {action['outcome']}"
        )
    say(f"  → churn@production is {now.rev}; not one request failed")
    rollback = next(e for e in repo.history("churn@production") if e.action == "rollback")
    say("$ modelkeep history churn@production")
    say(f"  rollback  {rollback.before} → {rollback.after}  {rollback.message}")
    try:
        page = repo.report_html("churn:2")
    except MissingDependencyError:
        say("\n(install modelkeep[report] to see the HTML monitoring report)")
        return
    out = repo.root / "report.html"
    out.write_text(page)
    say("$ modelkeep monitor report churn:2 --html report.html")
    say(
        f"  → {out} ({len(page) // 1024} KB, self-contained): live windows vs the "
        "reference, f1 over time, the rollback marked"
    )
