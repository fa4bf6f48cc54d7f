"""What the benchmark scripts share: timing, table cells and the work folder."""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

T = TypeVar("T")
MIB = 1 << 20
HASH_BLOCK = 16 * MIB


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
