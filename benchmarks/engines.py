"""Engines benchmark (issue 13): modelkeep on PostgreSQL and S3 against MLflow, same servers.

    python benchmarks/engines.py [--quick] [--mib 512] [--versions 10]
                                 [--registry 10000,100000] [--mlflow-versions N,N]
                                 [--runs 100] [--workdir DIR] [--keep] [--json]
                                 [--skip-w1] [--skip-registry] [--skip-mlflow]

``--quick``: a 64 MiB file and registries of 1,000 and 10,000 versions (under 2 minutes
on 2 cores); the default (512 MiB; 10,000 and 100,000 versions) about 5 minutes, with
about 10 GiB under the work folder at its peak, up to 5 GiB of moto's temporary files
and 2 GiB resident in moto; the first run adds a few minutes to install MLflow.

Starts PostgreSQL and the moto S3 emulator (``tests/services.py``, both on 127.0.0.1
only) and measures everything in one run, so the ratios compare like with like:

W1, a safetensors file (``--mib``, 40 float32 tensors) in ``--versions`` versions, 4 of
its 40 tensors (10 %) new in each version after the first; the same files for every
configuration, made once under the work folder:

- modelkeep, SQLite + a folder (``Repo.init(path)``), PostgreSQL + a folder, and
  PostgreSQL + S3: ``Repo.commit`` of each version, then ``checkout`` of one version
  into a fresh folder (remote read cache emptied first) and a load in a new process
- MLflow, PostgreSQL backend store + the same S3 server as artifact store: a run with
  ``mlflow.log_artifact`` and ``MlflowClient().create_model_version`` per version;
  restore with ``mlflow.artifacts.download_artifacts``

  Targets, modelkeep PostgreSQL + S3 / MLflow:
    commit of a 10 %-changed version (median of versions 2..N)   ≤ 0.25
    bytes in the store after N versions (objects' sizes)         ≤ 0.3
    restore of one version into a fresh folder                   ≤ 0.5

Registry of one model at each ``--registry`` size, in-process, median of ``--runs``:
set an alias, resolve it, show a version (each ≤ 5 ms on PostgreSQL), the newest 100
versions (≤ 20 ms), flat from the smallest size to the largest (≤ 1.5 x). The same
operations on SQLite in the same run, and MLflow's (``set_registered_model_alias``,
``get_model_version_by_alias``, ``get_model_version``, ``search_model_versions`` of the
newest 100) on PostgreSQL at ``--mlflow-versions``. Versions are built by writing rows
straight into the registry tables in one transaction (modelkeep's and MLflow's alike):
committing 100,000 versions one by one would take hours and measure nothing reported.

MLflow runs in its own venv (``--mlflow-venv``, default WORKDIR/mlflow-venv; made with
``pip install mlflow psycopg2-binary boto3 safetensors`` on first use and kept for the
next run), driven through ``benchmarks/_engines_mlflow.py``: MLflow's pins would move
modelkeep's. Each configuration is measured on its own: one that fails prints its error
and the run goes on. moto keeps small objects in memory and spools those over ~5 MiB to
temporary files (MLflow's 10 x 512 MiB are 5 GiB of them): one configuration runs at a
time and its bucket is emptied after it. Nothing is tuned or dropped: page caches stay
as they are.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import modelkeep

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _bench import (
    CHANGED,
    N_TENSORS,
    Check,
    blake3_file,
    check_lines,
    ensure_venv,
    log,
    make_versions,
    mib,
    row,
    tree_bytes,
    workspace,
)
from _bench import W1_FILE as FILE_NAME
from _bench import W1_SEED as SEED

import services  # needs the path above

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

MODEL = "llm"
MLFLOW_SCRIPT = Path(__file__).resolve().parent / "_engines_mlflow.py"
MLFLOW_PACKAGES = ("mlflow", "psycopg2-binary", "boto3", "safetensors")

# Targets.
COMMIT_RATIO = 0.25
BYTES_RATIO = 0.3
RESTORE_RATIO = 0.5
OP_MS = 5.0
PAGE_MS = 20.0
FLAT_RATIO = 1.5
# MLflow's figures published for this machine (SQLite, one model of 10,000 versions).
MLFLOW_PUBLISHED = {"alias set": 237.0, "newest 100": 1087.0}

PG_S3 = "modelkeep PostgreSQL + S3"
MLFLOW = "MLflow PostgreSQL + S3"
OPS = ("alias set", "alias resolve", "version show", "newest 100")

# What the benchmark creates inside the work folder; nothing else is touched (the
# MLflow venv is kept for the next run: it takes minutes to install).
_CREATED = ("versions", "pg", "moto.log", "cache", "w1", "restore", "registry")


# -- servers ----------------------------------------------------------------------------


class Servers:
    """PostgreSQL and the S3 emulator, each started when first asked for."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self._pg: services.Postgres | None = None
        self._s3: services.S3Server | None = None
        self.moto_peak_bytes = 0

    @property
    def pg(self) -> services.Postgres:
        if self._pg is None:
            log("starting PostgreSQL on 127.0.0.1")
            self._pg = services.start_postgres(self.work / "pg")
        return self._pg

    @property
    def s3(self) -> services.S3Server:
        if self._s3 is None:
            log("starting the moto S3 server on 127.0.0.1")
            self._s3 = services.start_s3(self.work / "moto.log")
            os.environ.update(self._s3.env())  # modelkeep's S3 backend reads AWS_* here
        return self._s3

    def started(self, name: str) -> bool:
        return getattr(self, f"_{name}") is not None

    def moto_rss(self) -> int:
        """moto's peak resident memory so far (it holds every object in memory)."""
        if self._s3 is None:
            return self.moto_peak_bytes
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self._s3.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.moto_peak_bytes = int(line.split()[1]) * 1024
        return self.moto_peak_bytes

    def bucket_bytes(self, bucket: str, prefix: str = "") -> tuple[int, int]:
        """Bytes and count of the objects under ``prefix`` in ``bucket``."""
        client: Any = self.s3.client()
        total = count = 0
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                total += obj["Size"]
                count += 1
        return total, count

    def drop_bucket(self, bucket: str) -> None:
        """Delete every object of ``bucket`` and the bucket: moto frees the memory."""
        client: Any = self.s3.client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        client.delete_bucket(Bucket=bucket)

    def stop(self) -> None:
        if self._s3 is not None:
            self.moto_rss()
            self._s3.stop()
            self._s3 = None
        if self._pg is not None:
            self._pg.stop()
            self._pg = None


