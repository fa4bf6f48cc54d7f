"""Drift benchmark: profile + compare at 100k and 1M rows x 20 features, next to Evidently.

    python benchmarks/drift.py [--sizes 100000,1000000] [--batch-rows 100000] [--runs 3]
                               [--workdir DIR] [--keep] [--no-evidently]
                               [--evidently-venv DIR] [--install-timeout 360] [--json]

A reference and a current set of N rows x 20 numeric features (assorted distributions,
two of them far from zero: years around 2010 and temperatures in kelvin) are made from
seeded batches of --batch-rows rows; the current set has drift injected in 5 seeded features (shifts
of 0.3-0.5 std and scale changes). For every size:

- in memory: `Profile.of(reference)`, `Profile.of(current)` and `compare` on the whole
  frames, timed (median of --runs; one untimed compare first, so scipy's import is not
  counted), and the peak memory they allocate above the data (tracemalloc);
- streamed: both profiles built from the batches, one at a time, merged with
  `Profile.merge`, then `compare`; the time counts profiling, merging and comparing
  (not making the batches) and the peak memory counts everything, the batch in hand
  included: it must not grow with N;
- the drifted features of both: they must be exactly the 5 injected ones.

Evidently: a virtual environment is made under the work folder (`python -m venv`,
`pip install evidently 'pandas<3'`, at most --install-timeout seconds; or the one
--evidently-venv names, reused when it already has Evidently), the 100k sets are
written to Parquet, and a small runner script runs Evidently's DataDriftPreset on them
in that environment, timed in this same run (after an untimed warm-up on 2,000 rows).
Both use Wasserstein distance / reference std >= 0.1 for numeric columns of more than
1000 rows, so their per-column verdicts must be identical. If Evidently does not
install or run, the reason is printed and the rest goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

import modelkeep
from modelkeep.monitor.drift import compare
from modelkeep.profiles import Profile

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

from _bench import Check, log, mib, row, secs, timed, workspace

SEED = 20240607
N_FEATURES = 20
N_DRIFTED = 5
EVIDENTLY_ROWS = 100_000  # the size Evidently runs on
VENV = "evidently-venv"

# Targets.
TARGETS = {100_000: 0.2, 1_000_000: 2.0}  # rows -> seconds for profile + compare
FLAT_MEMORY_RATIO = 1.25  # streamed peak at the largest size / at the smallest

# What the benchmark creates inside the work folder; nothing else is touched.
_CREATED = (
    "reference.parquet",
    "current.parquet",
    "evidently_runner.py",
    "evidently.json",
    "evidently-install.log",
    VENV,
)

# -- the data -----------------------------------------------------------------------------

# (name, draw(rng, n)): most spread about as far as they are from zero; a year and a
# temperature in kelvin sit far from zero, where only a grid relative to the spread
# (not the log sketch's 2 % buckets) sees a shift.
_DISTRIBUTIONS: list[tuple[str, Callable[[np.random.Generator, int], np.ndarray]]] = [
    ("normal(0,1)", lambda r, n: r.normal(0.0, 1.0, n)),
    ("normal(10,3)", lambda r, n: r.normal(10.0, 3.0, n)),
    ("lognormal(0,0.75)", lambda r, n: r.lognormal(0.0, 0.75, n)),
    ("exponential(2)", lambda r, n: r.exponential(2.0, n)),
    ("uniform(0,100)", lambda r, n: r.uniform(0.0, 100.0, n)),
    ("gamma(2,2)", lambda r, n: r.gamma(2.0, 2.0, n)),
    ("student-t(5)", lambda r, n: r.standard_t(5.0, n)),
    ("beta(2,5)", lambda r, n: r.beta(2.0, 5.0, n)),
    ("normal(-5,2)", lambda r, n: r.normal(-5.0, 2.0, n)),
    ("laplace(1,1)", lambda r, n: r.laplace(1.0, 1.0, n)),
    ("year(2010,10)", lambda r, n: np.round(r.normal(2010.0, 10.0, n))),
    ("kelvin(290,5)", lambda r, n: r.normal(290.0, 5.0, n)),
]
# Drift kinds: (label, transform(values, mean, std)).
_DRIFTS: list[tuple[str, Callable[[np.ndarray, float, float], np.ndarray]]] = [
    ("mean +0.5 std", lambda x, m, s: x + 0.5 * s),
    ("scale x1.6", lambda x, m, s: m + (x - m) * 1.6),
    ("mean -0.4 std", lambda x, m, s: x - 0.4 * s),
    ("scale x0.6", lambda x, m, s: m + (x - m) * 0.6),
    ("mean +0.3 std", lambda x, m, s: x + 0.3 * s),
]


@dataclass(frozen=True)
class Design:
    names: list[str]
    kinds: list[str]
    drifted: dict[str, str]  # feature -> drift kind
    centre: dict[str, tuple[float, float]]  # feature -> (mean, std) of its distribution


def design() -> Design:
    rng = np.random.default_rng(SEED)
    names = [f"f{i:02d}" for i in range(N_FEATURES)]
    kinds = [_DISTRIBUTIONS[i % len(_DISTRIBUTIONS)][0] for i in range(N_FEATURES)]
    picked = sorted(rng.choice(N_FEATURES, size=N_DRIFTED, replace=False).tolist())
    drifted = {names[i]: _DRIFTS[k][0] for k, i in enumerate(picked)}
    # Each distribution's mean and std, from a large seeded sample (used by the drifts).
    centre = {}
    for i, name in enumerate(names):
        sample = _DISTRIBUTIONS[i % len(_DISTRIBUTIONS)][1](np.random.default_rng(i), 200_000)
        centre[name] = (float(sample.mean()), float(sample.std()))
    return Design(names, kinds, drifted, centre)


def batch(d: Design, role: str, index: int, rows: int) -> pd.DataFrame:
    """Batch ``index`` of the reference or current set: the same rows whenever asked."""
    rng = np.random.default_rng([SEED, 0 if role == "reference" else 1, index])
    columns = {}
    for i, name in enumerate(d.names):
        values = _DISTRIBUTIONS[i % len(_DISTRIBUTIONS)][1](rng, rows)
        if role == "current" and name in d.drifted:
            transform = dict(_DRIFTS)[d.drifted[name]]
            values = transform(values, *d.centre[name])
        columns[name] = values
    return pd.DataFrame(columns)


def batches(d: Design, role: str, rows: int, batch_rows: int) -> Iterator[pd.DataFrame]:
    for index, start in enumerate(range(0, rows, batch_rows)):
        yield batch(d, role, index, min(batch_rows, rows - start))


def whole(d: Design, role: str, rows: int, batch_rows: int) -> pd.DataFrame:
    return pd.concat(list(batches(d, role, rows, batch_rows)), ignore_index=True)


# -- measurements ------------------------------------------------------------------------


@dataclass
class SizeResult:
    rows: int
    reference_profile_seconds: float
    current_profile_seconds: float
    compare_seconds: float
    total_seconds: float
    peak_bytes_above_data: int
    data_bytes: int
    streamed_seconds: float
    streamed_peak_bytes: int
    drifted: list[str]
    dataset_drift: bool
    streamed_drifted: list[str]
    statistics: dict[str, float]
    tests: dict[str, str]


def peak_bytes(fn: Callable[[], object]) -> int:
    """The most memory ``fn`` had allocated at once (tracemalloc sees numpy's buffers)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def streamed(d: Design, rows: int, batch_rows: int) -> tuple[float, Any]:
    """Both profiles built batch by batch and merged; seconds exclude making batches."""
    spent = 0.0
    profiles: dict[str, Profile | None] = {"reference": None, "current": None}
    for role in profiles:
        for frame in batches(d, role, rows, batch_rows):
            start = time.perf_counter()
            part = Profile.of(frame)
            acc = profiles[role]
            profiles[role] = part if acc is None else acc.merge(part)
            spent += time.perf_counter() - start
            del frame, part
    ref, cur = profiles["reference"], profiles["current"]
    assert ref is not None
    assert cur is not None
    start = time.perf_counter()
    report = compare(ref, cur)
    return spent + time.perf_counter() - start, report


def in_memory(ref: pd.DataFrame, cur: pd.DataFrame, runs: int) -> tuple[Any, Any, int]:
    """(seconds of the median run: reference, current, compare), its report, peak bytes."""
    parts: list[tuple[float, float, float]] = []
    report = None
    for _ in range(runs):
        t_ref, a = timed(lambda: Profile.of(ref))
        t_cur, b = timed(lambda: Profile.of(cur))
        t_cmp, report = timed(lambda a=a, b=b: compare(a, b))
        parts.append((t_ref, t_cur, t_cmp))
    totals = [sum(p) for p in parts]
    median_run = parts[totals.index(statistics.median_low(totals))]
    peak = peak_bytes(lambda: compare(Profile.of(ref), Profile.of(cur)))
    return median_run, report, peak


def measure(d: Design, rows: int, batch_rows: int, runs: int) -> SizeResult:
    log(f"{rows:,} rows: making the data")
    ref = whole(d, "reference", rows, batch_rows)
    cur = whole(d, "current", rows, batch_rows)
    data_bytes = int(ref.memory_usage(index=False).sum() + cur.memory_usage(index=False).sum())
    log(f"{rows:,} rows: in memory, {runs} run(s)")
    median_run, report, peak = in_memory(ref, cur, runs)
    del ref, cur  # the streamed variant holds one batch at a time

    log(f"{rows:,} rows: streamed in batches of {batch_rows:,}")
    streamed_s, streamed_report = streamed(d, rows, batch_rows)
    streamed_peak = peak_bytes(lambda: streamed(d, rows, batch_rows))
    return SizeResult(
        rows=rows,
        reference_profile_seconds=median_run[0],
        current_profile_seconds=median_run[1],
        compare_seconds=median_run[2],
        total_seconds=sum(median_run),
        peak_bytes_above_data=peak,
        data_bytes=data_bytes,
        streamed_seconds=streamed_s,
        streamed_peak_bytes=streamed_peak,
        drifted=report.drifted_features,
        dataset_drift=bool(report.drifted),
        streamed_drifted=streamed_report.drifted_features,
        statistics={f.name: f.statistic for f in report.features},
        tests={f.name: f.test for f in report.features},
    )


# -- Evidently ---------------------------------------------------------------------------

RUNNER = '''"""Evidently's DataDriftPreset on reference/current Parquet files; prints JSON.

    python evidently_runner.py REFERENCE CURRENT OUT
"""
import json
import resource
import sys
import time

import pandas as pd

ref_path, cur_path, out_path = sys.argv[1:4]
start = time.perf_counter()
try:  # evidently >= 0.7 keeps the report with per-column verdicts here
    from evidently.legacy.metric_preset import DataDriftPreset
    from evidently.legacy.pipeline.column_mapping import ColumnMapping
    from evidently.legacy.report import Report
    api = "evidently.legacy.report.Report + evidently.legacy.metric_preset.DataDriftPreset"
except ImportError:  # evidently < 0.7
    from evidently.metric_preset import DataDriftPreset
    from evidently.pipeline.column_mapping import ColumnMapping
    from evidently.report import Report
    api = "evidently.report.Report + evidently.metric_preset.DataDriftPreset"
import evidently

import_s = time.perf_counter() - start
ref = pd.read_parquet(ref_path)
cur = pd.read_parquet(cur_path)
mapping = ColumnMapping(numerical_features=list(ref.columns))


def run(a, b):
    report = Report(metrics=[DataDriftPreset()])
    report.run(reference_data=a, current_data=b, column_mapping=mapping)
    return report.as_dict()


run(ref.head(2000), cur.head(2000))  # warm-up: lazy imports, first-call costs
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
result = run(ref, cur)
run_s = time.perf_counter() - start
rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
table = next(m["result"] for m in result["metrics"] if "drift_by_columns" in m["result"])
columns = {
    name: {
        "test": c["stattest_name"],
        "threshold": c["stattest_threshold"],
        "score": c["drift_score"],
        "drifted": bool(c["drift_detected"]),
    }
    for name, c in table["drift_by_columns"].items()
}
with open(out_path, "w") as f:
    json.dump(
        {
            "version": evidently.__version__,
            "api": api,
            "pandas": pd.__version__,
            "import_seconds": import_s,
            "run_seconds": run_s,
            "maxrss_kib_before": rss_before,
            "maxrss_kib_after": rss_after,
            "dataset_drift": bool(table["dataset_drift"]),
            "columns": columns,
        },
        f,
    )
'''


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _has_evidently(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import evidently"], capture_output=True, check=False, timeout=120
    )
    return probe.returncode == 0


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith("WARNING")]
    return (useful or lines or ["no output"])[-1][:200]


