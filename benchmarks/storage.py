"""Storage benchmark: commit, dedup, checkout and start-up against simple floors.

    python benchmarks/storage.py [--size-mib 256] [--workdir DIR] [--keep] [--json]

Builds a safetensors file of 32 float32 tensors, commits 8 versions of it (v2-v7
each change 3 tensors, v8 changes all), checks it out again and compares every
figure with a floor measured in the same run on the same disk:

- commit of a partial change  vs  BLAKE3 of the whole file + `cp` of only the changed bytes
- checkout                    vs  `cp` of the whole file
- bytes stored                vs  1.1 x (one file + the bytes of every changed tensor)
- `modelkeep --help`          vs  0.3 s (with `python -c pass` shown as the baseline)

Nothing is tuned or skipped: page caches are left as they are, so the floors and
modelkeep alike read a file that was just written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from safetensors.numpy import save_file

import modelkeep

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

from _bench import Check, blake3_file, log, mib, row, secs, timed, workspace

T = TypeVar("T")

MIB = 1 << 20
N_TENSORS = 32
N_VERSIONS = 8
PARTIAL_CHANGES = 3  # tensors changed by each of v2..v7
SEED = 20240601
MODEL = "llm"
FILE_NAME = "model.safetensors"

# Targets.
COMMIT_MAX_RATIO = 3.0
CHECKOUT_MAX_RATIO = 2.0
STORE_SLACK = 1.1
STORE_MAX_RATIO = 1.0
HELP_MAX_SECONDS = 0.3

# What the benchmark creates inside the work folder; nothing else is touched.
_CREATED = (FILE_NAME, "copy.safetensors", "repo", "checkout-v3")


def median_seconds(runs: int, fn: Callable[[], object]) -> float:
    return statistics.median(timed(fn)[0] for _ in range(runs))



def cp(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    subprocess.run(["cp", str(src), str(dst)], check=True)


def tree_size(root: Path) -> dict[str, int]:
    """Bytes of the files under ``root``, by top-level folder."""
    sizes: dict[str, int] = {}
    for dirpath, _dirs, names in os.walk(root):
        top = Path(dirpath).relative_to(root).parts
        key = top[0] if top else "."
        for name in names:
            sizes[key] = sizes.get(key, 0) + (Path(dirpath) / name).stat().st_size
    return sizes


def cli_seconds(argv: Sequence[str], runs: int) -> float | None:
    """Median wall time of running ``argv``; None if it is missing or fails."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        try:
            proc = subprocess.run(argv, capture_output=True, check=False)
        except OSError:
            return None
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            return None
    return statistics.median(times)


def modelkeep_executable() -> str | None:
    """The console script beside this interpreter (no pyenv shim), else the one on PATH."""
    beside = Path(sys.executable).parent / "modelkeep"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("modelkeep")


# -- the model ------------------------------------------------------------------------