# -- MLflow, in its own venv ---------------------------------------------------------------


class MlflowVenv:
    """The venv MLflow runs in, made on first use; tasks go to ``_engines_mlflow.py``."""

    def __init__(self, folder: Path, servers: Servers, work: Path) -> None:
        self.folder = folder
        self.python = folder / "bin" / "python"
        self.servers = servers
        self.work = work
        self.peak_rss = 0
        self._ready = False

    def ensure(self) -> None:
        if not self._ready:
            ensure_venv(self.folder, MLFLOW_PACKAGES, "mlflow, psycopg2, boto3, safetensors")
            self._ready = True

    def env(self) -> dict[str, str]:
        s3 = self.servers.s3
        return {
            **os.environ,
            **s3.env(),
            "MLFLOW_S3_ENDPOINT_URL": s3.endpoint,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata lookups
            "NO_PROXY": "127.0.0.1,localhost",
        }

    def run(self, task: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        """Run one task in a new process; its wall time and its result."""
        self.ensure()
        errors = self.work / "mlflow-stderr.log"
        start = time.perf_counter()
        with open(errors, "w") as err:
            proc = subprocess.run(
                [str(self.python), str(MLFLOW_SCRIPT)], input=json.dumps(task),
                env=self.env(), stdout=subprocess.PIPE, stderr=err, text=True,
            )  # fmt: skip
        seconds = time.perf_counter() - start
        stderr = errors.read_text()
        errors.unlink()
        results = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not results:
            raise RuntimeError(f"MLflow task {task['task']} failed: {_tail(stderr)}")
        result: dict[str, Any] = json.loads(results[-1].removeprefix("RESULT "))
        self.peak_rss = max(self.peak_rss, int(result.get("max_rss_bytes", 0)))
        return seconds, result


def _tail(text: str, lines: int = 3) -> str:
    kept = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(kept[-lines:]) or "(no output)"


def _error(exc: BaseException) -> str:
    log("".join(traceback.format_exception(exc)).rstrip())
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:400]}"


