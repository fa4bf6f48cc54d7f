"""What the benchmark scripts share: timing, table cells, the work folder, the venvs
of the tools measured against, and workload W1 (the versions of one large file)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

T = TypeVar("T")
MIB = 1 << 20
HASH_BLOCK = 16 * MIB

# W1: a safetensors file of N_TENSORS float32 tensors in several versions, CHANGED of
# them (10 %) new in each version after the first (benchmarks/engines.py, remote.py).
W1_FILE = "model.safetensors"
N_TENSORS = 40
CHANGED = 4
W1_SEED = 20250113


@dataclass
class Check:
    """A figure against its target: PASS when ``value <= limit`` (n/a without a value)."""

    name: str
    value: float | None
    limit: float
    unit: str
    detail: str

    @property
    def status(self) -> str:
        if self.value is None:
            return "n/a"
        return "PASS" if self.value <= self.limit else "MISS"


def blake3_file(path: Path) -> str:
    """Read ``path`` from disk and BLAKE3 it on every core."""
    import blake3

    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    buf = bytearray(HASH_BLOCK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            hasher.update(view[:n])
    return hasher.hexdigest()


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def secs(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


def mib(value: float) -> str:
    return f"{value / MIB:,.1f} MiB"


def row(label: str, value: str, note: str = "") -> str:
    return f"  {label:<46} {value:>12}" + (f"   {note}" if note else "")


@contextlib.contextmanager
def workspace(workdir: Path | None, keep: bool, created: Sequence[str]) -> Iterator[Path]:
    """The folder to work in: ``workdir`` or a temp folder. Only the entries named in
    ``created`` are made and removed there (unless ``keep``); a folder already holding
    one of them is refused (exit 2) rather than overwritten."""
    made_dir = workdir is None or not workdir.exists()
    if workdir is None:
        folder = Path(tempfile.mkdtemp(prefix="modelkeep-bench-"))
    else:
        folder = workdir.resolve()
        folder.mkdir(parents=True, exist_ok=True)
        clash = [name for name in created if (folder / name).exists()]
        if clash:
            print(
                f"{folder} already holds {', '.join(clash)}; pick another --workdir",
                file=sys.stderr,
            )
            raise SystemExit(2)
    try:
        yield folder
    finally:
        if keep:
            log(f"kept {folder}")
        else:
            for name in created:
                path = folder / name
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
            if made_dir:
                with contextlib.suppress(OSError):
                    folder.rmdir()


def tree_bytes(root: Path) -> tuple[int, int]:
    """Bytes and count of the files under ``root`` (0, 0 when it does not exist)."""
    total = count = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            total += (Path(dirpath) / name).stat().st_size
            count += 1
    return total, count


def make_versions(folder: Path, size_mib: int, versions: int) -> dict[str, Any]:
    """W1: ``versions`` files ``folder/vNN/model.safetensors`` of ``size_mib`` MiB,
    N_TENSORS tensors, CHANGED of them new in each version after the first (the same
    bytes for the same arguments). ``changed_bytes[i]``: the bytes of the tensors that
    version i + 1 changed (0 for the first)."""
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(W1_SEED)
    elements = size_mib * MIB // 4 // N_TENSORS
    shape = (elements // 1024, 1024)
    names = [f"layers.{i:02d}.weight" for i in range(N_TENSORS)]
    tensors = {n: rng.standard_normal(shape, dtype=np.float32) for n in names}
    paths: list[Path] = []
    changed = [0]
    for number in range(1, versions + 1):
        if number > 1:
            picked = sorted(rng.choice(N_TENSORS, size=CHANGED, replace=False).tolist())
            for i in picked:
                tensors[names[i]] = rng.standard_normal(shape, dtype=np.float32)
            changed.append(sum(tensors[names[i]].nbytes for i in picked))
        path = folder / f"v{number:02d}" / W1_FILE
        path.parent.mkdir(parents=True)
        save_file(tensors, str(path))
        paths.append(path)
    file_bytes = paths[0].stat().st_size
    return {
        "paths": paths,
        "file_bytes": file_bytes,
        "tensor_shape": list(shape),
        "changed_bytes": changed,
        "changed_bytes_per_version": changed[1] if versions > 1 else 0,
        "sum_of_files_bytes": sum(p.stat().st_size for p in paths),
        "one_file_plus_changes_bytes": file_bytes + sum(changed),
    }


def ensure_venv(folder: Path, packages: Sequence[str], probe: str) -> Path:
    """The python of a venv at ``folder`` in which ``import {probe}`` works, made with
    ``pip install packages`` when it does not (a baseline whose pins would move
    modelkeep's). The venv is kept for the next run; returns its python."""
    python = folder / "bin" / "python"
    check = [str(python), "-c", f"import {probe}"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    log(f"making a venv in {folder} ({' '.join(packages)}); kept for the next run")
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *packages], capture_output=True, text=True
    )
    if pip.returncode != 0:
        tail = " | ".join(pip.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"pip install in {folder} failed: {tail}")
    return python


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def modelkeep_command() -> list[str]:
    """The console script beside this interpreter, else ``python -m modelkeep``."""
    beside = Path(sys.executable).parent / "modelkeep"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    return [sys.executable, "-m", "modelkeep"]


def check_lines(checks: list[dict[str, Any]], name_width: int) -> list[str]:
    """The summary's lines: PASS/MISS, the check, its value and its target."""
    lines = []
    for c in checks:
        value = "n/a" if c["value"] is None else f"{c['value']:.2f}{c['unit']}"
        target = f"target <= {c['limit']:g}{c['unit']}"
        name = f"{c['name']:<{name_width}}"
        lines.append(f"  {c['status']:<4}  {name} {value:>9}  {target:<17} {c['detail']}")
    return lines
