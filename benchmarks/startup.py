"""Start-up benchmark: commands a person types many times a day, as whole processes.

    python benchmarks/startup.py [--runs 7] [--commit-mib 512] [--big 10000,100000]
                                 [--workdir DIR] [--keep] [--json]

Every command runs as its own process, timed against ``python -c pass`` run by the
same interpreter in the same run (the median of ``--runs`` each, taken in turn, so a
busy machine slows both):

- ``modelkeep --help``                                       ≤ 0.15 s above the baseline
- log, show, models, history, alias set, promote, rollback
  on a model of 1,000 versions                               ≤ 0.25 s above the baseline
- a commit of a --commit-mib file through the CLI            ≤ 1.3 × the same commit
                                                               through the Python API
- the first load of a scikit-learn model in a new process    ≤ 1.5 × skops.io.load of
                                                               the same file, new process
- the newest 100 versions in-process at each --big size      ≤ 20 ms
- ``modelkeep log m`` (one page) at the first --big size     ≤ 0.3 s above the baseline
- ``modelkeep log m --json --all`` at the first --big size   ≤ 1 s
- a filtered, ordered search at the first --big size, in-process ≤ 30 ms

Large models of many versions are built by writing their rows straight into the
registry (one transaction): committing 100,000 versions one by one would take the
benchmark an hour and measure nothing it reports.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import modelkeep

sys.path.insert(0, str(Path(__file__).parent))
from _bench import Check, log, row, workspace

HELP_ABOVE = 0.15
READ_ABOVE = 0.25
COMMIT_RATIO = 1.3
LOAD_RATIO = 1.5
PAGE_MS = 20.0
LOG_PAGE_ABOVE = 0.3
LOG_ALL_JSON = 1.0
SEARCH_MS = 30.0

BIN = Path(sys.executable).parent
MODELKEEP = str(BIN / "modelkeep") if (BIN / "modelkeep").exists() else "modelkeep"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELKEEP_")}
    env["MODELKEEP_AUTHOR"] = "bench <bench@example.org>"
    return env


def _run(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return seconds


def in_turn(commands: dict[str, list[str]], cwd: Path, runs: int) -> dict[str, float]:
    """Median seconds of each command, the commands taking turns run after run."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            times[name].append(_run(argv, cwd))
    return {name: statistics.median(ts) for name, ts in times.items()}


def build_many(root: Path, model: str, count: int) -> None:
    """A model of ``count`` versions: one committed, the rest its rows copied in SQL."""
    from sqlalchemy import insert, select

    from modelkeep.registry import schema as t

    repo = modelkeep.Repo.init(root)
    weights = root.parent / f"{model}.bin"
    weights.write_bytes(b"weights")
    first = repo.commit(model, weights, "version 1", metrics={"f1": 0.5}, params={"lr": 0.1})
    with repo.registry.db.write() as tx:
        conn = tx.sa  # SQLAlchemy inside the registry's own transaction
        m = conn.execute(select(t.models).where(t.models.c.name == model)).one()
        v1 = conn.execute(select(t.versions).where(t.versions.c.model_id == m.id)).one()
        base = {k: getattr(v1, k) for k in v1._fields if k != "id"}
        now = datetime.now(UTC)
        batch = []
        for n in range(2, count + 1):
            batch.append(
                {
                    **base,
                    "number": n,
                    "message": f"version {n}",
                    "created_at": now,
                    "metrics": {"f1": (n % 1000) / 1000},
                    "params": {"lr": 0.1, "dataset": f"ds-{n % 7}"},
                }
            )
            if len(batch) == 5000:
                conn.execute(insert(t.versions), batch)
                batch = []
        if batch:
            conn.execute(insert(t.versions), batch)
        ids = dict(
            conn.execute(
                select(t.versions.c.number, t.versions.c.id).where(t.versions.c.model_id == m.id)
            ).all()
        )
        conn.execute(
            insert(t.version_parents),
            [
                {"version_id": ids[n], "parent_id": ids[n - 1], "position": 0}
                for n in range(2, count + 1)
            ],
        )
        conn.execute(
            t.refs.update()
            .where(t.refs.c.model_id == m.id, t.refs.c.name == "main")
            .values(version_id=ids[count])
        )
    repo.close()
    del first


