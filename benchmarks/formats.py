"""Formats benchmark: commit and load of model objects next to their bare serializers.

    python benchmarks/formats.py [--sklearn-mb 100] [--torch-mb 500] [--workdir DIR]
                                 [--keep] [--json]

Measures, in the same run on the same disk:

- a scikit-learn RandomForestClassifier of about --sklearn-mb MiB as skops:
  `repo.commit` vs `skops.io.dump`, `repo.load` vs `skops.io.load` (given
  `skops.io.get_untrusted_types` of the file, as modelkeep does)
- a PyTorch state dict of about --torch-mb MiB (24 layers, weight + bias, float32):
  `repo.commit` vs `safetensors.torch.save_file`, `repo.load` vs `load_file`
- the same state dict with one layer's weight changed, committed again: the bytes that
  commit adds to `.modelkeep/store` vs the size of that tensor

Two baselines where the bare call does less than modelkeep promises (both are printed,
each with its own PASS/MISS; the issue's targets name the first):

- as stated: the bare call alone (`dump`, `save_file`, `load_file`).
- like for like: a commit is durable when it returns (its objects are fsynced before
  the version row is written), so it is also compared with the serializer followed by
  fsync of the file. `load_file` maps the file and reads nothing until a tensor is
  used; `repo.load` of a state dict maps the store's objects the same way: the torch
  loads are also compared with every tensor read once after loading, on both sides.
  (skops loads eagerly: there the two baselines are one.)

Each timed commit goes into a repository made empty just before. The scikit-learn load
is timed cold (`.modelkeep/cache` deleted first, so the checkout into the cache counts)
and warm (cache kept). The torch load is timed cold (the repository opened afresh, as a
new process finds it: its store objects were written and fsynced by this machine, which
the store's trust ledger records), untrusted (the ledger deleted too, as in a repository
copied from elsewhere: every byte is hashed once, no target) and warm (the same `Repo`
again). Every time is the median of 3 runs, or 1 run when the first takes over
10 s; the bare calls and modelkeep's take turns, run by run, so that other work on the
machine weighs on both alike. A missed target gets one more, profiled run and a
one-line "where the time goes".

Only the state dict is measured, not an nn.Module: modelkeep stores a module with the
import path of its class, and a class defined here would live in __main__, which
modelkeep refuses to commit (it could not be imported back when loading).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import pstats
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import safetensors
import safetensors.torch as st
import sklearn
import skops
import skops.io as sio
import torch
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

import modelkeep

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

from _bench import log, mib, row, secs, timed, workspace

T = TypeVar("T")

KIB = 1 << 10
MIB = 1 << 20
SEED = 20240601
RUNS = 3
LONG_RUN_SECONDS = 10.0  # a first run longer than this is the only run

# The forest: synthetic, noisy data so that fully grown trees are large.
ROWS = 20_000
FEATURES = 20
INFORMATIVE = 10
PILOT_TREES = 8  # fitted and dumped first to learn the bytes per tree
PROBE_ROWS = 1_000  # rows whose predictions must survive the round trip

# The state dict.
LAYERS = 24
CHANGED_LAYER = LAYERS // 2

# Targets.
COMMIT_MAX_RATIO = 1.5
LOAD_MAX_RATIO = 1.3
LAYER_SLACK = 1.1
METADATA_ALLOWANCE = 16 * KIB  # file manifest, tree, pack index of the second commit

FOREST = "forest"
NET = "net"
SKOPS_FILE = "forest.skops"
TORCH_FILE = "net.safetensors"
SKLEARN_REPO = "repo"
TORCH_REPO = "repo-torch"
PROFILE_REPO = "repo-profile"

# What the benchmark creates inside the work folder; nothing else is touched.
_CREATED = (SKOPS_FILE, TORCH_FILE, SKLEARN_REPO, TORCH_REPO, PROFILE_REPO)

# Steps of a commit or a load, found in a cProfile run by file and function name.
# None of them runs inside another, so their times add up.
PHASES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("skops dump", "skops/io/_persist.py", ("dump", "dumps")),
    ("skops get_untrusted_types", "skops/io/_persist.py", ("get_untrusted_types",)),
    ("skops load", "skops/io/_persist.py", ("load",)),
    ("safetensors save_file", "safetensors/torch.py", ("save_file",)),
    ("safetensors layout in memory", "modelkeep/formats/stlayout.py", ("layout",)),
    ("safetensors load_file", "safetensors/torch.py", ("load_file",)),
    (
        "store chunks (cut, hash, compress, write, fsync)",
        "modelkeep/store/objects.py",
        ("store_file", "store_parts"),
    ),
    ("store: pack, folders fsynced", "modelkeep/store/objects.py", ("close",)),
    ("tensors from the stored bytes (mapped)", "modelkeep/formats/stlayout.py", ("tensors",)),
    ("checkout: chunks verified and copied", "modelkeep/repo.py", ("_write_file",)),
    ("checkout: hash the cached file", "modelkeep/repo.py", ("_matches",)),
    ("resolve revision", "modelkeep/repo.py", ("resolve",)),
    ("tree and manifest", "modelkeep/repo.py", ("tree", "_manifest")),
    ("registry write", "modelkeep/registry/", ("add_version",)),
    ("library versions", "modelkeep/formats/base.py", ("versions",)),
    ("temp folder removal", "tempfile.py", ("cleanup",)),
)


@dataclass
class Timing:
    seconds: float  # median of runs
    runs: list[float]


Job = tuple["Callable[[], Any]", "Callable[[], object] | None"]


def measure(*jobs: Job) -> list[tuple[Timing, Any]]:
    """Each job (``fn``, ``before``) run ``RUNS`` times, the jobs taking turns so that
    what else the machine does weighs on all of them alike (1 round if a first run is
    long); ``before`` is called, untimed, ahead of each run. Returns each job's median
    timing and last result."""
    times: list[list[float]] = [[] for _ in jobs]
    results: list[Any] = [None] * len(jobs)
    for _ in range(RUNS):
        for i, (fn, before) in enumerate(jobs):
            if before is not None:
                before()
            seconds, results[i] = timed(fn)
            times[i].append(seconds)
        if max(t[0] for t in times) > LONG_RUN_SECONDS:
            break
    return [(Timing(statistics.median(t), t), r) for t, r in zip(times, results, strict=True)]


def tree_bytes(root: Path) -> int:
    return sum(
        (Path(dirpath) / name).stat().st_size
        for dirpath, _dirs, names in os.walk(root)
        for name in names
    )


def where_time_goes(fn: Callable[[], object], before: Callable[[], object] | None = None) -> str:
    """One profiled run of ``fn``, told as the time of each step in ``PHASES``."""
    if before is not None:
        before()
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    try:
        fn()
    finally:
        profiler.disable()
    total = time.perf_counter() - start
    table: dict[tuple[str, int, str], tuple[Any, ...]]
    table = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    parts: list[tuple[str, float]] = []
    for label, fragment, names in PHASES:
        seconds = sum(
            float(row[3])  # cumulative time
            for (path, _line, func), row in table.items()
            if func in names and fragment in path.replace(os.sep, "/")
        )
        if seconds >= 0.02 * total:
            parts.append((label, seconds))
    parts.sort(key=lambda p: -p[1])
    rest = total - sum(s for _, s in parts)

    def fmt(seconds: float) -> str:
        return f"{seconds * 1e3:.1f} ms" if total < 0.1 else f"{seconds:.2f} s"

    steps = ", ".join(f"{label} {fmt(s)} ({s / total:.0%})" for label, s in parts)
    return (
        f"where the time goes (1 run under cProfile, which slows pure-Python steps most; "
        f"{fmt(total)}): {steps}, rest {fmt(rest)}"
    )


class Scratch:
    """A repository at ``path``, made anew and empty by every ``reset``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._repo: modelkeep.Repo | None = None

    @property
    def repo(self) -> modelkeep.Repo:
        if self._repo is None:
            self.reset()
        assert self._repo is not None
        return self._repo

    def reset(self) -> None:
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self._repo = modelkeep.Repo.init(self.path)

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()
            self._repo = None

    def drop_cache(self) -> None:
        shutil.rmtree(self.path / ".modelkeep" / "cache", ignore_errors=True)

    def reopen_cold(self) -> None:
        """As a new process finds the repository: load cache deleted, the repository
        opened afresh (so the store's trust ledger is read again from disk)."""
        self.close()
        self.drop_cache()
        self._repo = modelkeep.Repo(self.path)

    def reopen_untrusted(self) -> None:
        """As a machine that did not write the objects finds them (a copied repository):
        cold, and the trust ledger deleted, so every byte is hashed."""
        (self.path / ".modelkeep" / "store" / "verified").unlink(missing_ok=True)
        self.reopen_cold()

    def store_bytes(self) -> int:
        return tree_bytes(self.path / ".modelkeep" / "store")