def install_evidently(venv: Path, log_path: Path, timeout: float) -> tuple[Path | None, str, float]:
    """(python of a venv with Evidently or None, what happened, seconds spent)."""
    start = time.perf_counter()
    python = _venv_python(venv)
    if _has_evidently(python):
        return python, f"reused {venv}", time.perf_counter() - start
    log(f"Evidently: making {venv} and installing evidently, pandas<3 (<= {timeout:.0f} s)")
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "evidently",
            "pandas<3",
        ],
    ]
    with open(log_path, "w") as out:
        for argv in steps:
            left = timeout - (time.perf_counter() - start)
            if left <= 0:
                return None, f"install timed out after {timeout:.0f} s", time.perf_counter() - start
            try:
                proc = subprocess.run(
                    argv, stdout=out, stderr=subprocess.PIPE, text=True, timeout=left, check=False
                )
            except subprocess.TimeoutExpired:
                spent = time.perf_counter() - start
                return None, f"`{' '.join(argv[2:5])}` timed out after {spent:.0f} s", spent
            except OSError as exc:
                return None, f"{argv[0]}: {exc}", time.perf_counter() - start
            out.write(proc.stderr)
            if proc.returncode != 0:
                reason = f"`{' '.join(argv[2:5])}` failed: {_last_line(proc.stderr)}"
                return None, reason, time.perf_counter() - start
    spent = time.perf_counter() - start
    if not _has_evidently(python):
        return None, "installed, but `import evidently` fails", spent
    return python, f"installed into {venv} in {spent:.0f} s", spent


