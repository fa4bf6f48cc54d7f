"""Update benchmark: incremental vs batch updates as the training history grows.

    python benchmarks/update.py [--sizes 10000,30000,100000,300000,1000000]
                                [--new-rows 10000] [--workdir DIR] [--keep] [--json]

One seeded classification table (20 features) is made at the largest size plus the
new rows, and sliced. For every training-set size N:

- the first N rows are stored as a Parquet dataset with `repo.data_add`, and an
  SGDClassifier(loss="log_loss") fitted on them is committed with that dataset as its
  training data (the parent);
- `repo.update(parent, data=new.parquet, target="label", gate="f1 >= parent - 1")`
  is timed with `strategy="incremental"` (the parent's model, `partial_fit` on the new
  rows only) and with `strategy="batch"` (a clone of it refitted on N + the new rows),
  always on the same, fixed new rows (the last --new-rows rows of the table, in no
  training set);
- as the in-run baseline, the bare training steps outside modelkeep on the very rows
  the update trains on (the update holds 20% of the new rows out for its gate, with the
  same seeded split): `copy.deepcopy(model).partial_fit(X_new, y_new)` and
  `clone(model).fit(X_all, y_all)`, so that modelkeep's overhead per update shows.

Both strategies use the same estimator, so the comparison is like for like. The gate
always passes, so every candidate takes the same path (committed on the parent's
branch). Every update time is the median of 3 runs, or 1 run when the first takes
over 10 s; each round runs incremental, bare partial_fit, batch and bare fit in turn,
a bare step as often as its update, so that the updates and their baselines see the
same machine; at the smallest size one untimed update of each strategy goes first, so
that the process's one-time imports are not counted against it. The claim: incremental
cost stays flat as the history grows (max / min across sizes <= 1.5x) while batch
grows (largest / smallest size > 1.5x).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sklearn
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split

import modelkeep
from modelkeep.update.runner import HOLDOUT_SHARE

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

from _bench import log, mib, row, secs, timed, workspace

SEED = 20240601
FEATURES = 20
INFORMATIVE = 10
TARGET = "label"
DATASET = "train"
RUNS = 3
LONG_RUN_SECONDS = 10.0  # a first run longer than this is the only run
GATE = "f1 >= parent - 1"  # passes always: the gate's verdict is not what is timed
DEFAULT_SIZES = (10_000, 30_000, 100_000, 300_000, 1_000_000)
DEFAULT_NEW_ROWS = 10_000
MIN_NEW_ROWS = 100

# Targets.
FLAT_MAX_RATIO = 1.5  # incremental, slowest size / fastest size
GROWTH_MIN_RATIO = 1.5  # batch, largest size / smallest size: more than "flat"

# What the benchmark creates inside the work folder; nothing else is touched.
_CREATED = ("data", "repo")


@dataclass
class Series:
    """The runs of one measurement: up to ``RUNS``, stopping after a long one."""

    runs: list[float] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return len(self.runs) >= RUNS or any(r > LONG_RUN_SECONDS for r in self.runs)

    @property
    def seconds(self) -> float:
        return statistics.median(self.runs)

    def add(self, fn: Callable[[], object]) -> Any:
        seconds, result = timed(fn)
        self.runs.append(seconds)
        return result


@dataclass
class SizeRow:
    rows: int
    dataset_rev: str
    dataset_bytes: int
    parent_rev: str
    parent_fit_seconds: float
    data_add_seconds: float
    parent_commit_seconds: float
    incremental_seconds: float
    incremental_runs: list[float]
    batch_seconds: float
    batch_runs: list[float]
    bare_partial_fit_seconds: float
    bare_partial_fit_runs: list[float]
    bare_fit_seconds: float
    bare_fit_runs: list[float]
    incremental_f1: float
    batch_f1: float
    parent_f1: float

    @property
    def ratio(self) -> float:
        return self.batch_seconds / self.incremental_seconds


@dataclass
class Check:
    name: str
    value: float
    limit: float
    op: str  # "<=" or ">"
    detail: str

    @property
    def status(self) -> str:
        ok = self.value <= self.limit if self.op == "<=" else self.value > self.limit
        return "PASS" if ok else "MISS"


def _list(runs: Sequence[float]) -> str:
    return ", ".join(f"{r:.3f} s" for r in runs)


def make_table(rows: int) -> pd.DataFrame:
    x, y = make_classification(
        n_samples=rows,
        n_features=FEATURES,
        n_informative=INFORMATIVE,
        random_state=SEED,
    )
    frame = pd.DataFrame(x, columns=[f"f{i:02d}" for i in range(FEATURES)])
    frame[TARGET] = y.astype(np.int64)
    return frame


def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    return frame.drop(columns=[TARGET]), frame[TARGET]


def new_estimator() -> SGDClassifier:
    return SGDClassifier(loss="log_loss", random_state=SEED)


def bench_size(
    repo: modelkeep.Repo,
    n: int,
    table: pd.DataFrame,
    new_path: Path,
    x_new_train: pd.DataFrame,
    y_new_train: pd.Series,
    data_dir: Path,
    warm_up: bool,
) -> SizeRow:
    """Store the first ``n`` rows, commit a parent fitted on them, time both updates
    (after one untimed update of each strategy if ``warm_up``)."""
    train = table.iloc[:n]
    train_path = data_dir / f"train-{n}.parquet"
    train.to_parquet(train_path, index=False)
    add_s, dataset = timed(
        lambda: repo.data_add(DATASET, train_path, f"first {n:,} rows of the table")
    )

    x_n, y_n = split(train)
    model = new_estimator()
    fit_s, _ = timed(lambda: model.fit(x_n, y_n))
    commit_s, parent = timed(
        lambda: repo.commit(
            f"clf-{n}",
            model,
            f"SGDClassifier on {dataset.rev}",
            data=[dataset.rev],
            input_example=x_n.head(5),
            target=TARGET,
        )
    )

    # The bare training steps run on exactly the rows the updates train on, and in
    # the same rounds as the updates, so that both see the same machine.
    x_all = pd.concat([x_n, x_new_train], ignore_index=True)
    y_all = pd.concat([y_n, y_new_train], ignore_index=True)
    update = partial(repo.update, parent.rev, data=str(new_path), target=TARGET, gate=GATE)
    incremental, bare_partial, batch, bare_fit = Series(), Series(), Series(), Series()
    # (strategy, its series, the bare step's series, the bare step): a bare step runs
    # right after its update, as often as the update does.
    pairs: list[tuple[str, Series, Series, Callable[[], object]]] = [
        (
            "incremental",
            incremental,
            bare_partial,
            lambda: copy.deepcopy(model).partial_fit(x_new_train, y_new_train),
        ),
        ("batch", batch, bare_fit, lambda: clone(model).fit(x_all, y_all)),
    ]
    if warm_up:  # the first update in a process pays one-time imports and caches
        for strategy, *_ in pairs:
            update(strategy=strategy)
    results: dict[str, Any] = {}
    while not all(series.done for _, series, _, _ in pairs):
        for strategy, series, bare, bare_step in pairs:
            if series.done:
                continue
            result = series.add(partial(update, strategy=strategy))
            if not result.passed:
                raise RuntimeError(f"{strategy} update of {parent.rev} was rejected: {result}")
            results[strategy] = result
            bare.add(bare_step)
    for name, series in (
        ("incremental", incremental),
        ("bare partial_fit", bare_partial),
        ("batch", batch),
        ("bare fit", bare_fit),
    ):
        log(f"  {name:<16} {_list(series.runs)}")

    return SizeRow(
        rows=n,
        dataset_rev=dataset.rev,
        dataset_bytes=train_path.stat().st_size,
        parent_rev=parent.rev,
        parent_fit_seconds=fit_s,
        data_add_seconds=add_s,
        parent_commit_seconds=commit_s,
        incremental_seconds=incremental.seconds,
        incremental_runs=incremental.runs,
        batch_seconds=batch.seconds,
        batch_runs=batch.runs,
        bare_partial_fit_seconds=bare_partial.seconds,
        bare_partial_fit_runs=bare_partial.runs,
        bare_fit_seconds=bare_fit.seconds,
        bare_fit_runs=bare_fit.runs,
        incremental_f1=results["incremental"].candidate_metrics["f1"],
        batch_f1=results["batch"].candidate_metrics["f1"],
        parent_f1=results["batch"].parent_metrics["f1"],
    )


def run(sizes: Sequence[int], new_rows: int, workdir: Path) -> dict[str, Any]:
    data_dir = workdir / "data"
    data_dir.mkdir()
    load_start = os.getloadavg()[0]  # other work on the machine skews every timing

    largest = max(sizes)
    log(f"building a {largest + new_rows:,} x {FEATURES} classification table in {workdir}")
    table = make_table(largest + new_rows)
    new = table.iloc[largest:]
    new_path = data_dir / "new.parquet"
    new.to_parquet(new_path, index=False)
    x_new, y_new = split(new)
    x_new_train, _x_hold, y_new_train, _y_hold = train_test_split(
        x_new, y_new, test_size=HOLDOUT_SHARE, random_state=0
    )

    repo = modelkeep.Repo.init(workdir / "repo")
    rows: list[SizeRow] = []
    try:
        for n in sizes:
            log(f"{n:,} training rows")
            rows.append(
                bench_size(
                    repo, n, table, new_path, x_new_train, y_new_train, data_dir, n == sizes[0]
                )
            )
    finally:
        repo.close()
    load_end = os.getloadavg()[0]

    inc = [r.incremental_seconds for r in rows]
    slowest = max(rows, key=lambda r: r.incremental_seconds)
    fastest = min(rows, key=lambda r: r.incremental_seconds)
    first, last = rows[0], rows[-1]
    checks = [
        Check(
            "incremental, max / min across sizes",
            max(inc) / min(inc),
            FLAT_MAX_RATIO,
            "<=",
            f"{secs(slowest.incremental_seconds)} at {slowest.rows:,} rows vs "
            f"{secs(fastest.incremental_seconds)} at {fastest.rows:,} rows",
        ),
        Check(
            "batch, largest size / smallest",
            last.batch_seconds / first.batch_seconds,
            GROWTH_MIN_RATIO,
            ">",
            f"{secs(last.batch_seconds)} at {last.rows:,} rows vs "
            f"{secs(first.batch_seconds)} at {first.rows:,} rows",
        ),
    ]
    return {
        "config": {
            "sizes": list(sizes),
            "new_rows": new_rows,
            "new_rows_trained": len(x_new_train),
            "new_rows_held_out": new_rows - len(x_new_train),
            "features": FEATURES,
            "informative": INFORMATIVE,
            "seed": SEED,
            "estimator": repr(new_estimator()),
            "gate": GATE,
            "runs": RUNS,
            "long_run_seconds": LONG_RUN_SECONDS,
            "new_data_bytes": new_path.stat().st_size,
            "workdir": str(workdir),
            "cpus": os.cpu_count(),
            "load_average_1m": load_start,
            "load_average_1m_end": load_end,
            "python": sys.version.split()[0],
            "modelkeep": modelkeep.__version__,
            "scikit-learn": sklearn.__version__,
            "pandas": pd.__version__,
        },
        "sizes": [{**asdict(r), "batch_over_incremental": r.ratio} for r in rows],
        "checks": [{**asdict(c), "status": c.status} for c in checks],
    }


# -- output ---------------------------------------------------------------------------


def _runs(r: dict[str, Any]) -> str:
    counts = (len(r["incremental_runs"]), len(r["batch_runs"]))
    return "/".join(map(str, counts))


def render(result: dict[str, Any]) -> str:
    cfg, sizes = result["config"], result["sizes"]
    trained = cfg["new_rows_trained"]
    lines = [
        f"modelkeep {cfg['modelkeep']} update benchmark: {cfg['cpus']} CPUs "
        f"(load {cfg['load_average_1m']:.2f} at start, {cfg['load_average_1m_end']:.2f} at "
        f"end), Python {cfg['python']}, scikit-learn {cfg['scikit-learn']}, "
        f"pandas {cfg['pandas']}",
        f"{cfg['estimator']} on {cfg['features']} features; each update on the same "
        f"{cfg['new_rows']:,} new rows ({cfg['new_rows_trained']:,} trained on, "
        f"{cfg['new_rows_held_out']:,} held out for the gate), gate {cfg['gate']!r}",
        f"Times are medians of {cfg['runs']} runs (1 run where the first took over "
        f"{cfg['long_run_seconds']:g} s; runs column: incremental/batch); bare = the "
        "training step alone, outside modelkeep, on the same rows, run right after each "
        "update",
        "",
        f"  {'history':>9}  {'incremental':>11}  {'batch':>9}  {'batch/inc':>9}  "
        f"{'bare p_fit':>10}  {'bare fit':>9}  {'inc over':>9}  {'batch over':>10}  {'runs':>4}",
    ]
    for r in sizes:
        inc_over = r["incremental_seconds"] - r["bare_partial_fit_seconds"]
        batch_over = r["batch_seconds"] - r["bare_fit_seconds"]
        lines.append(
            f"  {r['rows']:>9,}  {secs(r['incremental_seconds']):>11}  "
            f"{secs(r['batch_seconds']):>9}  {r['batch_over_incremental']:>8.2f}x  "
            f"{secs(r['bare_partial_fit_seconds']):>10}  {secs(r['bare_fit_seconds']):>9}  "
            f"{secs(inc_over):>9}  {secs(batch_over):>10}  {_runs(r):>4}"
        )
    lines += [
        "  (over = update - bare step: loading, reading the data, the gate's evaluation,",
        "   the commit; batch also reads the parent's stored training set)",
        "",
        "Setup per size (not in the times above) and the f1 on the gate's holdout",
        f"  {'history':>9}  {'dataset':>9}  {'Parquet':>10}  {'data add':>9}  "
        f"{'parent fit':>10}  {'commit':>9}  {'f1 parent':>9}  {'incremental':>11}  {'batch':>6}",
    ]
    for r in sizes:
        lines.append(
            f"  {r['rows']:>9,}  {r['dataset_rev']:>9}  {mib(r['dataset_bytes']):>10}  "
            f"{secs(r['data_add_seconds']):>9}  {secs(r['parent_fit_seconds']):>10}  "
            f"{secs(r['parent_commit_seconds']):>9}  {r['parent_f1']:>9.3f}  "
            f"{r['incremental_f1']:>11.3f}  {r['batch_f1']:>6.3f}"
        )
    first, last = sizes[0], sizes[-1]
    span = f"{last['rows']:,} vs {first['rows']:,} rows"

    def growth(key: str) -> str:
        return f"{last[key] / first[key]:.2f}x"

    lines += [
        "",
        f"Growth, largest over smallest history ({span})",
        row("incremental update", growth("incremental_seconds")),
        row("bare partial_fit", growth("bare_partial_fit_seconds")),
        row("batch update", growth("batch_seconds")),
        row("bare fit", growth("bare_fit_seconds")),
        row(
            "training rows of a batch update",
            f"{(last['rows'] + trained) / (first['rows'] + trained):.2f}x",
        ),
        "",
        "Summary",
    ]
    for c in result["checks"]:
        value = f"{c['value']:.2f}x"
        target = f"target {c['op']} {c['limit']:g}x"
        lines.append(f"  {c['status']:<4}  {c['name']:<38} {value:>7}  {target:<15}  {c['detail']}")
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    try:
        values = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive integers: {text!r}")
    return sorted(set(values))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_sizes = ",".join(map(str, DEFAULT_SIZES))
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=list(DEFAULT_SIZES),
        help=f"training-set sizes, comma-separated (default {default_sizes})",
    )
    parser.add_argument(
        "--new-rows",
        type=int,
        default=DEFAULT_NEW_ROWS,
        help=f"rows of new data each update gets (default {DEFAULT_NEW_ROWS})",
    )
    parser.add_argument("--workdir", type=Path, help="folder to work in (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="leave the files behind")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.new_rows < MIN_NEW_ROWS:
        parser.error(f"--new-rows must be at least {MIN_NEW_ROWS}")
    if len(args.sizes) < 2:
        parser.error("--sizes needs at least two sizes to compare")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with workspace(args.workdir, args.keep, _CREATED) as workdir:
        result = run(args.sizes, args.new_rows, workdir)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