# -- W1: the versions of one file --------------------------------------------------------


@dataclass
class W1Result:
    name: str
    commit_seconds: list[float] = field(default_factory=list)
    stored_bytes: int | None = None
    stored_objects: int | None = None
    restore_seconds: float | None = None
    load_seconds: float | None = None  # a new process: start, import, restore, load
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def commit_changed(self) -> float | None:
        """Median commit of the versions after the first (a 10 %-changed file each)."""
        rest = self.commit_seconds[1:]
        return statistics.median(rest) if rest else None


def _clear_cache() -> None:
    cache = Path(os.environ["MODELKEEP_CACHE"])
    if cache.exists():
        shutil.rmtree(cache)


def modelkeep_w1(
    name: str,
    root: Path,
    where: dict[str, str],
    paths: Sequence[Path],
    restore: int,
    expected: str,
    stored: Callable[[modelkeep.Repo], tuple[int, int]],
    work: Path,
) -> W1Result:
    """Commit every version, count the stored bytes, restore one version, load it anew."""
    result = W1Result(name)
    repo = modelkeep.Repo.init(root, **where)  # type: ignore[arg-type]
    try:
        for number, path in enumerate(paths, 1):
            start = time.perf_counter()
            version = repo.commit(MODEL, path, f"v{number}")
            result.commit_seconds.append(time.perf_counter() - start)
            if version.number != number:
                raise RuntimeError(f"expected {MODEL}:{number}, commit made {version.rev}")
            log(f"  {name} v{number}: {result.commit_seconds[-1]:.3f} s")
        result.stored_bytes, result.stored_objects = stored(repo)
    finally:
        repo.close()

    _clear_cache()  # as another machine restores: nothing of this store read yet
    dest = work / "restore" / name.replace(" ", "-")
    with modelkeep.Repo(root) as repo:
        start = time.perf_counter()
        repo.checkout(f"{MODEL}:{restore}", dest)
        result.restore_seconds = time.perf_counter() - start
    if blake3_file(dest / FILE_NAME) != expected:
        raise RuntimeError(f"{dest / FILE_NAME} is not byte-identical to version {restore}")
    shutil.rmtree(dest)

    _clear_cache()
    code = (
        "import sys, modelkeep; t = modelkeep.Repo(sys.argv[1]).load(sys.argv[2]); "
        "assert len(t) == int(sys.argv[3])"
    )
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code, str(root), f"{MODEL}:{restore}", str(N_TENSORS)],
        check=True, capture_output=True,
    )  # fmt: skip
    result.load_seconds = time.perf_counter() - start
    return result