def profiled_commit(workdir: Path, name: str, model: object) -> str:
    """``where_time_goes`` of one commit into a throw-away repository."""
    scratch = Scratch(workdir / PROFILE_REPO)
    try:
        return where_time_goes(lambda: scratch.repo.commit(name, model), before=scratch.reset)
    finally:
        scratch.close()
        shutil.rmtree(scratch.path, ignore_errors=True)


def _pair(bare: Timing, mine: Timing, limit: float | None) -> dict[str, Any]:
    return {
        "bare": asdict(bare),
        "modelkeep": asdict(mine),
        "ratio": mine.seconds / bare.seconds,
        "limit": limit,
        "hint": None,
    }


def fsynced(path: Path, save: Callable[[], object]) -> Callable[[], None]:
    """``save``, then fsync of the file it wrote: the durability a commit gives."""

    def run() -> None:
        save()
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    return run


# -- scikit-learn ---------------------------------------------------------------------


def build_forest(
    target_bytes: int, path: Path
) -> tuple[RandomForestClassifier, np.ndarray, dict[str, Any]]:
    """A seeded forest whose skops file is about ``target_bytes``, and probe rows."""
    x, y = make_classification(
        n_samples=ROWS,
        n_features=FEATURES,
        n_informative=INFORMATIVE,
        flip_y=0.1,
        random_state=SEED,
    )
    pilot = RandomForestClassifier(n_estimators=PILOT_TREES, random_state=SEED, n_jobs=-1)
    pilot.fit(x, y)
    sio.dump(pilot, path)
    per_tree = path.stat().st_size / PILOT_TREES
    path.unlink()
    trees = max(1, round(target_bytes / per_tree))
    log(f"fitting {trees} trees on {ROWS:,} x {FEATURES} (pilot: {per_tree / MIB:.2f} MiB/tree)")
    model = RandomForestClassifier(n_estimators=trees, random_state=SEED, n_jobs=-1)
    fit_s, _ = timed(lambda: model.fit(x, y))
    nodes = sum(int(t.tree_.node_count) for t in model.estimators_)
    return (
        model,
        x[:PROBE_ROWS],
        {"trees": trees, "rows": ROWS, "features": FEATURES, "nodes": nodes, "fit_seconds": fit_s},
    )