def run_evidently(
    d: Design, workdir: Path, venv: Path, timeout: float, batch_rows: int
) -> dict[str, Any]:
    """Evidently's verdicts and timing on the 100k sets, or why there are none."""
    python, how, install_s = install_evidently(venv, workdir / "evidently-install.log", timeout)
    if python is None:
        return {"available": False, "reason": how, "install_seconds": install_s}
    log("Evidently: writing the 100k sets to Parquet and running DataDriftPreset")
    ref_path, cur_path = workdir / "reference.parquet", workdir / "current.parquet"
    whole(d, "reference", EVIDENTLY_ROWS, batch_rows).to_parquet(ref_path, index=False)
    whole(d, "current", EVIDENTLY_ROWS, batch_rows).to_parquet(cur_path, index=False)
    runner = workdir / "evidently_runner.py"
    runner.write_text(RUNNER)
    out = workdir / "evidently.json"
    env = {**os.environ, "DO_NOT_TRACK": "1", "EVIDENTLY_DISABLE_TELEMETRY": "1"}
    env.pop("PYTHONPATH", None)
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [str(python), str(runner), str(ref_path), str(cur_path), str(out)],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
            env=env,
            cwd=workdir,
        )
    except subprocess.TimeoutExpired:
        return {"available": False, "reason": "the runner timed out after 900 s", "how": how}
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not out.exists():
        reason = f"the runner failed: {_last_line(proc.stderr)}"
        return {"available": False, "reason": reason, "how": how}
    return {
        "available": True,
        "how": how,
        "install_seconds": install_s,
        "process_seconds": wall,
        **json.loads(out.read_text()),
    }