def mlflow_w1(
    venv: MlflowVenv,
    servers: Servers,
    paths: Sequence[Path],
    restore: int,
    expected: str,
    work: Path,
) -> W1Result:
    result = W1Result(MLFLOW)
    db = servers.pg.new_database("mlflow_w1")
    bucket = servers.s3.new_bucket("mlflow")
    dest = work / "restore" / "mlflow"
    try:
        _, out = venv.run(
            {
                "task": "w1",
                "tracking_uri": db,
                "artifact_root": f"s3://{bucket}/mlflow",
                "files": [str(p) for p in paths],
                "model": MODEL,
                "restore_version": restore,
                "restore_dest": str(dest),
            }
        )
        result.commit_seconds = out["commit_seconds"]
        result.restore_seconds = out["restore_seconds"]
        result.notes.append(f"MLflow {out['mlflow']}")
        found = sorted(dest.rglob(FILE_NAME))
        if len(found) != 1 or blake3_file(found[0]) != expected:
            raise RuntimeError(f"MLflow's download into {dest} is not version {restore}")
        shutil.rmtree(dest)
        result.stored_bytes, result.stored_objects = servers.bucket_bytes(bucket, "mlflow/")
        load_dest = work / "restore" / "mlflow-load"
        result.load_seconds, _ = venv.run(
            {"task": "load", "tracking_uri": db, "model": MODEL, "version": restore,
             "dest": str(load_dest)}
        )  # fmt: skip
        shutil.rmtree(load_dest, ignore_errors=True)
    finally:
        servers.moto_rss()
        servers.drop_bucket(bucket)
        servers.pg.drop_database(db)
    return result


def run_w1(
    args: argparse.Namespace, work: Path, servers: Servers, venv: MlflowVenv
) -> dict[str, Any]:
    log(f"W1: writing {args.versions} versions of a {args.mib} MiB safetensors file")
    files = make_versions(work / "versions", args.mib, args.versions)
    paths: list[Path] = files.pop("paths")
    restore = min(5, args.versions)
    expected = blake3_file(paths[restore - 1])
    results: list[W1Result] = []

    def folder_bytes(repo: modelkeep.Repo) -> tuple[int, int]:
        return tree_bytes(Path(repo.store_location))

    def attempt(name: str, fn: Callable[[], W1Result]) -> None:
        log(f"W1: {name}")
        start = time.perf_counter()
        try:
            results.append(fn())
        except Exception as exc:  # each configuration stands alone: report, go on
            results.append(W1Result(name, error=_error(exc)))
        log(f"W1: {name} took {time.perf_counter() - start:.1f} s")

    w1 = work / "w1"
    attempt(
        "modelkeep SQLite + folder",
        lambda: modelkeep_w1("modelkeep SQLite + folder", w1 / "sqlite", {}, paths, restore,
                             expected, folder_bytes, work),
    )  # fmt: skip

    def pg_folder() -> W1Result:
        db = servers.pg.new_database("mk_w1")
        try:
            where = {"db": db, "store": str(w1 / "pg-store")}
            return modelkeep_w1("modelkeep PostgreSQL + folder", w1 / "pg", where, paths,
                                restore, expected, folder_bytes, work)  # fmt: skip
        finally:
            servers.pg.drop_database(db)

    attempt("modelkeep PostgreSQL + folder", pg_folder)

    def pg_s3() -> W1Result:
        db = servers.pg.new_database("mk_w1s3")
        bucket = servers.s3.new_bucket("mk")
        try:
            where = {"db": db, "store": f"s3://{bucket}/repo", "s3_endpoint": servers.s3.endpoint}
            return modelkeep_w1(
                PG_S3,
                w1 / "pg-s3",
                where,
                paths,
                restore,
                expected,
                lambda _repo: servers.bucket_bytes(bucket, "repo/"),
                work,
            )
        finally:
            servers.moto_rss()
            servers.drop_bucket(bucket)
            servers.pg.drop_database(db)

    attempt(PG_S3, pg_s3)
    if not args.skip_mlflow:
        attempt(MLFLOW, lambda: mlflow_w1(venv, servers, paths, restore, expected, work))
    shutil.rmtree(work / "versions")
    return {"files": files, "restore_version": restore,
            "results": [asdict(r) | {"commit_changed_seconds": r.commit_changed}
                        for r in results]}  # fmt: skip


# -- the registry at 10,000 and 100,000 versions -------------------------------------------


