"""MLflow's side of ``benchmarks/engines.py``, run by the python of a separate venv.

MLflow is not installed beside modelkeep (its pins would move ours): ``engines.py``
makes a venv with ``mlflow psycopg2-binary boto3 safetensors`` and runs this script
with that venv's python, one task per process. The task comes as JSON on stdin; the
result goes back as one JSON line on stdout, prefixed ``RESULT ``. MLflow's own output
goes to stderr. Nothing here imports modelkeep.

Tasks:

- ``w1``: an experiment whose artifact root is ``artifact_root`` (``s3://…``); for each
  file, a run that logs it with ``mlflow.log_artifact`` and a model version registered
  from the run's artifact URI (``MlflowClient().create_model_version``), each timed;
  then ``mlflow.artifacts.download_artifacts`` of one version into a fresh folder, timed.
- ``load``: download one version and load its tensors (``safetensors.numpy``): what a
  new process does to use a version. The caller times the whole process.
- ``registry``: a registered model of ``count`` versions (one through the API, the rest
  copied in SQL in one statement, as the modelkeep side builds its rows), then the
  median time of setting an alias, resolving it, getting a version and searching the
  newest 100 versions.

The environment names the servers (all on 127.0.0.1): MLFLOW_S3_ENDPOINT_URL and the
AWS_* credentials for the S3 emulator; the tracking URI is a ``postgresql://`` URL given
in the task (MLflow's SQL store, no tracking server).
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def _psycopg2(url: str) -> str:
    """SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; this venv has psycopg2."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql+psycopg2://{rest}" if sep and scheme == "postgresql" else url


def _client(tracking_uri: str) -> Any:
    import mlflow
    from mlflow import MlflowClient

    tracking_uri = _psycopg2(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def w1(task: dict[str, Any]) -> dict[str, Any]:
    import mlflow

    setup = time.perf_counter()
    client = _client(task["tracking_uri"])
    experiment = mlflow.create_experiment("w1", artifact_location=task["artifact_root"])
    client.create_registered_model(task["model"])
    setup_s = time.perf_counter() - setup
    commits = []
    for i, path in enumerate(task["files"], 1):
        start = time.perf_counter()
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.log_artifact(path, artifact_path="model")
            mv = client.create_model_version(
                task["model"], f"{run.info.artifact_uri}/model", run_id=run.info.run_id
            )
        commits.append(time.perf_counter() - start)
        if int(mv.version) != i:
            raise RuntimeError(f"expected version {i}, MLflow made {mv.version}")
        print(f"[mlflow] v{i}: {commits[-1]:.3f} s", file=sys.stderr, flush=True)
    start = time.perf_counter()
    out = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{task['model']}/{task['restore_version']}",
        dst_path=task["restore_dest"],
    )
    restore_s = time.perf_counter() - start
    return {
        "setup_seconds": setup_s,
        "commit_seconds": commits,
        "restore_seconds": restore_s,
        "restored": str(out),
    }


def load(task: dict[str, Any]) -> dict[str, Any]:
    import mlflow
    from safetensors.numpy import load_file

    _client(task["tracking_uri"])
    out = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{task['model']}/{task['version']}", dst_path=task["dest"]
        )
    )
    files = [out] if out.is_file() else sorted(out.rglob("*.safetensors"))
    tensors = {k: v for f in files for k, v in load_file(str(f)).items()}
    return {"tensors": len(tensors), "bytes": sum(t.nbytes for t in tensors.values())}


def _median_ms(fn: Any, runs: int, budget: float) -> dict[str, Any]:
    fn()  # warm: statements compiled, connections in the pool
    times: list[float] = []
    deadline = time.perf_counter() + budget
    while len(times) < runs and (len(times) < 3 or time.perf_counter() < deadline):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"ms": statistics.median(times) * 1000, "runs": len(times)}


def registry(task: dict[str, Any]) -> dict[str, Any]:
    from sqlalchemy import create_engine, text

    name, count = task["model"], int(task["count"])
    runs, budget = int(task["runs"]), float(task["budget_seconds"])
    start = time.perf_counter()
    client = _client(task["tracking_uri"])
    client.create_registered_model(name)
    client.create_model_version(name, task["source"])
    migrate_s = time.perf_counter() - start

    # Version 1's row copied as versions 2..count in one statement, as engines.py builds
    # modelkeep's rows: registering 100,000 versions one by one would take the run hours.
    start = time.perf_counter()
    engine = create_engine(_psycopg2(task["tracking_uri"]))
    with engine.begin() as conn:
        cols = [
            r[0]
            for r in conn.execute(
                text(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'model_versions' ORDER BY ordinal_position"
                )
            )
        ]
        exprs = {"version": "n", "creation_time": "creation_time + n",
                 "last_updated_time": "last_updated_time + n"}  # fmt: skip
        select = ", ".join(exprs.get(c, c) for c in cols)
        conn.execute(
            text(
                f"INSERT INTO model_versions ({', '.join(cols)}) SELECT {select} "
                "FROM model_versions, generate_series(2, :count) AS n "
                "WHERE name = :name AND version = 1"
            ),
            {"count": count, "name": name},
        )
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    engine.dispose()
    build_s = time.perf_counter() - start

    targets = [count - i for i in range(0, min(count, 50))]
    moves = iter(targets * (runs // len(targets) + 2))

    def set_alias() -> None:
        client.set_registered_model_alias(name, "production", next(moves))

    def newest() -> None:
        page = client.search_model_versions(
            f"name = '{name}'", max_results=100, order_by=["version_number DESC"]
        )
        if len(page) != min(100, count):
            raise RuntimeError(f"expected 100 versions, got {len(page)}")

    figures = {
        "alias set": _median_ms(set_alias, runs, budget),
        "alias resolve": _median_ms(
            lambda: client.get_model_version_by_alias(name, "production"), runs, budget
        ),
        "version show": _median_ms(
            lambda: client.get_model_version(name, str(count // 2)), runs, budget
        ),
        "newest 100": _median_ms(newest, runs, budget),
    }
    return {"count": count, "setup_seconds": migrate_s, "build_seconds": build_s,
            "figures": figures}  # fmt: skip


def main() -> int:
    task = json.loads(sys.stdin.read())
    kind = task["task"]
    handlers = {"w1": w1, "load": load, "registry": registry}
    result = handlers[kind](task)
    result["max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    import mlflow

    result["mlflow"] = mlflow.__version__
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