def bench_sklearn(target_mib: int, workdir: Path) -> dict[str, Any]:
    path = workdir / SKOPS_FILE
    log(f"scikit-learn: building a ~{target_mib} MiB random forest")
    model, probe, forest = build_forest(target_mib * MIB, path)
    expected = model.predict_proba(probe)

    def same(loaded: Any, who: str) -> None:
        if not np.array_equal(loaded.predict_proba(probe), expected):
            raise RuntimeError(f"the forest loaded by {who} predicts differently")

    def bare_load() -> Any:
        return sio.load(path, trusted=sio.get_untrusted_types(file=path))

    unlink = lambda: path.unlink(missing_ok=True)  # noqa: E731
    scratch = Scratch(workdir / SKLEARN_REPO)
    try:
        log("  skops.io.dump, dump + fsync, modelkeep commit (in turn)")
        (dump_t, _), (durable_t, _), (commit_t, version) = measure(
            (lambda: sio.dump(model, path), unlink),
            (fsynced(path, lambda: sio.dump(model, path)), unlink),
            (lambda: scratch.repo.commit(FOREST, model, "formats benchmark"), scratch.reset),
        )
        file_bytes = path.stat().st_size
        # As this script measured before its jobs took turns: the bare call alone.
        ((dump_alone_t, _),) = measure((lambda: sio.dump(model, path), unlink))
        if version.rev != f"{FOREST}:1" or version.format != "sklearn":
            raise RuntimeError(f"expected {FOREST}:1 as sklearn, commit made {version.rev}")
        log("  skops.io.load, modelkeep load cold then warm (in turn)")
        (load_t, bare), (cold_t, cold_loaded), (warm_t, warm_loaded) = measure(
            (bare_load, None),
            (lambda: scratch.repo.load(FOREST), scratch.drop_cache),
            (lambda: scratch.repo.load(FOREST), None),
        )
        same(bare, "skops.io.load")
        same(cold_loaded, "repo.load (cold)")
        same(warm_loaded, "repo.load (warm)")
        del bare, cold_loaded, warm_loaded
        stored = scratch.store_bytes()

        commit = _pair(dump_t, commit_t, COMMIT_MAX_RATIO)
        commit_durable = _pair(durable_t, commit_t, COMMIT_MAX_RATIO)
        cold = _pair(load_t, cold_t, LOAD_MAX_RATIO)
        if commit["ratio"] > COMMIT_MAX_RATIO:
            log("  commit missed its target: profiling one more")
            commit["hint"] = profiled_commit(workdir, FOREST, model)
        if cold["ratio"] > LOAD_MAX_RATIO:
            log("  cold load missed its target: profiling one more")
            cold["hint"] = where_time_goes(
                lambda: scratch.repo.load(FOREST), before=scratch.drop_cache
            )
    finally:
        scratch.close()
    return {
        "model": {**forest, "file_bytes": file_bytes, "stored_bytes": stored, "seed": SEED},
        "commit": commit,
        "commit_vs_durable": commit_durable,
        "commit_vs_dump_alone": _pair(dump_alone_t, commit_t, None),
        "load_cold": cold,
        "load_warm": _pair(load_t, warm_t, None),
        "predictions_identical": True,
    }