# -- the run -----------------------------------------------------------------------------


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    load_start = os.getloadavg()[0]  # other work on the machine skews every timing
    d = design()
    injected = sorted(d.drifted)
    log(f"drift injected in {', '.join(injected)}")

    # One untimed compare first: scipy's import is not part of a drift check.
    tiny = Profile.of(batch(d, "reference", 99, 2000))
    compare(tiny, Profile.of(batch(d, "current", 99, 2000)))

    batch_rows = args.batch_rows
    sizes = [measure(d, n, batch_rows, args.runs) for n in args.sizes]

    evidently: dict[str, Any]
    if args.no_evidently:
        evidently = {"available": False, "reason": "--no-evidently"}
    else:
        venv = args.evidently_venv.resolve() if args.evidently_venv else workdir / VENV
        evidently = run_evidently(d, workdir, venv, args.install_timeout, args.batch_rows)
    load_end = os.getloadavg()[0]

    ours_100k = next((s for s in sizes if s.rows == EVIDENTLY_ROWS), None)
    comparison = None
    if evidently.get("available"):
        if ours_100k is None:  # not among --sizes: measure it for the comparison
            ours_100k = measure(d, EVIDENTLY_ROWS, args.batch_rows, args.runs)
        cols = evidently["columns"]
        differ = [
            n for n in d.names if (n in ours_100k.drifted) != bool(cols.get(n, {}).get("drifted"))
        ]
        same_test = all(
            cols[n]["test"].startswith("Wasserstein") and ours_100k.tests[n] == "wasserstein"
            for n in d.names
            if n in cols
        )
        comparison = {
            "ours": ours_100k.drifted,
            "evidently": sorted(n for n, c in cols.items() if c["drifted"]),
            "differ": differ,
            "identical": not differ and set(cols) == set(d.names),
            "same_test_and_threshold": same_test,
            "max_abs_statistic_difference": max(
                abs(ours_100k.statistics[n] - cols[n]["score"]) for n in d.names if n in cols
            ),
            "speedup": evidently["run_seconds"] / ours_100k.total_seconds,
        }

    checks = []
    for s in sizes:
        if s.rows in TARGETS:
            checks.append(
                Check(
                    f"{s.rows:,} x {N_FEATURES}: profiles + compare",
                    s.total_seconds,
                    TARGETS[s.rows],
                    "s",
                    f"profiles {s.reference_profile_seconds + s.current_profile_seconds:.3f} s, "
                    f"compare {s.compare_seconds:.3f} s",
                )
            )
    for s in sizes:
        wrong = len(set(s.drifted) ^ set(injected)) + len(set(s.streamed_drifted) ^ set(injected))
        checks.append(
            Check(
                f"{s.rows:,}: drifted = the {N_DRIFTED} injected",
                wrong,
                0,
                "",
                "in memory and streamed" + ("" if not wrong else f": {s.drifted}"),
            )
        )
    full = [s for s in sizes if s.rows >= batch_rows]  # at least one whole batch
    if len(full) > 1:
        lo, hi = full[0], full[-1]
        checks.append(
            Check(
                "streamed peak memory, largest / smallest",
                hi.streamed_peak_bytes / lo.streamed_peak_bytes,
                FLAT_MEMORY_RATIO,
                "x",
                f"{mib(hi.streamed_peak_bytes)} at {hi.rows:,} vs "
                f"{mib(lo.streamed_peak_bytes)} at {lo.rows:,} rows",
            )
        )
    if comparison is None:
        detail = f"Evidently: not available ({evidently['reason']})"
    else:
        detail = f"{len(d.names)} columns, Wasserstein/std >= 0.1 on both sides"
        if comparison["differ"]:
            detail += "; differ: " + ", ".join(comparison["differ"])
    checks.append(
        Check(
            "verdicts identical to Evidently (100k)",
            None if comparison is None else len(comparison["differ"]),
            0,
            "",
            detail,
        )
    )
    return {
        "config": {
            "sizes": args.sizes,
            "features": N_FEATURES,
            "batch_rows": args.batch_rows,
            "runs": args.runs,
            "seed": SEED,
            "distributions": dict(zip(d.names, d.kinds, strict=True)),
            "injected": d.drifted,
            "workdir": str(workdir),
            "cpus": os.cpu_count(),
            "load_average_1m": load_start,
            "load_average_1m_end": load_end,
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "modelkeep": modelkeep.__version__,
        },
        "sizes": [asdict(s) for s in sizes],
        "evidently": evidently,
        "comparison": comparison,
        "checks": [{**asdict(c), "status": c.status} for c in checks],
    }