def build_versions(repo: modelkeep.Repo, model: str, count: int) -> None:
    """A model of ``count`` versions: one committed, versions 2..count its row copied in
    one statement (the registry's own transaction, SQL text with named parameters)."""
    weights = repo.root / "weights.bin"
    weights.write_bytes(b"weights")
    repo.commit(model, weights, "version 1", metrics={"f1": 0.5}, params={"lr": 0.1})
    weights.unlink()
    with repo.registry.db.write() as tx:
        m = tx.scalar("SELECT id FROM models WHERE name = :name", {"name": model})
        v1 = tx.one("SELECT * FROM versions WHERE model_id = :m AND number = 1", {"m": m})
        json_object = "json_build_object" if tx.dialect == "postgresql" else "json_object"
        exprs = {
            "number": "seq.n",
            "message": "'version ' || seq.n",
            "metrics": f"{json_object}('f1', (seq.n % 1000) / 1000.0)",
        }
        cols = [c for c in v1._fields if c != "id"]
        select = ", ".join(exprs.get(c, f"v.{c}") for c in cols)
        tx.run(
            "WITH RECURSIVE seq(n) AS (SELECT 2 UNION ALL SELECT n + 1 FROM seq WHERE n < :count) "
            f"INSERT INTO versions ({', '.join(cols)}) SELECT {select} "
            "FROM versions AS v CROSS JOIN seq WHERE v.id = :v1",
            {"count": count, "v1": v1.id},
        )
        tx.run(
            "INSERT INTO version_parents (version_id, position, parent_id) "
            "SELECT v.id, 0, p.id FROM versions AS v JOIN versions AS p "
            "ON p.model_id = v.model_id AND p.number = v.number - 1 "
            "WHERE v.model_id = :m AND v.number >= 2",
            {"m": m},
        )
        tx.run(
            "UPDATE refs SET version_id = (SELECT id FROM versions WHERE model_id = :m "
            "AND number = :count) WHERE model_id = :m AND name = 'main'",
            {"m": m, "count": count},
        )
    # What autovacuum (PostgreSQL) would do within a minute of such a load.
    with repo.registry.db.write() as tx:
        tx.run("ANALYZE")


def median_ms(fn: Callable[[], object], runs: int, budget: float) -> dict[str, Any]:
    """Median of ``runs`` calls after one warm-up (at least 3, at most ``budget`` s)."""
    fn()
    times: list[float] = []
    deadline = time.perf_counter() + budget
    while len(times) < runs and (len(times) < 3 or time.perf_counter() < deadline):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"ms": statistics.median(times) * 1000, "runs": len(times)}