# -- PyTorch --------------------------------------------------------------------------


def build_state_dict(target_bytes: int) -> tuple[dict[str, torch.Tensor], int]:
    """``LAYERS`` Linear-like layers (square weight + bias), float32, seeded."""
    width = max(1, math.isqrt(target_bytes // (LAYERS * 4)))
    gen = torch.Generator().manual_seed(SEED)
    state: dict[str, torch.Tensor] = {}
    for i in range(LAYERS):
        state[f"layers.{i:02d}.weight"] = torch.randn((width, width), generator=gen)
        state[f"layers.{i:02d}.bias"] = torch.randn((width,), generator=gen)
    return state, width


def read_all(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Read every byte of ``tensors`` once (summing them); returns them."""
    for t in tensors.values():
        float(t.sum())
    return tensors


def bench_torch(target_mib: int, workdir: Path) -> dict[str, Any]:
    path = workdir / TORCH_FILE
    log(f"PyTorch: building a ~{target_mib} MiB state dict")
    state, width = build_state_dict(target_mib * MIB)

    def same(loaded: Any, reference: dict[str, torch.Tensor], who: str) -> None:
        if set(loaded) != set(reference) or not all(
            torch.equal(loaded[k], v) for k, v in reference.items()
        ):
            raise RuntimeError(f"the state dict loaded by {who} differs")

    unlink = lambda: path.unlink(missing_ok=True)  # noqa: E731
    scratch = Scratch(workdir / TORCH_REPO)
    try:
        log("  save_file, save_file + fsync, modelkeep commit (in turn)")
        (save_t, _), (durable_t, _), (commit_t, version) = measure(
            (lambda: st.save_file(state, str(path)), unlink),
            (fsynced(path, lambda: st.save_file(state, str(path))), unlink),
            (lambda: scratch.repo.commit(NET, state, "formats benchmark"), scratch.reset),
        )
        file_bytes = path.stat().st_size
        # As this script measured before its jobs took turns: the bare call alone.
        ((save_alone_t, _),) = measure((lambda: st.save_file(state, str(path)), unlink))
        if version.rev != f"{NET}:1" or version.format != "torch":
            raise RuntimeError(f"expected {NET}:1 as torch, commit made {version.rev}")
        log("  load_file, modelkeep load cold, untrusted, warm; each alone then read (in turn)")
        timings = measure(
            (lambda: st.load_file(str(path)), None),
            (lambda: read_all(st.load_file(str(path))), None),
            (lambda: scratch.repo.load(NET), scratch.reopen_cold),
            (lambda: read_all(scratch.repo.load(NET)), scratch.reopen_cold),
            (lambda: scratch.repo.load(NET), scratch.reopen_untrusted),
            (lambda: read_all(scratch.repo.load(NET)), scratch.reopen_untrusted),
            (lambda: scratch.repo.load(NET), None),
            (lambda: read_all(scratch.repo.load(NET)), None),
        )
        (
            (load_t, load_read_t),
            (cold_t, cold_read_t),
            (untrusted_t, untrusted_read_t),
            (warm_t, warm_read_t),
        ) = ((timings[i][0], timings[i + 1][0]) for i in range(0, len(timings), 2))
        whose = ("load_file", "repo.load (cold)", "repo.load (untrusted)", "repo.load (warm)")
        for (_, loaded), who in zip(timings, (w for w in whose for _ in "12"), strict=True):
            same(loaded, state, who)
        del timings, loaded
        stored = scratch.store_bytes()

        commit = _pair(save_t, commit_t, COMMIT_MAX_RATIO)
        commit_durable = _pair(durable_t, commit_t, COMMIT_MAX_RATIO)
        cold = _pair(load_t, cold_t, LOAD_MAX_RATIO)
        cold_read = _pair(load_read_t, cold_read_t, LOAD_MAX_RATIO)
        if commit_durable["ratio"] > COMMIT_MAX_RATIO or commit["ratio"] > COMMIT_MAX_RATIO:
            log("  commit missed a target: profiling one more")
            commit["hint"] = profiled_commit(workdir, NET, state)
        if cold["ratio"] > LOAD_MAX_RATIO:
            log("  cold load missed a target: profiling one more")
            cold["hint"] = where_time_goes(
                lambda: scratch.repo.load(NET), before=scratch.reopen_cold
            )

        log("  one layer changed: commit again")
        layer = f"layers.{CHANGED_LAYER:02d}.weight"
        changed = dict(state)
        changed[layer] = torch.randn(
            state[layer].shape, generator=torch.Generator().manual_seed(SEED + 1)
        )
        layer_bytes = changed[layer].numel() * changed[layer].element_size()
        stored_before = scratch.store_bytes()
        v2_s, v2 = timed(lambda: scratch.repo.commit(NET, changed, f"{layer} changed"))
        added = scratch.store_bytes() - stored_before
        path.unlink()
        save_v2_s, _ = timed(lambda: st.save_file(changed, str(path)))
        diff = scratch.repo.diff(f"{NET}:1", v2.rev)
        files = diff.changed
        chunks_new = sum(f.chunks_changed for f in files)
        chunks_total = sum(f.chunks_total for f in files)
        bytes_new = sum(f.bytes_changed for f in files)
        tensors = diff.tensors[0].summary if diff.tensors else "no tensor diff"
        changed_names = sorted(diff.tensors[0].changed) if diff.tensors else []
        bound = LAYER_SLACK * layer_bytes + METADATA_ALLOWANCE
    finally:
        scratch.close()
    return {
        "model": {
            "layers": LAYERS,
            "tensors": len(state),
            "width": width,
            "dtype": "float32",
            "file_bytes": file_bytes,
            "stored_bytes": stored,
            "seed": SEED,
        },
        "commit": commit,
        "commit_vs_durable": commit_durable,
        "commit_vs_save_alone": _pair(save_alone_t, commit_t, None),
        "load_cold": cold,
        "load_cold_read": cold_read,
        "load_untrusted": _pair(load_t, untrusted_t, None),
        "load_untrusted_read": _pair(load_read_t, untrusted_read_t, None),
        "load_warm": _pair(load_t, warm_t, None),
        "load_warm_read": _pair(load_read_t, warm_read_t, None),
        "tensors_identical": True,
        "one_layer": {
            "tensor": layer,
            "layer_bytes": layer_bytes,
            "rev": v2.rev,
            "commit_seconds": v2_s,
            "save_file_seconds": save_v2_s,
            "store_added_bytes": added,
            "bound_bytes": bound,
            "chunks_new": chunks_new,
            "chunks_total": chunks_total,
            "chunk_bytes_new": bytes_new,
            "tensor_diff": tensors,
            "tensors_changed": changed_names,
        },
    }


# -- the run --------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    value: float
    limit: float
    unit: str
    detail: str
    hint: str | None = None

    @property
    def status(self) -> str:
        return "PASS" if self.value <= self.limit else "MISS"


def _time_check(name: str, pair: dict[str, Any], bare: str) -> Check:
    mine, base = pair["modelkeep"]["seconds"], pair["bare"]["seconds"]
    return Check(
        name,
        pair["ratio"],
        pair["limit"],
        "x",
        f"{mine:.3f} s vs {bare} {base:.3f} s",
        pair["hint"],
    )


def run(sklearn_mib: int, torch_mib: int, workdir: Path) -> dict[str, Any]:
    load = os.getloadavg()[0]  # other work on the machine skews every timing
    sk = bench_sklearn(sklearn_mib, workdir)
    tt = bench_torch(torch_mib, workdir)
    one = tt["one_layer"]
    layer_hint = None
    if one["store_added_bytes"] > one["bound_bytes"]:
        layer_hint = (
            f"{one['chunks_new']} of {one['chunks_total']} chunks new "
            f"({one['chunk_bytes_new'] / MIB:.1f} MiB); {one['tensor_diff']}"
        )
    # Each target twice where the bare call does less than modelkeep (see the docstring):
    # as the issue states it, and like for like.
    checks = [
        _time_check("sklearn commit / dump", sk["commit"], "dump"),
        _time_check("sklearn commit / dump+fsync", sk["commit_vs_durable"], "dump+fsync"),
        _time_check("sklearn load (cold) / skops load", sk["load_cold"], "load"),
        _time_check("torch commit / save_file", tt["commit"], "save_file"),
        _time_check("torch commit / save_file+fsync", tt["commit_vs_durable"], "save+fsync"),
        _time_check("torch load (cold) / load_file", tt["load_cold"], "load_file"),
        _time_check(
            "torch load+read (cold) / load_file+read", tt["load_cold_read"], "load_file+read"
        ),
        Check(
            "one-layer commit: store added / bound",
            one["store_added_bytes"] / one["bound_bytes"],
            1.0,
            "x",
            f"{one['store_added_bytes'] / MIB:.2f} MiB vs {LAYER_SLACK} x "
            f"{one['layer_bytes'] / MIB:.2f} MiB + {METADATA_ALLOWANCE // KIB} KiB",
            layer_hint,
        ),
    ]
    return {
        "config": {
            "sklearn_mib": sklearn_mib,
            "torch_mib": torch_mib,
            "runs": RUNS,
            "long_run_seconds": LONG_RUN_SECONDS,
            "workdir": str(workdir),
            "cpus": os.cpu_count(),
            "load_average_1m": load,
            "python": sys.version.split()[0],
            "modelkeep": modelkeep.__version__,
            "scikit-learn": sklearn.__version__,
            "skops": skops.__version__,
            "torch": torch.__version__,
            "safetensors": safetensors.__version__,
        },
        "sklearn": sk,
        "torch": tt,
        "nn_module": "not measured: a module class defined in this script lives in __main__, "
        "which modelkeep refuses to commit; the state dict is measured instead",
        "checks": [{**asdict(c), "status": c.status} for c in checks],
    }


# -- output ---------------------------------------------------------------------------


def _pair_row(label: str, pair: dict[str, Any]) -> str:
    bare, mine = pair["bare"], pair["modelkeep"]
    limit = "" if pair["limit"] is None else f"{pair['limit']:g}x"
    runs = f"{len(bare['runs'])}/{len(mine['runs'])}"
    return (
        f"  {label:<40} {secs(bare['seconds']):>9}  {secs(mine['seconds']):>9}  "
        f"{pair['ratio']:>7.2f}x  {limit:>6}  {runs:>5}"
    )


def _pair_header(bare: str) -> str:
    return f"  {'':<40} {bare:>9}  {'modelkeep':>9}  {'ratio':>8}  {'target':>6}  {'runs':>5}"


def render(result: dict[str, Any]) -> str:
    cfg, sk, tt = result["config"], result["sklearn"], result["torch"]
    forest, net, one = sk["model"], tt["model"], tt["one_layer"]
    width = net["width"]
    lines = [
        f"modelkeep {cfg['modelkeep']} formats benchmark: {cfg['cpus']} CPUs "
        f"(load {cfg['load_average_1m']:.2f}), Python {cfg['python']}, "
        f"scikit-learn {cfg['scikit-learn']}, skops {cfg['skops']}, torch {cfg['torch']}, "
        f"safetensors {cfg['safetensors']}",
        f"Times are medians of {cfg['runs']} runs (1 run where the first took over "
        f"{cfg['long_run_seconds']:g} s; runs column: bare/modelkeep); commits go into an "
        "empty repository",
        "",
        f"scikit-learn RandomForestClassifier: {forest['trees']} trees, {forest['nodes']:,} nodes, "
        f"fitted on {forest['rows']:,} x {forest['features']} in {forest['fit_seconds']:.1f} s "
        f"-> {mib(forest['file_bytes'])} as skops "
        f"({mib(forest['stored_bytes'])} in .modelkeep/store)",
        _pair_header("skops"),
        _pair_row("commit  vs  dump", sk["commit"]),
        _pair_row("commit  vs  dump + fsync", sk["commit_vs_durable"]),
        _pair_row("commit  vs  dump run alone (*)", sk["commit_vs_dump_alone"]),
        _pair_row("load, cold (cache deleted)  vs  load", sk["load_cold"]),
        _pair_row("load, warm (cache kept)  vs  load", sk["load_warm"]),
        "  predictions on 1,000 rows identical after every load: yes",
        "",
        f"PyTorch state dict: {net['layers']} layers x (weight {width}x{width} + bias {width}), "
        f"{net['tensors']} float32 tensors -> {mib(net['file_bytes'])} as safetensors "
        f"({mib(net['stored_bytes'])} in .modelkeep/store)",
        _pair_header("st"),
        _pair_row("commit  vs  save_file", tt["commit"]),
        _pair_row("commit  vs  save_file + fsync", tt["commit_vs_durable"]),
        _pair_row("commit  vs  save_file run alone (*)", tt["commit_vs_save_alone"]),
        _pair_row("load, cold (repo reopened)  vs  load_file", tt["load_cold"]),
        _pair_row("  the same, every tensor then read once", tt["load_cold_read"]),
        _pair_row("load, untrusted (ledger deleted)  vs  load_file", tt["load_untrusted"]),
        _pair_row("  the same, every tensor then read once", tt["load_untrusted_read"]),
        _pair_row("load, warm (same Repo)  vs  load_file", tt["load_warm"]),
        _pair_row("  the same, every tensor then read once", tt["load_warm_read"]),
        "  tensors identical after every load: yes",
        "  (both map the weights and read a tensor when it is used: repo.load maps the",
        "   store's objects, which this machine wrote and fsynced; 'untrusted' is a",
        "   repository copied from elsewhere: every byte is hashed once, then trusted)",
        "  (*) the bare call run 3 times in a row, as this script did before its jobs took",
        "      turns: a write right after another job's fsynced one is slower than alone",
        "  (nn.Module not measured: a class defined in this script lives in __main__, which",
        "   modelkeep refuses to commit as it could not import it back)",
        "",
        f"One layer changed ({one['tensor']}, {mib(one['layer_bytes'])}), committed as "
        f"{one['rev']} (1 run)",
        row(
            "commit",
            secs(one["commit_seconds"]),
            f"save_file of the changed dict: {secs(one['save_file_seconds'])}",
        ),
        row(
            "added to .modelkeep/store",
            mib(one["store_added_bytes"]),
            f"layer + {(one['store_added_bytes'] - one['layer_bytes']) / KIB:,.1f} KiB",
        ),
        row(
            "chunks new / total",
            f"{one['chunks_new']} / {one['chunks_total']}",
            f"{mib(one['chunk_bytes_new'])} new; diff: {one['tensor_diff']}",
        ),
        "",
        "Summary",
    ]
    for c in result["checks"]:
        value = f"{c['value']:.2f}{c['unit']}"
        target = f"target <= {c['limit']:g}{c['unit']}"
        lines.append(f"  {c['status']:<4}  {c['name']:<40} {value:>7}  {target:<15}  {c['detail']}")
        if c["hint"]:
            lines.append(f"        {c['hint']}")
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sklearn-mb", type=int, default=100, help="forest size as skops, MiB (default 100)"
    )
    parser.add_argument(
        "--torch-mb", type=int, default=500, help="state dict size, MiB (default 500)"
    )
    parser.add_argument("--workdir", type=Path, help="folder to work in (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="leave the files behind")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.sklearn_mb < 1 or args.torch_mb < 1:
        parser.error("--sklearn-mb and --torch-mb must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with workspace(args.workdir, args.keep, _CREATED) as workdir:
        result = run(args.sklearn_mb, args.torch_mb, workdir)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