SEARCH = "metrics.f1 > 0.9 and params.dataset = 'ds-3'"


def search_ms(root: Path, model: str, runs: int = 10) -> float:
    """A filtered search in SQL: the best 5 of a model by f1 among one dataset's."""
    with modelkeep.Repo(root) as repo:
        repo.search(model, SEARCH, order_by="metrics.f1", limit=5)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            found = repo.search(model, SEARCH, order_by="metrics.f1", limit=5)
            times.append(time.perf_counter() - start)
        assert found
    return statistics.median(times) * 1000


def newest_page_ms(root: Path, model: str, size: int = 100, runs: int = 20) -> float:
    with modelkeep.Repo(root) as repo:
        repo.log(model, limit=size)  # warm: statements built, pages cached
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            page = repo.log(model, limit=size)
            times.append(time.perf_counter() - start)
        assert len(page) == size
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--commit-mib", type=int, default=512)
    parser.add_argument("--big", default="10000,100000")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    big = [int(x) for x in args.big.split(",") if x]
    checks: list[Check] = []
    figures: dict[str, Any] = {}
    created = ["thousand", "commit", "load", *(f"big{n}" for n in big), "m.bin", "w.bin"]
    # As an installed package is: byte-compiled (a session with PYTHONDONTWRITEBYTECODE
    # would otherwise compile modelkeep's sources in every process it times).
    import compileall

    compileall.compile_dir(str(Path(modelkeep.__file__).parent), quiet=1)
    with workspace(args.workdir, args.keep, created) as work:
        py = [sys.executable, "-c", "pass"]

        # -- --help and read commands on 1,000 versions ------------------------------
        log("building a model of 1,000 versions")
        thousand = work / "thousand"
        build_many(thousand, "m", 1000)
        with modelkeep.Repo(thousand) as repo:
            repo.set_alias("m@production", "m:500")
        mk = [MODELKEEP]
        commands = {
            "baseline": py,
            "--help": [*mk, "--help"],
            "log": [*mk, "log", "m"],
            "show": [*mk, "show", "m:999"],
            "models": [*mk, "models"],
            "history": [*mk, "history", "m@production"],
            "alias set": [*mk, "alias", "set", "m@staging", "m:10"],
            "promote": [*mk, "promote", "m:900", "production"],
            "rollback": [*mk, "rollback", "m@production"],
        }
        log(f"timing {len(commands)} commands × {args.runs} runs")
        # promote then rollback in each run: production moves 500 → 900 → 500.
        medians = in_turn(commands, thousand, args.runs)
        base = medians.pop("baseline")
        figures["baseline"] = base
        figures["commands"] = medians
        for name, seconds in medians.items():
            limit = HELP_ABOVE if name == "--help" else READ_ABOVE
            checks.append(
                Check(f"{name} above baseline", seconds - base, limit, "s", f"{seconds:.3f} s")
            )

        # -- a commit through the CLI vs the Python API ------------------------------
        log(f"commit of {args.commit_mib} MiB: CLI vs Python API")
        blob = work / "w.bin"
        rng = np.random.default_rng(7)
        with open(blob, "wb") as f:
            for _ in range(args.commit_mib):
                f.write(rng.bytes(1 << 20))
        croot = work / "commit"
        # The API's commit timed inside its process, as a program that already imported
        # modelkeep commits; the CLI's as the whole command a person runs.
        api = (
            "import sys, time, modelkeep; t = time.perf_counter(); "
            "modelkeep.Repo(sys.argv[1]).commit(sys.argv[2], sys.argv[3], 'x'); "
            "print(time.perf_counter() - t)"
        )
        cli_t, api_t = [], []
        for i in range(3):
            # A new store each time: every commit stores the whole file afresh.
            for name in (f"c{i}", f"a{i}"):
                modelkeep.Repo.init(croot / name).close()
            cli_t.append(
                _run([*mk, "--repo", str(croot / f"c{i}"), "commit", "m", str(blob)], work)
            )
            out = subprocess.run(
                [sys.executable, "-c", api, str(croot / f"a{i}"), "m", str(blob)],
                env=_env(), capture_output=True, text=True, check=True,
            ).stdout
            api_t.append(float(out.strip()))
        cli_s, api_s = statistics.median(cli_t), statistics.median(api_t)
        figures["commit"] = {"cli": cli_s, "api": api_s}
        checks.append(Check("CLI commit / API commit", cli_s / api_s, COMMIT_RATIO, "×",
                            f"{cli_s:.3f} s vs {api_s:.3f} s"))

        # -- the first load of a scikit-learn model in a new process -----------------
        log("first load of a scikit-learn model in a new process")
        from sklearn.ensemble import RandomForestClassifier

        lroot = work / "load"
        x = rng.normal(size=(2000, 10))
        forest = RandomForestClassifier(n_estimators=50, random_state=0).fit(x, x[:, 0] > 0)
        with modelkeep.Repo.init(lroot) as repo:
            repo.commit("forest", forest, "a forest")
        import skops.io as sio

        sio.dump(forest, work / "m.bin")
        load_mk = "import sys, modelkeep; modelkeep.Repo(sys.argv[1]).load('forest')"
        load_sk = (
            "import sys, skops.io as s; "
            "s.load(sys.argv[1], trusted=s.get_untrusted_types(file=sys.argv[1]))"
        )
        loads = in_turn(
            {
                "modelkeep": [sys.executable, "-c", load_mk, str(lroot)],
                "skops": [sys.executable, "-c", load_sk, str(work / "m.bin")],
            },
            work,
            max(3, args.runs // 2),
        )
        figures["load"] = loads
        checks.append(Check("first load / skops.io.load", loads["modelkeep"] / loads["skops"],
                            LOAD_RATIO, "×",
                            f"{loads['modelkeep']:.3f} s vs {loads['skops']:.3f} s"))

        # -- lists that scale ----------------------------------------------------------
        for i, n in enumerate(big):
            log(f"building a model of {n:,} versions")
            broot = work / f"big{n}"
            build_many(broot, "m", n)
            ms = newest_page_ms(broot, "m")
            figures[f"newest 100 of {n}"] = ms
            checks.append(Check(f"newest 100 of {n:,}, in-process", ms, PAGE_MS, "ms",
                                f"{ms:.1f} ms"))
            if i == 0:
                sms = search_ms(broot, "m")
                figures[f"search at {n}"] = sms
                checks.append(Check(f"filtered search at {n:,}, in-process", sms, SEARCH_MS,
                                    "ms", f"{sms:.1f} ms: {SEARCH}, order by f1, 5"))
                lists = in_turn(
                    {
                        "baseline": py,
                        "log": [*mk, "log", "m"],
                        "log --json --all": [*mk, "log", "m", "--json", "--all"],
                    },
                    broot,
                    max(3, args.runs // 2),
                )
                figures[f"log at {n}"] = lists
                checks.append(Check(f"log m at {n:,} above baseline",
                                    lists["log"] - lists["baseline"], LOG_PAGE_ABOVE, "s",
                                    f"{lists['log']:.3f} s"))
                checks.append(Check(f"log m --json --all at {n:,}", lists["log --json --all"],
                                    LOG_ALL_JSON, "s", f"{lists['log --json --all']:.3f} s"))

    if args.json:
        print(json.dumps({"figures": figures, "checks": [vars(c) for c in checks]}, indent=2))
        return
    print(f"baseline (python -c pass): {figures['baseline']:.3f} s")
    for c in checks:
        value = "n/a" if c.value is None else f"{c.value:.3f} {c.unit}"
        print(row(c.name, value, f"{c.status} (≤ {c.limit:g} {c.unit}; {c.detail})"))


if __name__ == "__main__":
    main()