# -- output ------------------------------------------------------------------------------


def info(label: str, text: str) -> str:
    return f"  {label:<46} {text}"


def _rows(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"


def render(result: dict[str, Any]) -> str:
    cfg, ev, cmp_ = result["config"], result["evidently"], result["comparison"]
    injected = cfg["injected"]
    lines = [
        f"modelkeep {cfg['modelkeep']} drift benchmark: reference and current sets of "
        f"{', '.join(_rows(n) for n in cfg['sizes'])} rows x {cfg['features']} numeric features, "
        f"{cfg['cpus']} CPUs (load {cfg['load_average_1m']:.2f} at start, "
        f"{cfg['load_average_1m_end']:.2f} at end), Python {cfg['python']}, "
        f"numpy {cfg['numpy']}, pandas {cfg['pandas']}",
        f"Drift injected (seed {cfg['seed']}): "
        + ", ".join(f"{k} {v}" for k, v in sorted(injected.items())),
        "",
        f"In memory: Profile.of(reference) + Profile.of(current) + compare "
        f"(median of {cfg['runs']}; peak = allocated above the data)",
        f"  {'rows':>6}  {'ref profile':>11}  {'cur profile':>11}  {'compare':>9}  "
        f"{'total':>9}  {'peak memory':>12}  {'data':>12}",
    ]
    for s in result["sizes"]:
        lines.append(
            f"  {_rows(s['rows']):>6}  {secs(s['reference_profile_seconds']):>11}  "
            f"{secs(s['current_profile_seconds']):>11}  {secs(s['compare_seconds']):>9}  "
            f"{secs(s['total_seconds']):>9}  {mib(s['peak_bytes_above_data']):>12}  "
            f"{mib(s['data_bytes']):>12}"
        )
    lines += [
        "",
        f"Streamed: both profiles from batches of {cfg['batch_rows']:,} rows merged with "
        "Profile.merge, then compare",
        "  (seconds: profiling, merging, comparing; peak: everything, the batch in hand included)",
        f"  {'rows':>6}  {'seconds':>9}  {'peak memory':>12}",
    ]
    for s in result["sizes"]:
        lines.append(
            f"  {_rows(s['rows']):>6}  {secs(s['streamed_seconds']):>9}  "
            f"{mib(s['streamed_peak_bytes']):>12}"
        )
    lines += ["", f"Drifted features (injected: {', '.join(sorted(injected))})"]
    for s in result["sizes"]:
        lines.append(info(f"{_rows(s['rows'])} in memory", ", ".join(s["drifted"]) or "none"))
        lines.append(
            info(f"{_rows(s['rows'])} streamed", ", ".join(s["streamed_drifted"]) or "none")
        )
    lines += ["", "Evidently DataDriftPreset (100k rows, its own virtual environment)"]
    if not ev.get("available"):
        lines.append(f"  Evidently: not available ({ev['reason']})")
    else:
        ours = next((s for s in result["sizes"] if s["rows"] == EVIDENTLY_ROWS), None)
        lines += [
            info("environment", ev["how"]),
            info("versions", f"evidently {ev['version']}, pandas {ev['pandas']}"),
            info("API", ev["api"]),
            row("import evidently", secs(ev["import_seconds"])),
            row("DataDriftPreset run + as_dict (after warm-up)", secs(ev["run_seconds"])),
            row(
                "its peak RSS (whole process)",
                mib(ev["maxrss_kib_after"] * 1024),
                f"{mib(ev['maxrss_kib_before'] * 1024)} before the timed run",
            ),
        ]
        if ours is not None:
            lines.append(row("modelkeep profiles + compare", secs(ours["total_seconds"])))
        lines += [
            row("speed-up", f"{cmp_['speedup']:.1f}x"),
            "",
            f"  {'column':<7} {'distribution':<18} {'injected':<14} "
            f"{'modelkeep W/std':>15} {'drift':>5}   {'Evidently score':>15} {'drift':>5}",
        ]
        stats_ = (ours or {}).get("statistics", {})
        for name, kind in cfg["distributions"].items():
            c = ev["columns"].get(name, {})
            ours_drift = name in cmp_["ours"]
            lines.append(
                f"  {name:<7} {kind:<18} {injected.get(name, ''):<14} "
                f"{stats_.get(name, float('nan')):>15.4f} {'yes' if ours_drift else 'no':>5}   "
                f"{c.get('score', float('nan')):>15.4f} {'yes' if c.get('drifted') else 'no':>5}"
            )
        tests = sorted({c["test"] for c in ev["columns"].values()})
        thresholds = sorted({c["threshold"] for c in ev["columns"].values()})
        lines += [
            "",
            info("Evidently's tests / thresholds", f"{', '.join(tests)} / {thresholds}"),
            info("modelkeep drifted", ", ".join(cmp_["ours"]) or "none"),
            info("Evidently drifted", ", ".join(cmp_["evidently"]) or "none"),
            row("identical verdicts", "yes" if cmp_["identical"] else "NO"),
            row("max |statistic difference|", f"{cmp_['max_abs_statistic_difference']:.4f}"),
            info(
                "dataset drift (modelkeep / Evidently)",
                f"{(ours or {}).get('dataset_drift')} / {ev['dataset_drift']}",
            ),
        ]
    lines += ["", "Summary"]
    for c in result["checks"]:
        value = "n/a" if c["value"] is None else f"{c['value']:.3g}{c['unit']}"
        target = f"target <= {c['limit']:g}{c['unit']}"
        lines.append(f"  {c['status']:<4}  {c['name']:<42} {value:>7}  {target:<15}  {c['detail']}")
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[100_000, 1_000_000],
        help="rows per set, comma-separated (default 100000,1000000)",
    )
    parser.add_argument("--batch-rows", type=int, default=100_000, help="rows per batch")
    parser.add_argument("--runs", type=int, default=3, help="in-memory runs per size (median)")
    parser.add_argument("--workdir", type=Path, help="folder to work in (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="leave the files behind")
    parser.add_argument("--no-evidently", action="store_true", help="skip the Evidently run")
    parser.add_argument(
        "--evidently-venv",
        type=Path,
        help=f"virtual environment for Evidently, reused if it has it (default: WORKDIR/{VENV})",
    )
    parser.add_argument(
        "--install-timeout", type=float, default=360, help="seconds for the Evidently install"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.sizes) or args.batch_rows < 1 or args.runs < 1:
        parser.error("--sizes, --batch-rows and --runs must be positive")
    args.sizes = sorted(args.sizes)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with workspace(args.workdir, args.keep, _CREATED) as workdir:
        result = run(args, workdir)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