class Model:
    """32 equally sized float32 tensors that can be changed and written out."""

    def __init__(self, size_mib: int, rng: np.random.Generator) -> None:
        elements = size_mib * MIB // 4 // N_TENSORS
        self.shape = (elements // 1024, 1024)
        self.rng = rng
        self.names = [f"layers.{i:02d}.weight" for i in range(N_TENSORS)]
        self.tensors = {name: self._random() for name in self.names}

    def _random(self) -> np.ndarray:
        return self.rng.standard_normal(self.shape, dtype=np.float32)

    def change(self, count: int) -> tuple[list[str], int]:
        """Give ``count`` random tensors new values; returns their names and bytes."""
        picked = sorted(self.rng.choice(N_TENSORS, size=count, replace=False).tolist())
        names = [self.names[i] for i in picked]
        for name in names:
            self.tensors[name] = self._random()
        return names, sum(self.tensors[n].nbytes for n in names)

    def write(self, path: Path) -> int:
        save_file(self.tensors, str(path))
        return path.stat().st_size


# -- results --------------------------------------------------------------------------


@dataclass
class CommitRow:
    version: int
    changed_tensors: int
    changed_bytes: int
    file_bytes: int
    seconds: float
    floor_seconds: float
    store_added_bytes: int


def run(size_mib: int, workdir: Path) -> dict[str, Any]:
    model_path = workdir / FILE_NAME
    copy_path = workdir / "copy.safetensors"
    repo_path = workdir / "repo"
    store_path = repo_path / ".modelkeep" / "store"
    load = os.getloadavg()[0]  # other work on the machine skews every timing

    log(f"building {N_TENSORS} float32 tensors, {size_mib} MiB, in {workdir}")
    model = Model(size_mib, np.random.default_rng(SEED))
    file_bytes = model.write(model_path)
    tensor_bytes = next(iter(model.tensors.values())).nbytes

    log("floors: BLAKE3 of the file, cp of the file")
    hash_s = median_seconds(3, lambda: blake3_file(model_path))
    cp_s = median_seconds(3, lambda: cp(model_path, copy_path))
    copy_path.unlink()

    def floor(changed: int) -> float:
        return hash_s + cp_s * changed / file_bytes

    log(f"committing {N_VERSIONS} versions")
    repo = modelkeep.Repo.init(repo_path)
    hashes: dict[int, str] = {}
    commits: list[CommitRow] = []
    stored = 0
    try:
        for number in range(1, N_VERSIONS + 1):
            if number == 1:
                changed_names, changed = list(model.names), tensor_bytes * N_TENSORS
            elif number < N_VERSIONS:
                changed_names, changed = model.change(PARTIAL_CHANGES)
            else:
                changed_names, changed = model.change(N_TENSORS)
            size = model.write(model_path)
            hashes[number] = blake3_file(model_path)
            message = f"v{number}: {len(changed_names)} tensors changed"
            seconds, version = timed(partial(repo.commit, MODEL, model_path, message))
            if version.number != number:
                raise RuntimeError(f"expected {MODEL}:{number}, commit made {version.rev}")
            now = sum(tree_size(store_path).values())
            commits.append(
                CommitRow(
                    number,
                    len(changed_names),
                    changed,
                    size,
                    seconds,
                    floor(changed),
                    now - stored,
                )
            )
            stored = now
            log(f"  v{number}: {seconds:.3f} s")

        log("checking out llm:3")
        dest = workdir / "checkout-v3"
        checkout_s, _ = timed(lambda: repo.checkout(f"{MODEL}:3", dest))
        if blake3_file(dest / FILE_NAME) != hashes[3]:
            raise RuntimeError(f"{dest / FILE_NAME} is not byte-identical to v3")
    finally:
        repo.close()

    by_folder = tree_size(store_path)
    stored = sum(by_folder.values())
    changed_total = sum(c.changed_bytes for c in commits[1:])
    bound = STORE_SLACK * (file_bytes + changed_total)
    partial_rows = commits[1 : N_VERSIONS - 1]
    partial_s = statistics.median(c.seconds for c in partial_rows)
    partial_changed = int(statistics.median(c.changed_bytes for c in partial_rows))
    partial_floor = floor(partial_changed)

    log("start-up")
    exe = modelkeep_executable()
    python_s = cli_seconds([sys.executable, "-c", "pass"], 5)
    help_s = cli_seconds([exe, "--help"], 5) if exe else None
    log_s, log_argv = None, ["modelkeep", "log", MODEL, "--repo", "<repo>"]
    if exe:
        # As asked; if the CLI only takes --repo before the command, time that form instead.
        for form in (["log", MODEL, "--repo", "<repo>"], ["--repo", "<repo>", "log", MODEL]):
            argv = [str(repo_path) if a == "<repo>" else a for a in form]
            log_s = cli_seconds([exe, *argv], 3)
            if log_s is not None:
                log_argv = ["modelkeep", *form]
                break

    checks = [
        Check(
            "partial commit (v2-v7 median) / floor",
            partial_s / partial_floor,
            COMMIT_MAX_RATIO,
            "x",
            f"{partial_s:.3f} s vs {partial_floor:.3f} s "
            f"(hash {hash_s:.3f} + cp x {partial_changed / file_bytes:.3f})",
        ),
        Check(
            "checkout v3 / cp",
            checkout_s / cp_s,
            CHECKOUT_MAX_RATIO,
            "x",
            f"{checkout_s:.3f} s vs {cp_s:.3f} s",
        ),
        Check(
            "bytes stored / bound",
            stored / bound,
            STORE_MAX_RATIO,
            "x",
            f"{stored / MIB:.1f} MiB vs {bound / MIB:.1f} MiB",
        ),
        Check(
            "modelkeep --help",
            help_s,
            HELP_MAX_SECONDS,
            "s",
            "CLI not available" if help_s is None else f"python -c pass: {python_s:.3f} s",
        ),
    ]
    return {
        "config": {
            "size_mib": size_mib,
            "tensors": N_TENSORS,
            "tensor_bytes": tensor_bytes,
            "tensor_shape": list(model.shape),
            "versions": N_VERSIONS,
            "seed": SEED,
            "file_bytes": file_bytes,
            "workdir": str(workdir),
            "cpus": os.cpu_count(),
            "load_average_1m": load,
            "python": sys.version.split()[0],
            "modelkeep": modelkeep.__version__,
        },
        "floors": {"blake3_file_seconds": hash_s, "cp_file_seconds": cp_s},
        "commits": [asdict(c) for c in commits],
        "storage": {
            "stored_bytes": stored,
            "stored_by_folder": by_folder,
            "sum_of_files_bytes": sum(c.file_bytes for c in commits),
            "changed_tensor_bytes_v2_v8": changed_total,
            "bound_bytes": bound,
        },
        "checkout": {"rev": f"{MODEL}:3", "seconds": checkout_s, "verified": True},
        "startup": {
            "executable": exe,
            "python_pass_seconds": python_s,
            "help_seconds": help_s,
            "log_seconds": log_s,
            "log_command": " ".join(log_argv),
        },
        "checks": [{**asdict(c), "status": c.status} for c in checks],
    }


# -- output ---------------------------------------------------------------------------


def render(result: dict[str, Any]) -> str:
    cfg, floors, st = result["config"], result["floors"], result["storage"]
    startup, checkout = result["startup"], result["checkout"]
    hash_s, cp_s = floors["blake3_file_seconds"], floors["cp_file_seconds"]
    file_mib = cfg["file_bytes"] / MIB
    lines = [
        f"modelkeep {cfg['modelkeep']} storage benchmark: {cfg['size_mib']} MiB file, "
        f"{cfg['tensors']} x float32{tuple(cfg['tensor_shape'])}, "
        f"{cfg['cpus']} CPUs (load {cfg['load_average_1m']:.2f}), Python {cfg['python']}",
        "",
        "Floors (median of 3)",
        row("read + BLAKE3 whole file", secs(hash_s), f"{file_mib / hash_s:,.0f} MiB/s"),
        row("cp whole file", secs(cp_s), f"{file_mib / cp_s:,.0f} MiB/s"),
        "",
        "Commits (floor = read+BLAKE3 whole file + cp time x changed bytes / file size)",
        f"  {'ver':<3}  {'tensors':>7}  {'changed':>12}  {'commit':>9}  {'floor':>9}  "
        f"{'ratio':>6}  {'store +':>12}",
    ]
    for c in result["commits"]:
        lines.append(
            f"  v{c['version']:<2}  {c['changed_tensors']:>7}  {mib(c['changed_bytes']):>12}  "
            f"{secs(c['seconds']):>9}  {secs(c['floor_seconds']):>9}  "
            f"{c['seconds'] / c['floor_seconds']:>5.2f}x  {mib(c['store_added_bytes']):>12}"
        )
    by_folder = ", ".join(f"{k} {mib(v)}" for k, v in sorted(st["stored_by_folder"].items()))
    share = st["stored_bytes"] / st["sum_of_files_bytes"]
    lines += [
        "",
        "Storage",
        row("stored under .modelkeep/store", mib(st["stored_bytes"]), by_folder),
        row(
            f"sum of the {len(result['commits'])} file versions",
            mib(st["sum_of_files_bytes"]),
            f"stored is {share:.3f} of it",
        ),
        row("tensor bytes changed in v2..v8", mib(st["changed_tensor_bytes_v2_v8"])),
        row(f"bound {STORE_SLACK} x (one file + changed)", mib(st["bound_bytes"])),
        "",
        "Checkout",
        row(
            f"{checkout['rev']} into a fresh folder",
            secs(checkout["seconds"]),
            "byte-identical: yes",
        ),
        "",
        f"Start-up ({startup['executable'] or 'modelkeep not found'})",
        row("python -c pass (baseline, median of 5)", secs(startup["python_pass_seconds"])),
        row("modelkeep --help (median of 5)", secs(startup["help_seconds"])),
        row(f"{startup['log_command']} (median of 3)", secs(startup["log_seconds"])),
        "",
        "Summary",
    ]
    for c in result["checks"]:
        value = "n/a" if c["value"] is None else f"{c['value']:.2f}{c['unit']}"
        target = f"target <= {c['limit']:g}{c['unit']}"
        lines.append(f"  {c['status']:<4}  {c['name']:<38} {value:>7}  {target:<15}  {c['detail']}")
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256, help="model size (default 256)")
    parser.add_argument("--workdir", type=Path, help="folder to work in (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="leave the files behind")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.size_mib < 1:
        parser.error("--size-mib must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with workspace(args.workdir, args.keep, _CREATED) as workdir:
        result = run(args.size_mib, workdir)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