def registry_ops(repo: modelkeep.Repo, count: int, runs: int, budget: float) -> dict[str, Any]:
    targets = [count - i for i in range(min(count, 50))]
    moves = iter(targets * (runs // len(targets) + 2))

    def set_alias() -> None:
        repo.set_alias(f"{MODEL}@production", f"{MODEL}:{next(moves)}")

    def newest() -> None:
        page = repo.log(MODEL, limit=100)
        if len(page) != min(100, count):
            raise RuntimeError(f"expected 100 versions, got {len(page)}")

    return {
        "alias set": median_ms(set_alias, runs, budget),
        "alias resolve": median_ms(lambda: repo.resolve(f"{MODEL}@production"), runs, budget),
        "version show": median_ms(lambda: repo.show(f"{MODEL}:{count // 2}"), runs, budget),
        "newest 100": median_ms(newest, runs, budget),
    }


def run_registry(
    args: argparse.Namespace, work: Path, servers: Servers, venv: MlflowVenv
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    base = work / "registry"

    def attempt(engine: str, count: int, fn: Callable[[], dict[str, Any]]) -> None:
        log(f"registry: {engine}, {count:,} versions")
        entry: dict[str, Any] = {"engine": engine, "count": count}
        try:
            entry.update(fn())
        except Exception as exc:  # each configuration stands alone: report, go on
            entry["error"] = _error(exc)
        rows.append(entry)

    def modelkeep_at(engine: str, count: int) -> dict[str, Any]:
        root = base / f"{engine.lower()}-{count}"
        db = servers.pg.new_database("mk_reg") if engine == "PostgreSQL" else None
        where = {"db": db, "store": str(root / "store")} if db else {}
        try:
            start = time.perf_counter()
            with modelkeep.Repo.init(root / "repo", **where) as repo:  # type: ignore[arg-type]
                build_versions(repo, MODEL, count)
            build_s = time.perf_counter() - start
            with modelkeep.Repo(root / "repo") as repo:
                if [v.number for v in repo.log(MODEL, limit=1)] != [count]:
                    raise RuntimeError(f"the built model does not end at version {count}")
                figures = registry_ops(repo, count, args.runs, args.budget)
            return {"build_seconds": build_s, "figures": figures}
        finally:
            if db:
                servers.pg.drop_database(db)
            shutil.rmtree(root, ignore_errors=True)

    for engine in ("SQLite", "PostgreSQL"):
        for count in args.registry:
            attempt(engine, count, lambda e=engine, n=count: modelkeep_at(e, n))

    if not args.skip_mlflow:
        for count in args.mlflow_versions:

            def mlflow_at(n: int = count) -> dict[str, Any]:
                db = servers.pg.new_database("mlflow_reg")
                try:
                    _, out = venv.run(
                        {"task": "registry", "tracking_uri": db, "model": MODEL, "count": n,
                         "runs": args.runs, "budget_seconds": args.budget,
                         "source": "s3://mlflow-bench/none"}
                    )  # fmt: skip
                finally:
                    servers.pg.drop_database(db)
                return {"build_seconds": out["build_seconds"], "figures": out["figures"],
                        "mlflow": out["mlflow"]}  # fmt: skip

            attempt("MLflow PostgreSQL", count, mlflow_at)
    return rows


# -- checks and output ------------------------------------------------------------------------


def checks_of(w1: dict[str, Any] | None, registry: list[dict[str, Any]] | None) -> list[Check]:
    checks: list[Check] = []
    if w1 is not None:
        by_name = {r["name"]: r for r in w1["results"]}
        mk, ml = by_name.get(PG_S3, {}), by_name.get(MLFLOW, {})

        def ratio(key: str, name: str, limit: float, fmt: Callable[[float], str]) -> None:
            a, b = mk.get(key), ml.get(key)
            value = a / b if a is not None and b else None
            detail = (
                f"{fmt(a)} vs {fmt(b)}"
                if value is not None
                else (mk.get("error") or ml.get("error") or "not measured")
            )
            checks.append(Check(name, value, limit, "x", detail[:160]))

        ratio(
            "commit_changed_seconds",
            "commit 10 % changed, PG+S3 / MLflow",
            COMMIT_RATIO,
            lambda s: f"{s:.3f} s",
        )
        ratio("stored_bytes", "bytes stored, PG+S3 / MLflow", BYTES_RATIO, mib)
        ratio("restore_seconds", "restore, PG+S3 / MLflow", RESTORE_RATIO,
              lambda s: f"{s:.3f} s")  # fmt: skip
    if registry:
        pg = [r for r in registry if r["engine"] == "PostgreSQL" and "figures" in r]
        for r in pg:
            for op in OPS:
                ms = r["figures"][op]["ms"]
                limit = PAGE_MS if op == "newest 100" else OP_MS
                checks.append(Check(f"{op} at {r['count']:,} (PostgreSQL)", ms, limit, "ms",
                                    f"{ms:.2f} ms"))  # fmt: skip
        if len(pg) >= 2:
            small, big = pg[0], pg[-1]
            for op in OPS:
                a, b = small["figures"][op]["ms"], big["figures"][op]["ms"]
                checks.append(Check(f"{op} {big['count']:,} / {small['count']:,} (PG)", b / a,
                                    FLAT_RATIO, "x", f"{b:.2f} ms vs {a:.2f} ms"))  # fmt: skip
    return checks


def status(check: Check) -> str:
    return "FAIL" if check.status == "MISS" else check.status


def _s(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f} s"


def render(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        f"modelkeep {cfg['modelkeep']} engines benchmark: {cfg['cpus']} CPUs "
        f"(load {cfg['load_average_1m']:.2f}), Python {cfg['python']}, "
        f"PostgreSQL {cfg.get('postgres', '?')}, moto S3 on 127.0.0.1",
    ]
    w1 = result.get("w1")
    if w1:
        f = w1["files"]
        n = cfg["versions"]
        lines += [
            "",
            f"W1: {cfg['mib']} MiB safetensors ({N_TENSORS} x float32{tuple(f['tensor_shape'])}),"
            f" {n} versions, {CHANGED} tensors ({mib(f['changed_bytes_per_version'])}) new "
            "in each after the first",
            f"  sum of the {n} files {mib(f['sum_of_files_bytes'])}; one file + the changed "
            f"tensors {mib(f['one_file_plus_changes_bytes'])}",
            f"  {'configuration':<32} {'commit v1':>10} {'v2..v' + str(n):>10} {'stored':>13} "
            f"{'objects':>8} {'restore v' + str(w1['restore_version']):>11} "
            f"{'load, new proc':>15}",
        ]
        for r in w1["results"]:
            if r["error"]:
                lines.append(f"  {r['name']:<32} FAILED: {r['error']}")
                continue
            stored = "n/a" if r["stored_bytes"] is None else mib(r["stored_bytes"])
            lines.append(
                f"  {r['name']:<32} {_s(r['commit_seconds'][0]):>10} "
                f"{_s(r['commit_changed_seconds']):>10} {stored:>13} "
                f"{r['stored_objects'] or 0:>8,} {_s(r['restore_seconds']):>11} "
                f"{_s(r['load_seconds'], 2):>15}"
                + (f"   ({'; '.join(r['notes'])})" if r["notes"] else "")
            )
        lines.append(
            "  (commit v2..: median of the 10 %-changed versions; restore: checkout into a "
            "fresh folder,\n   read cache emptied; load: a new process that imports, "
            "restores and loads the tensors)"
        )
    registry = result.get("registry")
    if registry:
        lines += [
            "",
            "Registry, one model, in-process: median ms (runs)",
            f"  {'engine':<20} {'versions':>9} "
            + " ".join(f"{op:>14}" for op in OPS)
            + f" {'build':>9}",
        ]
        for r in registry:
            head = f"  {r['engine']:<20} {r['count']:>9,} "
            if "error" in r:
                lines.append(head + f"FAILED: {r['error']}")
                continue
            cells = [f"{r['figures'][op]['ms']:.2f} ({r['figures'][op]['runs']})" for op in OPS]
            lines.append(head + " ".join(f"{c:>14}" for c in cells)
                         + f" {_s(r['build_seconds'], 1):>9}")  # fmt: skip
        lines.append(
            "  MLflow's published figures on this machine (SQLite, 10,000 versions): "
            f"alias set {MLFLOW_PUBLISHED['alias set']:,.0f} ms, "
            f"list {MLFLOW_PUBLISHED['newest 100']:,.0f} ms"
        )
    res = result["resources"]
    lines += [
        "",
        "Cost of this run",
        row("wall time", f"{res['wall_seconds']:.0f} s",
            ", ".join(f"{k} {v:.0f} s" for k, v in res["section_seconds"].items())),
        row("peak RSS, this process", mib(res["self_peak_rss_bytes"])),
        row("peak RSS, moto S3 server", mib(res["moto_peak_rss_bytes"])),
        row("peak RSS, MLflow processes", mib(res["mlflow_peak_rss_bytes"])),
        row("peak RSS, largest child process", mib(res["children_peak_rss_bytes"])),
        "",
        "Summary",
    ]  # fmt: skip
    lines += check_lines(result["checks"], 40)
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    return sorted({int(x.replace("_", "")) for x in text.split(",") if x.strip() not in ("", "0")})


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="64 MiB, registries of 1,000 and 10,000 versions"
    )
    parser.add_argument("--mib", type=int, help="model file size (default 512; --quick 64)")
    parser.add_argument("--versions", type=int, default=10, help="versions of the file (10)")
    parser.add_argument("--registry", help="registry sizes (default 10000,100000)")
    parser.add_argument(
        "--mlflow-versions", help="MLflow registry sizes (default: --registry's; 0 skips)"
    )
    parser.add_argument("--runs", type=int, default=100, help="timed calls per operation")
    parser.add_argument(
        "--budget",
        type=float,
        default=15.0,
        help="seconds per operation at most (at least 3 calls)",
    )
    parser.add_argument("--mlflow-venv", type=Path, help="default: WORKDIR/mlflow-venv")
    parser.add_argument("--skip-w1", action="store_true")
    parser.add_argument("--skip-registry", action="store_true")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--workdir", type=Path, help="folder to work in (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="leave the files behind")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)  # fmt: skip
    args.mib = args.mib or (64 if args.quick else 512)
    args.registry = _sizes(args.registry or ("1000,10000" if args.quick else "10000,100000"))
    args.mlflow_versions = (
        args.registry if args.mlflow_versions is None else _sizes(args.mlflow_versions)
    )
    if args.mib < 1 or args.versions < 2:
        parser.error("--mib must be at least 1 and --versions at least 2")
    return args


@contextlib.contextmanager
def timed_section(name: str, into: dict[str, float]) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        into[name] = time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    for name in ("MODELKEEP_DB", "MODELKEEP_STORE", "MODELKEEP_REPO", "MODELKEEP_S3_ENDPOINT"):
        os.environ.pop(name, None)
    os.environ.setdefault("MODELKEEP_AUTHOR", "bench <bench@example.org>")
    sections: dict[str, float] = {}
    result: dict[str, Any] = {}
    postgres = None
    with workspace(args.workdir, args.keep, _CREATED) as work:
        os.environ["MODELKEEP_CACHE"] = str(work / "cache")
        servers = Servers(work)
        venv = MlflowVenv(args.mlflow_venv or work / "mlflow-venv", servers, work)
        try:
            if not args.skip_w1:
                with timed_section("W1", sections):
                    result["w1"] = run_w1(args, work, servers, venv)
            if not args.skip_registry:
                with timed_section("registry", sections):
                    result["registry"] = run_registry(args, work, servers, venv)
            if servers.started("pg"):
                postgres = servers.pg.psql("SHOW server_version")
        finally:
            servers.stop()
        if not (args.skip_mlflow or args.mlflow_venv):
            log(f"MLflow venv kept at {venv.folder} for the next run")
    result["config"] = {
        "mib": args.mib,
        "versions": args.versions,
        "tensors": N_TENSORS,
        "changed_tensors": CHANGED,
        "registry_sizes": args.registry,
        "mlflow_registry_sizes": args.mlflow_versions,
        "runs": args.runs,
        "seed": SEED,
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "python": sys.version.split()[0],
        "modelkeep": modelkeep.__version__,
        "postgres": postgres,
    }
    checks = checks_of(result.get("w1"), result.get("registry"))
    result["checks"] = [{**asdict(c), "status": status(c)} for c in checks]
    result["resources"] = {
        "wall_seconds": time.perf_counter() - started,
        "section_seconds": sections,
        "self_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "children_peak_rss_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
        "moto_peak_rss_bytes": servers.moto_peak_bytes,
        "mlflow_peak_rss_bytes": venv.peak_rss,
    }
    print(json.dumps(result, indent=2, default=str) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
