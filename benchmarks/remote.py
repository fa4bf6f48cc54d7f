"""Remote benchmark (issue 15): push, clone and resolve over loopback, next to DVC and MLflow.

    python benchmarks/remote.py [--quick] [--versions 10] [--size-mib 512]
                                [--clone-version N] [--clients 32] [--resolve-seconds 10]
                                [--workdir DIR] [--keep] [--json]
                                [--skip-dvc] [--skip-mlflow] [--skip-modelkeep]
                                [--dvc-venv DIR] [--mlflow-venv DIR]

``--quick`` is ``--versions 3 --size-mib 64 --resolve-seconds 5`` (under 2 minutes once
the venvs exist). The default, W1 (10 x 512 MiB), takes about 3 minutes on 2 cores and
needs about 17 GiB free under the work folder at its peak (W1's 5 GiB of files beside
DVC's cache and remote; MLflow's artifacts and modelkeep's repositories take less, and
each section's folder is removed after it). The work folder defaults to
``bench-remote`` beside this checkout: on disk, never a tmpfs (refused). The first run
adds a few minutes to make the DVC and MLflow venvs.

W1 (``_bench.make_versions``, as in ``benchmarks/engines.py``): a safetensors file of
40 float32 tensors in ``--versions`` versions, 4 of them (10 %) new in each version
after the first. The same files go to every tool; "changed bytes" of a version are the
bytes of the tensors it changed. In one run:

- static floor: one version's file served by ``python -m http.server --protocol
  HTTP/1.1`` and by uvicorn + Starlette's ``StaticFiles``, each downloaded with an
  ``httpx`` stream to disk (best of 3); the faster server is the floor.
- DVC: a git repository with ``dvc init`` and a local folder remote (``dvc remote add
  -d``); per version ``dvc add`` and ``git commit``, then DVC's Python API
  ``Repo(".").push()`` timed in a long-lived process (bytes moved: the remote folder's
  growth); a ``dvc push`` CLI with nothing left to send, for what the CLI adds; ``dvc
  pull`` of one version in a fresh ``git clone`` (empty cache) timed.
- MLflow: ``mlflow server --backend-store-uri sqlite:///… --artifacts-destination
  file:///… --serve-artifacts`` (its default 4 workers); per version a run and
  ``mlflow.log_artifact`` timed (bytes moved: the artifact folder's growth);
  ``mlflow.artifacts.download_artifacts`` of one version timed; the version registered
  with alias ``production`` for the resolve load.
- modelkeep: a server repository (``modelkeep init``, ``token create --scope admin``,
  ``modelkeep server``); a client repository commits each version (CLI), then
  ``repo.remotes.push("churn:N")`` is timed in a long-lived process (bytes moved: its
  ``bytes_sent``, beside the server store's growth and the loopback bytes of the push);
  a CLI ``modelkeep push`` with nothing left to send, for what the CLI adds. A clone
  (``Repo.clone(URL, DEST, model)`` in that process, best of 3 as the static download
  it is checked against; once more by the CLI, shown)
  takes a model, not a revision, so "a clone of one version" clones a model holding
  that version alone (``churn-one``, committed from the same file and pushed); the
  clone of every version of ``churn`` is shown too. Each clone is checked out
  afterwards (untimed) and compared byte for byte. ``churn@production`` is set on the
  server.

Every tool's push and download is timed as a call of its Python API in a process that
has imported it already (MLflow's ``log_artifact`` and ``download_artifacts``, DVC's
``Repo.push``, modelkeep's ``remotes.push`` and ``Repo.clone``; the static floor is an
in-process ``httpx`` download): what each tool's transfer costs, without interpreter
start and imports, which are printed apart (a CLI call with nothing to do). A clone
makes a new repository; the imports its first one would pay (Alembic) are made before
it, untimed. DVC's pull is still a CLI process (shown, not checked).
- resolve: ``--clients`` asyncio clients, each on its own keep-alive connection, send
  ``GET /api/v1/versions/churn@production`` with the token back to back for
  ``--resolve-seconds`` after one untimed request each (closed loop: a client sends its
  next request when the answer arrived; this is the run checked). The same load
  against MLflow's ``registered-models/alias`` route and against a static JSON file of
  the same bytes (the faster static server); then modelkeep again with each client
  paced at ``--resolve-rate`` requests/s, latency counted from when a request was due.
  With ``--postgres``, the same closed-loop load against a server whose registry is on
  PostgreSQL (a throw-away cluster started as the tests start it), checked too.

Targets (modelkeep; versions 2..N are the 10 %-changed ones, their median time):

    bytes a push moves / the version's changed bytes (worst version)   <= 1.05
    push time / DVC's Repo.push                                        <= 0.2
    push time / MLflow's log_artifact                                  <= 0.1
    clone of one version / the static download of its bytes            <= 1.5
    resolve churn@production under 32 clients, p99                     <= 20 ms

DVC (``pip install 'dvc>=3.50'``) and MLflow (``pip install mlflow safetensors``) run in
venvs of their own (``--dvc-venv``, ``--mlflow-venv``; default WORKDIR/dvc-venv and
WORKDIR/mlflow-venv), made on first use and kept: their pins would move modelkeep's, so
they are not in the dev extra. Every server binds 127.0.0.1 and every process runs on
the same cores (the resolve clients too: their CPU time is printed). DVC's analytics
and update check and MLflow's telemetry are turned off, and the tools run with a proxy
on a closed loopback port, so nothing they might send leaves the machine. Page caches
are left as they are: every tool reads files that were just written.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import (
    CHANGED,
    N_TENSORS,
    W1_FILE,
    Check,
    blake3_file,
    check_lines,
    ensure_venv,
    free_port,
    log,
    make_versions,
    mib,
    modelkeep_command,
    row,
    tree_bytes,
    workspace,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

MODEL = "churn"
ONE = "churn-one"  # one version of MODEL alone: what "a clone of one version" clones
ALIAS = "production"
DVC_PACKAGES = ("dvc>=3.50",)
MLFLOW_PACKAGES = ("mlflow", "safetensors")
# Where the tools' stray requests would go: a closed port on loopback.
DEAD_END = "http://127.0.0.1:9"
DEFAULT_WORKDIR = Path(__file__).resolve().parents[2] / "bench-remote"

# Targets.
PUSH_BYTES_RATIO = 1.05
PUSH_VS_DVC = 0.2
PUSH_VS_MLFLOW = 0.1
CLONE_RATIO = 1.5
RESOLVE_P99_MS = 20.0

# What the benchmark creates inside the work folder; nothing else is touched (the
# venvs are kept for the next run: they take minutes to install).
_CREATED = ("versions", "static", "dvc", "mlflow", "modelkeep", "postgres", "logs")


# -- processes ----------------------------------------------------------------------------


def tool_env(**extra: str) -> dict[str, str]:
    """The environment of every tool measured: no call home, no proxy but a dead end."""
    env = {
        **os.environ,
        "PYTHONDONTWRITEBYTECODE": "1",
        "HTTP_PROXY": DEAD_END,
        "HTTPS_PROXY": DEAD_END,
        "ALL_PROXY": DEAD_END,
        "http_proxy": DEAD_END,
        "https_proxy": DEAD_END,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "DVC_NO_ANALYTICS": "1",
        "DVC_UPDATER_ENDPOINT": DEAD_END,
        "DVC_STUDIO_OFFLINE": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.org",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.org",
        "MODELKEEP_AUTHOR": "bench <bench@example.org>",
    }
    for name in ("MODELKEEP_REPO", "MODELKEEP_DB", "MODELKEEP_STORE", "MODELKEEP_TOKEN"):
        env.pop(name, None)
    env.update(extra)
    return env


def _tail(text: str, lines: int = 3) -> str:
    kept = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(kept[-lines:]) or "(no output)"


def run(
    argv: Sequence[str | Path],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 1800,
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run ``argv`` to its end: its wall time and its outcome (an error when it fails)."""
    start = time.perf_counter()
    proc = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env or tool_env(), capture_output=True,
        text=True, timeout=timeout, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if check and proc.returncode != 0:
        command = " ".join(str(a) for a in argv[:4])
        raise RuntimeError(f"{command} … exited {proc.returncode}: {_tail(proc.stderr)}")
    return seconds, proc


@dataclass
class Server:
    """A server process in its own process group (its workers go down with it)."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # Workers that outlived the leader (same group): gone too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def serving(
    name: str,
    argv: Sequence[str | Path],
    port: int,
    health: str,
    logs: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> Iterator[Server]:
    """Start ``argv`` (listening on 127.0.0.1:``port``), wait until ``health`` answers
    200, yield it, stop its whole process group."""
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name.replace(' ', '-')}.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [str(a) for a in argv], cwd=cwd, env=env or tool_env(), stdout=out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    server = Server(name, proc, log_path, port)
    try:
        deadline = time.perf_counter() + timeout
        with httpx.Client(trust_env=False, timeout=5) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited ({proc.returncode}): "
                        f"{_tail(log_path.read_text(errors='replace'), 5)}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"http://127.0.0.1:{port}{health}").status_code == 200:
                        break
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"{name} not ready after {timeout:.0f} s")
                time.sleep(0.1)
        log(f"{name} ready on 127.0.0.1:{port}")
        yield server
    finally:
        server.stop()


class Worker:
    """A long-lived Python process that imports its tool once and then runs one timed
    API call per line it is sent, answering ``RESULT {json}`` on a line: the tools'
    calls are timed warm, as MLflow's ``log_artifact`` is, with no interpreter start,
    no imports and no first-use setup in the figure."""

    def __init__(self, name: str, python: str | Path, script: str, logs: Path,
                 env: dict[str, str], cwd: Path | None = None,
                 argv: Sequence[str | Path] = ()) -> None:  # fmt: skip
        self.name = name
        self._err = open(logs / f"{name}-worker.log", "w")  # noqa: SIM115 (closed in close)
        self.proc = subprocess.Popen(
            [str(python), "-c", script, *map(str, argv)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err, text=True, env=env, cwd=cwd,
        )  # fmt: skip

    def ask(self, line: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        for answer in self.proc.stdout:
            if answer.startswith("RESULT "):
                out: dict[str, Any] = json.loads(answer.removeprefix("RESULT "))
                if "error" in out:
                    raise RuntimeError(f"{self.name}: {line}: {out['error']}")
                return out
        self._err.flush()
        raise RuntimeError(
            f"the {self.name} worker exited: {_tail(Path(self._err.name).read_text())}"
        )

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._err.close()


def loopback_bytes() -> int | None:
    """Bytes received on ``lo`` so far (every process's traffic, /proc/net/dev)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/net/dev").read_text().splitlines():
            name, _, counters = line.partition(":")
            if name.strip() == "lo":
                return int(counters.split()[0])
    return None


def on_tmpfs(path: Path) -> bool:
    """Whether ``path`` lies on a memory filesystem (/proc/mounts, longest prefix)."""
    best, kind = "", ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            inside = len(parts) >= 3 and str(path).startswith(parts[1].rstrip("/") + "/")
            if inside and len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
    return kind in ("tmpfs", "ramfs")


def _error(exc: BaseException) -> str:
    log("".join(traceback.format_exception(exc)).rstrip())
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


# -- the static floor ----------------------------------------------------------------------

STARLETTE_APP = """
import sys
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

app = Starlette(routes=[Mount("/", StaticFiles(directory=sys.argv[1]))])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def static_argv(kind: str, folder: Path, port: int) -> list[str | Path]:
    """A static file server of ``folder`` on 127.0.0.1:``port``."""
    if kind == "http.server":
        return [sys.executable, "-m", "http.server", "--protocol", "HTTP/1.1",
                "--bind", "127.0.0.1", "--directory", folder, str(port)]  # fmt: skip
    return [sys.executable, "-c", STARLETTE_APP, folder, str(port)]


STATIC_KINDS = ("http.server", "starlette")


def download(url: str, dest: Path) -> tuple[float, int]:
    """An httpx stream of ``url`` written to ``dest``: seconds (connection included) and
    bytes."""
    dest.unlink(missing_ok=True)
    start = time.perf_counter()
    with (
        httpx.Client(trust_env=False, timeout=120) as client,
        client.stream("GET", url) as answer,
        open(dest, "wb") as out,
    ):
        answer.raise_for_status()
        for chunk in answer.iter_raw():
            out.write(chunk)
    return time.perf_counter() - start, dest.stat().st_size


def run_static(work: Path, logs: Path, path: Path, expected: str) -> dict[str, Any]:
    """Download ``path`` from each static server, best of 3; the faster is the floor."""
    folder = work / "static"
    folder.mkdir()
    os.link(path, folder / W1_FILE)
    dest = work / "static-download.bin"
    result: dict[str, Any] = {"bytes": path.stat().st_size, "servers": {}}
    try:
        for kind in STATIC_KINDS:
            port = free_port()
            with serving(f"static {kind}", static_argv(kind, folder, port), port, f"/{W1_FILE}",
                         logs) as _srv:  # fmt: skip
                url = f"http://127.0.0.1:{port}/{W1_FILE}"
                times = []
                for _ in range(3):
                    seconds, size = download(url, dest)
                    if size != result["bytes"]:
                        raise RuntimeError(f"{kind} sent {size} bytes of {result['bytes']}")
                    times.append(seconds)
                if blake3_file(dest) != expected:
                    raise RuntimeError(f"{kind}: the download differs from the file")
                # The same download, then fsync: what a durable copy costs.
                start = time.perf_counter()
                download(url, dest)
                with open(dest, "rb+") as f:
                    os.fsync(f.fileno())
                synced = time.perf_counter() - start
            result["servers"][kind] = {"seconds": min(times), "all": times, "fsync_seconds": synced}
            log(f"static {kind}: {min(times):.3f} s (best of 3), with fsync {synced:.3f} s")
    finally:
        dest.unlink(missing_ok=True)
    best = min(result["servers"], key=lambda k: result["servers"][k]["seconds"])
    result["floor_server"] = best
    result["floor_seconds"] = result["servers"][best]["seconds"]
    return result


# -- the resolve load -------------------------------------------------------------------------


@dataclass
class Load:
    """What ``--clients`` closed-loop clients got from one URL."""

    target: str
    clients: int
    rate: float = 0.0  # requests/s per client; 0: closed loop (back to back)
    seconds: float = 0.0
    ok: int = 0
    not_ok: int = 0
    errors: int = 0
    client_cpu_seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    sample: str = ""
    error: str | None = None

    def quantile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, Any]:
        done = self.ok + self.not_ok
        return {
            "target": self.target,
            "clients": self.clients,
            "rate_per_client": self.rate,
            "seconds": self.seconds,
            "requests": done,
            "ok": self.ok,
            "not_ok": self.not_ok,
            "transport_errors": self.errors,
            "per_second": done / self.seconds if self.seconds else None,
            "p50_ms": self.quantile(0.50),
            "p99_ms": self.quantile(0.99),
            "max_ms": max(self.latencies_ms) if self.latencies_ms else None,
            "client_cpu_seconds": self.client_cpu_seconds,
            "sample": self.sample[:300],
            "error": self.error,
        }


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 answer: status, body and whether the server closes the connection."""
    line = await reader.readline()
    if not line:
        raise ConnectionError("connection closed")
    status = int(line.split()[1])
    length, chunked, close = None, False, False
    while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = header.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value
        elif name == b"connection":
            close = value == b"close"
    if chunked:
        body = bytearray()
        while size := int((await reader.readline()).split(b";")[0], 16):
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        return status, bytes(body), close
    if length is None:
        return status, await reader.read(), True
    return status, await reader.readexactly(length), close


async def _load(load: Load, port: int, path: str, token: str | None, seconds: float) -> None:
    headers = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Accept: application/json"]
    if token:
        headers.append(f"Authorization: Bearer {token}")
    request = ("\r\n".join(headers) + "\r\n\r\n").encode()

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", port)

    async def exchange(
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> tuple[int, bytes, bool]:
        conn[1].write(request)
        return await _answer(conn[0])

    conns = [await connect() for _ in range(load.clients)]
    for conn in conns:  # one untimed request each: connections open, routes warm
        status, body, _ = await exchange(conn)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}: {body[:200]!r}")
        load.sample = body.decode(errors="replace")

    begin = time.perf_counter()
    deadline = begin + seconds

    async def client(i: int) -> None:
        conn = conns[i]
        due = begin + i / load.clients / load.rate if load.rate else 0.0
        while (now := time.perf_counter()) < deadline:
            if load.rate:  # paced: latency counts from when the request was due
                if due > now:
                    await asyncio.sleep(due - now)
                if due >= deadline:
                    break
                start, due = due, due + 1 / load.rate
            else:
                start = now
            try:
                status, _, close = await exchange(conn)
            except (ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
                load.errors += 1
                conn[1].close()
                conn = conns[i] = await connect()
                continue
            load.latencies_ms.append((time.perf_counter() - start) * 1000)
            if status == 200:
                load.ok += 1
            else:
                load.not_ok += 1
            if close:
                conn[1].close()
                conn = conns[i] = await connect()

    cpu = time.process_time()
    await asyncio.gather(*(client(i) for i in range(load.clients)))
    load.seconds = time.perf_counter() - begin
    load.client_cpu_seconds = time.process_time() - cpu
    for _, writer in conns:
        writer.close()


def resolve_load(
    target: str,
    port: int,
    path: str,
    token: str | None,
    clients: int,
    seconds: float,
    rate: float = 0.0,
) -> dict[str, Any]:
    """``clients`` connections sending GET ``path`` for ``seconds``: back to back, or
    ``rate`` requests/s each."""
    load = Load(target, clients, rate)
    how = f"{rate:g}/s each" if rate else "back to back"
    log(f"resolve: {target}, {clients} clients {how} for {seconds:g} s")
    try:
        asyncio.run(_load(load, port, path, token, seconds))
    except Exception as exc:  # one target failing leaves the others measured
        load.error = _error(exc)
    out = load.summary()
    if out["p99_ms"] is not None:
        log(f"resolve: {target}: {out['per_second']:.0f}/s, p50 {out['p50_ms']:.1f} ms, "
            f"p99 {out['p99_ms']:.1f} ms")  # fmt: skip
    return out


# -- DVC -----------------------------------------------------------------------------------


# Run by the DVC venv's python in the DVC repository: per line, the repository opened
# afresh (a commit moved HEAD; untimed) and ``Repo.push()`` timed.
DVC_WORKER = """
import json, sys, time
from dvc.repo import Repo
for line in sys.stdin:
    try:
        repo = Repo(".")
        start = time.perf_counter()
        pushed = repo.push()
        seconds = time.perf_counter() - start
        repo.close()
        print("RESULT " + json.dumps({"seconds": seconds, "pushed": pushed}), flush=True)
    except Exception as exc:
        print("RESULT " + json.dumps({"error": repr(exc)}), flush=True)
"""


def run_dvc(
    args: argparse.Namespace,
    work: Path,
    logs: Path,
    paths: Sequence[Path],
    restore: int,
    expected: str,
) -> dict[str, Any]:
    python = ensure_venv(args.dvc_venv, DVC_PACKAGES, "dvc")
    dvc = python.parent / "dvc"
    root = work / "dvc"
    repo, remote, clone = root / "repo", root / "remote", root / "clone"
    remote.mkdir(parents=True)
    out: dict[str, Any] = {"add_seconds": [], "push_seconds": [], "push_bytes": []}
    out["version"] = run([dvc, "--version"])[1].stdout.strip()
    run(["git", "-c", "init.defaultBranch=main", "init", "-q", repo])
    steps: list[list[str | Path]] = [
        [dvc, "init", "-q"],
        [dvc, "config", "core.analytics", "false"],
        [dvc, "config", "core.check_update", "false"],
        [dvc, "remote", "add", "-d", "local", remote],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "dvc init"],
    ]
    for step in steps:
        run(step, cwd=repo)
    worker = Worker("dvc", python, DVC_WORKER, logs, tool_env(), cwd=repo)
    try:
        for number, path in enumerate(paths, 1):
            shutil.copyfile(path, repo / W1_FILE)  # the work tree holds it, as DVC needs
            seconds, _ = run([dvc, "add", "-q", W1_FILE], cwd=repo)
            out["add_seconds"].append(seconds)
            run(["git", "add", f"{W1_FILE}.dvc", ".gitignore"], cwd=repo)
            run(["git", "commit", "-q", "-m", f"v{number}"], cwd=repo)
            run(["git", "tag", f"v{number}"], cwd=repo)
            before = tree_bytes(remote)[0]
            seconds = worker.ask("push")["seconds"]
            out["push_seconds"].append(seconds)
            out["push_bytes"].append(tree_bytes(remote)[0] - before)
            log(f"  DVC v{number}: add {out['add_seconds'][-1]:.3f} s, Repo.push "
                f"{seconds:.3f} s, {mib(out['push_bytes'][-1])}")  # fmt: skip
    finally:
        worker.close()
    # What the CLI adds to a push: `dvc push` with nothing left to send.
    out["cli_noop_push_seconds"] = statistics.median(
        run([dvc, "push", "-q"], cwd=repo)[0] for _ in range(3)
    )
    run(["git", "clone", "-q", repo, clone])
    run(["git", "checkout", "-q", f"v{restore}"], cwd=clone)
    out["pull_seconds"], _ = run([dvc, "pull", "-q"], cwd=clone)
    if blake3_file(clone / W1_FILE) != expected:
        raise RuntimeError(f"dvc pull of v{restore} is not byte-identical to it")
    log(f"  DVC pull v{restore}: {out['pull_seconds']:.3f} s")
    return out


# -- MLflow --------------------------------------------------------------------------------

# Run by the MLflow venv's python: the task as JSON on stdin, "RESULT {json}" on stdout.
MLFLOW_CLIENT = """
import json, os, sys, time
import mlflow
from mlflow import MlflowClient

def size(root):
    return sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(root)
               for n in names)

task = json.loads(sys.stdin.read())
experiment = mlflow.create_experiment("w1")
pushes, grew, runs = [], [], []
for number, path in enumerate(task["files"], 1):
    with mlflow.start_run(experiment_id=experiment) as run:
        before = size(task["artifacts"])
        start = time.perf_counter()
        mlflow.log_artifact(path)
        pushes.append(time.perf_counter() - start)
        grew.append(size(task["artifacts"]) - before)
        runs.append((run.info.run_id, run.info.artifact_uri))
    print(f"[mlflow] v{number}: log_artifact {pushes[-1]:.3f} s", file=sys.stderr, flush=True)
run_id, artifact_uri = runs[task["restore"] - 1]
start = time.perf_counter()
got = mlflow.artifacts.download_artifacts(
    run_id=run_id, artifact_path=task["file"], dst_path=task["dest"])
pull = time.perf_counter() - start
client = MlflowClient()
client.create_registered_model(task["model"])
mv = client.create_model_version(task["model"], f"{artifact_uri}/{task['file']}", run_id=run_id)
client.set_registered_model_alias(task["model"], task["alias"], mv.version)
print("RESULT " + json.dumps({"push_seconds": pushes, "push_bytes": grew,
      "pull_seconds": pull, "pulled": got, "registered": mv.version,
      "version": mlflow.__version__}), flush=True)
"""


def run_mlflow(
    args: argparse.Namespace,
    work: Path,
    logs: Path,
    paths: Sequence[Path],
    restore: int,
    expected: str,
) -> dict[str, Any]:
    python = ensure_venv(args.mlflow_venv, MLFLOW_PACKAGES, "mlflow, safetensors")
    root = work / "mlflow"
    artifacts, dest = root / "artifacts", root / "download"
    artifacts.mkdir(parents=True)
    port = free_port()
    argv: list[str | Path] = [python.parent / "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", f"file://{artifacts}", "--serve-artifacts",
            "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    with serving("mlflow server", argv, port, "/health", logs, cwd=root) as _srv:
        task = {"files": [str(p) for p in paths], "artifacts": str(artifacts),
                "restore": restore, "file": W1_FILE, "dest": str(dest), "model": MODEL,
                "alias": ALIAS}  # fmt: skip
        with open(logs / "mlflow-client.log", "w") as err:
            proc = subprocess.run(
                [str(python), "-c", MLFLOW_CLIENT], input=json.dumps(task),
                env=tool_env(MLFLOW_TRACKING_URI=uri), stdout=subprocess.PIPE, stderr=err,
                text=True, timeout=3600, check=False,
            )  # fmt: skip
        results = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not results:
            raise RuntimeError(
                f"the MLflow client failed: {_tail((logs / 'mlflow-client.log').read_text())}"
            )
        out: dict[str, Any] = json.loads(results[-1].removeprefix("RESULT "))
        for v, (s, b) in enumerate(zip(out["push_seconds"], out["push_bytes"], strict=True), 1):
            log(f"  MLflow v{v}: log_artifact {s:.3f} s, {mib(b)}")
        pulled = Path(out["pulled"])
        if blake3_file(pulled) != expected:
            raise RuntimeError(f"MLflow's download of v{restore} is not byte-identical to it")
        log(f"  MLflow download v{restore}: {out['pull_seconds']:.3f} s")
        out["workers"] = "4 (mlflow server's default)"
        out["resolve"] = resolve_load(
            "MLflow server",
            port,
            f"/api/2.0/mlflow/registered-models/alias?name={MODEL}&alias={ALIAS}",
            None,
            args.clients,
            args.resolve_seconds,
        )
    return out


# -- modelkeep -----------------------------------------------------------------------------


def has_command(mk: Sequence[str], *command: str) -> bool:
    return run([*mk, *command, "--help"], check=False)[1].returncode == 0


def _json(text: str) -> dict[str, Any]:
    """The last JSON object a command printed (a --json command prints one)."""
    start = text.find("{")
    if start < 0:
        raise RuntimeError(f"expected JSON, got {text[:200]!r}")
    value = json.loads(text[start:])
    if not isinstance(value, dict):
        raise RuntimeError(f"expected a JSON object, got {text[:200]!r}")
    return value


# Run by this python: the client repository is argv[1]; per line, one timed call.
MODELKEEP_WORKER = """
import json, sys, time
import modelkeep
repo = modelkeep.Repo.open(sys.argv[1])
for line in sys.stdin:
    verb, *words = line.split()
    try:
        if verb == "warm":  # imports only: what a clone's first init would import
            import alembic.command, alembic.config  # noqa
            print("RESULT {}", flush=True)
            continue
        start = time.perf_counter()
        if verb == "push":
            done = repo.remotes.push(words[0])
        else:  # clone URL DEST MODEL
            cloned, done = modelkeep.Repo.clone(words[0], words[1], words[2])
            cloned.close()
        seconds = time.perf_counter() - start
        print("RESULT " + json.dumps({"seconds": seconds, **done.to_dict()}), flush=True)
    except Exception as exc:
        print("RESULT " + json.dumps({"error": repr(exc)}), flush=True)
"""


def run_modelkeep(
    args: argparse.Namespace,
    work: Path,
    logs: Path,
    paths: Sequence[Path],
    changed: Sequence[int],
    restore: int,
    expected: str,
) -> dict[str, Any]:
    mk = modelkeep_command()
    root = work / "modelkeep"
    server_repo, client_repo = root / "server", root / "client"
    root.mkdir()
    out: dict[str, Any] = {"commit_seconds": [], "push_seconds": [], "push_bytes": [],
                           "push_objects": [], "server_store_growth": [],
                           "loopback_bytes": [], "notes": []}  # fmt: skip
    run([*mk, "init", server_repo])
    token = run([*mk, "--repo", server_repo, "token", "create", "--user", "bench",
                 "--scope", "admin"])[1].stdout.strip()  # fmt: skip
    if not token.startswith("mkt_"):
        raise RuntimeError(f"token create printed {token[:40]!r}, not a token")
    with_token = tool_env(MODELKEEP_TOKEN=token)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    store = server_repo / ".modelkeep" / "store"
    argv: list[str | Path] = [*mk, "--repo", server_repo, "server", "--host", "127.0.0.1",
                              "--port", str(port)]  # fmt: skip
    with (
        serving("modelkeep server", argv, port, "/api/v1/health", logs, cwd=root) as _srv,
        contextlib.ExitStack() as stack,
    ):
        run([*mk, "init", client_repo])
        can_push = has_command(mk, "push")
        can_clone = has_command(mk, "clone")
        worker: Worker | None = None
        if can_push:
            run([*mk, "--repo", client_repo, "remote", "add", "origin", url])
            worker = Worker("modelkeep", sys.executable, MODELKEEP_WORKER, logs, with_token,
                            argv=[client_repo])  # fmt: skip
            stack.callback(worker.close)
        else:
            out["notes"].append("no `modelkeep push` in this modelkeep: push not measured")
        on_server = restore
        for number, path in enumerate(paths, 1):
            seconds, _ = run([*mk, "--repo", client_repo, "commit", MODEL, path, "-m",
                              f"v{number}"])  # fmt: skip
            out["commit_seconds"].append(seconds)
            if not can_push:
                log(f"  modelkeep v{number}: commit {seconds:.3f} s")
                continue
            before, lo = tree_bytes(store)[0], loopback_bytes()
            assert worker is not None
            pushed = worker.ask(f"push {MODEL}:{number}")
            seconds = pushed["seconds"]
            lo_after = loopback_bytes()
            out["push_seconds"].append(seconds)
            out["push_bytes"].append(int(pushed["bytes_sent"]))
            out["push_objects"].append(int(pushed["objects_sent"]))
            out["server_store_growth"].append(tree_bytes(store)[0] - before)
            out["loopback_bytes"].append(None if lo is None or lo_after is None else lo_after - lo)
            if number == 1:
                out["push_output"] = pushed
            if number == restore:
                on_server = _remote_number(pushed, MODEL, number)
            log(f"  modelkeep v{number}: commit {out['commit_seconds'][-1]:.3f} s, push "
                f"{seconds:.3f} s, {mib(out['push_bytes'][-1])} sent "
                f"({mib(changed[number - 1])} changed)")  # fmt: skip
        if can_push and can_clone:
            # clone takes a model, not a revision: one version is cloned as a model that
            # holds only it (its objects are on the server already: the push moves none).
            run([*mk, "--repo", client_repo, "commit", ONE, paths[restore - 1], "-m",
                 f"{MODEL}:{restore} alone"])  # fmt: skip
            pushed = _json(run([*mk, "--repo", client_repo, "push", f"{ONE}:1", "--json"],
                               env=with_token)[1].stdout)  # fmt: skip
            one = _remote_number(pushed, ONE)
            assert worker is not None
            worker.ask("warm")

            def by_api(dest: Path, model: str) -> tuple[float, dict[str, Any]]:
                assert worker is not None
                got = worker.ask(f"clone {url} {dest} {model}")
                return got["seconds"], got

            def by_cli(dest: Path, model: str) -> tuple[float, dict[str, Any]]:
                seconds, proc = run([*mk, "clone", url, dest, "--model", model, "--json"],
                                    env=with_token)  # fmt: skip
                return seconds, _json(proc.stdout)

            # Best of 3, as the static download it is compared with: each into a new
            # folder, the one before removed (the download overwrites its file).
            tries = []
            for i in range(1, 4):
                tries.append(_clone(mk, by_api, root / f"clone-one-{i}", ONE, one, expected))
                shutil.rmtree(root / f"clone-one-{i}")
            out["clone_tries_seconds"] = [t["seconds"] for t in tries]
            out["clone"] = min(tries, key=lambda t: float(t["seconds"]))
            out["clone_seconds"] = out["clone"]["seconds"]
            out["clone_cli"] = _clone(mk, by_cli, root / "clone-one-cli", ONE, one, expected)
            out["clone_all"] = _clone(mk, by_api, root / "clone-all", MODEL, on_server,
                                      expected)  # fmt: skip
            # What any command costs before it does anything: a process, imports, --help;
            # and what the CLI adds to a push: one with nothing left to send.
            out["cli_start_seconds"] = statistics.median(run([*mk, "--help"])[0] for _ in range(3))
            out["cli_noop_push_seconds"] = statistics.median(
                run([*mk, "--repo", client_repo, "push", f"{MODEL}:{len(paths)}"],
                    env=with_token)[0]
                for _ in range(3)
            )  # fmt: skip
        elif can_push:
            out["notes"].append("no `modelkeep clone` in this modelkeep: clone not measured")
        else:
            # The resolve load needs the version on the server: commit it there directly.
            run([*mk, "--repo", server_repo, "commit", MODEL, paths[restore - 1], "-m",
                 f"v{restore}"])  # fmt: skip
            on_server = 1
            out["notes"].append(f"resolve measured on v{restore} committed on the server itself")
        run([*mk, "--repo", server_repo, "alias", "set", f"{MODEL}@{ALIAS}",
             f"{MODEL}:{on_server}"])  # fmt: skip
        route = f"/api/v1/versions/{MODEL}@{ALIAS}"
        with httpx.Client(trust_env=False, timeout=10) as client:
            answer = client.get(url + route, headers={"Authorization": f"Bearer {token}"})
        answer.raise_for_status()
        if answer.json().get("number") != on_server:
            raise RuntimeError(f"{route} did not answer version {on_server}: {answer.text[:200]}")
        out["resolve_body_bytes"] = len(answer.content)
        out["resolve"] = resolve_load(
            "modelkeep server", port, route, token, args.clients, args.resolve_seconds
        )
        if args.resolve_rate:
            out["resolve_paced"] = resolve_load(
                "modelkeep server, paced", port, route, token, args.clients,
                args.resolve_seconds, args.resolve_rate,
            )  # fmt: skip
    out["static_resolve"] = _static_resolve(args, work, logs, answer.content)
    return out


def run_resolve_postgres(args: argparse.Namespace, work: Path, logs: Path) -> dict[str, Any]:
    """The resolve load against a team server whose registry is on PostgreSQL (a
    throw-away cluster of Debian's postgresql, started as the tests start it), holding
    one small version under the alias: what a team running the server of the issue
    (``--db postgresql://…``) sees."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from services import start_postgres  # the tests' helper: one way to start it

    mk = modelkeep_command()
    root = work / "postgres"
    root.mkdir()
    pg = start_postgres(root / "cluster")
    try:
        repo = root / "repo"
        model_file = root / "weights.bin"
        model_file.write_bytes(os.urandom(4096))
        run([*mk, "init", repo, "--db", pg.new_database()])
        run([*mk, "--repo", repo, "commit", MODEL, model_file, "-m", "one"])
        run([*mk, "--repo", repo, "alias", "set", f"{MODEL}@{ALIAS}", f"{MODEL}:1"])
        token = run([*mk, "--repo", repo, "token", "create", "--user", "bench",
                     "--scope", "read"])[1].stdout.strip()  # fmt: skip
        port = free_port()
        argv: list[str | Path] = [*mk, "--repo", repo, "server", "--host", "127.0.0.1",
                                  "--port", str(port)]  # fmt: skip
        route = f"/api/v1/versions/{MODEL}@{ALIAS}"
        with serving("modelkeep server (postgres)", argv, port, "/api/v1/health", logs,
                     cwd=root) as _srv:  # fmt: skip
            return {"resolve": resolve_load("modelkeep server, PostgreSQL", port, route,
                                            token, args.clients, args.resolve_seconds)}  # fmt: skip
    finally:
        pg.stop()


def _remote_number(moved: dict[str, Any], model: str, local: int | None = None) -> int:
    """The number on the server of ``model``'s version ``local`` (the last one moved when
    ``local`` is None), from a push's or a clone's JSON (``versions``: local, remote)."""
    for mapped in reversed(moved.get("versions", [])):
        if mapped["model"] == model and local in (None, mapped["local"]):
            return int(mapped["remote"])
    raise RuntimeError(f"{model}:{local} is not among the versions moved: {moved}")


def _local_number(moved: dict[str, Any], model: str, remote: int) -> int:
    for mapped in moved.get("versions", []):
        if mapped["model"] == model and mapped["remote"] == remote:
            return int(mapped["local"])
    raise RuntimeError(f"{model}:{remote} of the server is not among the versions cloned")


def _clone(
    mk: Sequence[str],
    how: Callable[[Path, str], tuple[float, dict[str, Any]]],
    dest: Path,
    model: str,
    remote: int,
    expected: str,
) -> dict[str, Any]:
    """A clone of ``model`` into the fresh folder ``dest`` by ``how`` (the API in the
    worker, or the CLI), timed; then ``model``'s version ``remote`` (the server's
    number) checked out, untimed, and compared byte for byte with the file committed."""
    seconds, got = how(dest, model)
    local = _local_number(got, model, remote)
    checked = dest.parent / f"{dest.name}-checkout"
    run([*mk, "--repo", dest, "checkout", f"{model}:{local}", checked])
    if blake3_file(checked / W1_FILE) != expected:
        raise RuntimeError(f"the clone's {model}:{local} is not byte-identical to its file")
    shutil.rmtree(checked)
    log(f"  modelkeep clone --model {model}: {seconds:.3f} s, "
        f"{len(got['versions'])} versions, {mib(got['bytes_sent'])} received")  # fmt: skip
    return {"seconds": seconds, "versions": len(got["versions"]), "bytes": got["bytes_sent"],
            "objects": got["objects_sent"]}  # fmt: skip


def _static_resolve(
    args: argparse.Namespace, work: Path, logs: Path, body: bytes
) -> dict[str, Any]:
    """The resolve load against a static file holding modelkeep's answer: the floor of
    one small GET over loopback under the same clients."""
    folder = work / "static" / "resolve"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "production.json").write_bytes(body)
    best: dict[str, Any] | None = None
    for kind in STATIC_KINDS:
        port = free_port()
        with serving(f"static {kind} (resolve)", static_argv(kind, folder, port), port,
                     "/production.json", logs) as _srv:  # fmt: skip
            got = resolve_load(f"static file, {kind}", port, "/production.json", None,
                               args.clients, args.resolve_seconds)  # fmt: skip
        if got["p99_ms"] is not None and (best is None or got["p99_ms"] < best["p99_ms"]):
            best = got
    return best or {"target": "static file", "error": "not measured"}


# -- the run ---------------------------------------------------------------------------------


def attempt(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One section on its own: its result, or its error (the run goes on)."""
    log(f"{name}")
    start = time.perf_counter()
    try:
        out = fn()
    except Exception as exc:
        out = {"error": _error(exc)}
    out["section_seconds"] = time.perf_counter() - start
    log(f"{name} took {out['section_seconds']:.1f} s")
    return out


def ratio_check(
    name: str, a: float | None, b: float | None, limit: float, why: str, fmt: Callable[[float], str]
) -> Check:
    value = a / b if a is not None and b else None
    detail = f"{fmt(a)} vs {fmt(b)}" if a is not None and b is not None else why
    return Check(name, value, limit, "x", detail)


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


def _resolve_check(name: str, load: dict[str, Any], why: str) -> Check:
    """A resolve load's p99 against the target; ``why`` when it was not measured."""
    p99 = load.get("p99_ms")
    detail = (f"p50 {load['p50_ms']:.1f} ms, {load['per_second']:.0f} requests/s"
              if p99 is not None else (load.get("error") or why))  # fmt: skip
    return Check(name, p99, RESOLVE_P99_MS, " ms", detail)


def checks_of(result: dict[str, Any]) -> list[Check]:
    mk = result.get("modelkeep") or {}
    dvc = result.get("dvc") or {}
    ml = result.get("mlflow") or {}
    static = result.get("static") or {}
    changed = result["w1"]["changed_bytes"]
    why_mk = mk.get("error") or "; ".join(mk.get("notes", [])) or "not measured"
    push = _median(mk.get("push_seconds", [])[1:])
    checks: list[Check] = []

    sent = mk.get("push_bytes", [])[1:]
    worst = max((b / changed[i + 1] for i, b in enumerate(sent)), default=None)
    worst_i = max(range(len(sent)), key=lambda i: sent[i] / changed[i + 1], default=None)
    checks.append(Check(
        "push: bytes moved / changed bytes", worst, PUSH_BYTES_RATIO, "x",
        f"worst v{worst_i + 2}: {mib(sent[worst_i])} for {mib(changed[worst_i + 1])}"
        if worst_i is not None else why_mk,
    ))  # fmt: skip
    dvc_push = _median(dvc.get("push_seconds", [])[1:])
    checks.append(ratio_check("push time / DVC's Repo.push", push, dvc_push, PUSH_VS_DVC,
                              why_mk if push is None else dvc.get("error", "not measured"),
                              lambda s: f"{s:.3f} s"))  # fmt: skip
    ml_push = _median(ml.get("push_seconds", [])[1:])
    checks.append(ratio_check("push time / MLflow's log_artifact", push, ml_push,
                              PUSH_VS_MLFLOW,
                              why_mk if push is None else ml.get("error", "not measured"),
                              lambda s: f"{s:.3f} s"))  # fmt: skip
    clone = mk.get("clone_seconds")
    floor = static.get("floor_seconds")
    checks.append(ratio_check("clone of one version / static download", clone, floor,
                              CLONE_RATIO,
                              why_mk if clone is None else static.get("error", "not measured"),
                              lambda s: f"{s:.3f} s"))  # fmt: skip
    checks.append(_resolve_check(
        f"resolve {MODEL}@{ALIAS}, {result['config']['clients']} clients: p99",
        mk.get("resolve") or {}, why_mk,
    ))  # fmt: skip
    on_pg = result.get("postgres")
    if on_pg is not None:
        checks.append(_resolve_check("resolve, registry on PostgreSQL: p99",
                                     on_pg.get("resolve") or {},
                                     on_pg.get("error") or "not measured"))  # fmt: skip
    return checks


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def render(result: dict[str, Any]) -> str:
    cfg, w1 = result["config"], result["w1"]
    n, restore = cfg["versions"], cfg["clone_version"]
    rest = f"v2..v{n}"
    dvc, ml, mk = result.get("dvc"), result.get("mlflow"), result.get("modelkeep")
    static = result.get("static") or {}
    tools = [f"modelkeep {cfg['modelkeep']}"]
    if dvc and dvc.get("version"):
        tools.append(f"DVC {dvc['version']}")
    if ml and ml.get("version"):
        tools.append(f"MLflow {ml['version']}")
    lines = [
        f"Remote benchmark: {', '.join(tools)}; {cfg['cpus']} CPUs (load "
        f"{cfg['load_average_1m']:.2f}), Python {cfg['python']}; every server on 127.0.0.1, "
        "sharing the cores with its clients",
        "",
        f"W1: {n} versions of a {mib(w1['file_bytes'])} safetensors file ({N_TENSORS} x "
        f"float32{tuple(w1['tensor_shape'])}), {CHANGED} tensors "
        f"({mib(w1['changed_bytes_per_version'])}) new in each after the first",
        "",
        f"Push, per version ({rest}: median time; bytes: per version, the worst)",
        f"  {'':<46} {'v1':>9} {rest:>9} {'bytes v1':>12} {'bytes ' + rest:>14}",
    ]

    def push_row(label: str, section: dict[str, Any] | None, what: str) -> None:
        if section is None:
            lines.append(f"  {label:<46} skipped")
            return
        if section.get("error"):
            lines.append(f"  {label:<46} FAILED: {section['error']}")
            return
        seconds, sent = section.get(what + "_seconds", []), section.get(what + "_bytes", [])
        if not seconds:
            lines.append(f"  {label:<46} n/a ({'; '.join(section.get('notes', []))})")
            return
        worst = max(sent[1:], default=None)
        lines.append(
            f"  {label:<46} {_s(seconds[0]):>9} {_s(_median(seconds[1:])):>9} "
            f"{mib(sent[0]):>12} {'n/a' if worst is None else mib(worst):>14}"
        )

    push_row("modelkeep: remotes.push (to modelkeep server)", mk, "push")
    push_row("DVC: Repo.push (to a local folder remote)", dvc, "push")
    push_row("MLflow: log_artifact (mlflow server, proxied)", ml, "push")
    lines.append("  (each an API call in a warm process: no interpreter start or imports)")
    overhead = [f"{name} {_s(sec['cli_noop_push_seconds'])}" for name, sec in
                (("modelkeep push", mk), ("dvc push", dvc))
                if sec and sec.get("cli_noop_push_seconds") is not None]  # fmt: skip
    if overhead:
        lines.append(f"  a CLI push with nothing to send (process, imports, negotiation): "
                     f"{', '.join(overhead)}")  # fmt: skip
    lines.append(f"  changed bytes per version: {mib(w1['changed_bytes_per_version'])}")
    if mk and mk.get("push_bytes"):
        growth = max(mk["server_store_growth"][1:], default=None)
        lo = [b for b in mk["loopback_bytes"][1:] if b is not None]
        lines.append(
            f"  modelkeep {rest}, worst: server store grew "
            f"{'n/a' if growth is None else mib(growth)}, loopback carried "
            f"{mib(max(lo)) if lo else 'n/a'} (every process's traffic), "
            f"{max(mk['push_objects'][1:], default=0)} objects sent"
        )
    commits = []
    if mk and mk.get("commit_seconds"):
        commits.append(f"modelkeep commit {_s(_median(mk['commit_seconds'][1:]))}")
    if dvc and dvc.get("add_seconds"):
        commits.append(f"dvc add {_s(_median(dvc['add_seconds'][1:]))}")
    if commits:
        lines.append(f"  before each push ({rest}, median, untimed above): {', '.join(commits)}")

    lines += ["", f"Clone / pull of v{restore} ({mib(w1['file_bytes'])}) into a fresh folder"]

    def line(label: str, value: str, note: str = "") -> None:
        lines.append(f"  {label:<56} {value:>9}" + (f"   {note}" if note else ""))

    for kind, s in (static.get("servers") or {}).items():
        mark = "  <- floor" if kind == static.get("floor_server") else ""
        line(f"static file, {kind}: httpx download, best of 3", _s(s["seconds"]),
             f"with fsync {_s(s['fsync_seconds'])}{mark}")  # fmt: skip
    if static.get("error"):
        lines.append(f"  static floor FAILED: {static['error']}")
    if mk and not mk.get("error"):
        for key, label in (("clone", f"a model of v{restore} alone (API, best of 3)"),
                           ("clone_cli", f"a model of v{restore} alone (CLI process)"),
                           ("clone_all", f"all {n} versions (API)")):  # fmt: skip
            got = mk.get(key)
            if got:
                tries = mk.get("clone_tries_seconds") if key == "clone" else None
                each = f" (each: {', '.join(f'{t:.3f}' for t in tries)} s)" if tries else ""
                line(f"modelkeep clone, {label}", _s(got["seconds"]),
                     f"{mib(got['bytes'])} received{each}")  # fmt: skip
            else:
                line(f"modelkeep clone, {label}", "n/a", "; ".join(mk.get("notes", [])))
        if mk.get("cli_start_seconds") is not None:
            line("  of which a bare process (modelkeep --help, median)",
                 _s(mk["cli_start_seconds"]))  # fmt: skip
    for label, section in (("DVC: dvc pull in a fresh git clone (CLI process)", dvc),
                           ("MLflow: download_artifacts (in-process)", ml)):  # fmt: skip
        if section and not section.get("error"):
            line(label, _s(section.get("pull_seconds")))

    lines += [
        "",
        f"Resolve {MODEL}@{ALIAS}: {cfg['clients']} clients, {cfg['resolve_seconds']:g} s, "
        "closed loop, one keep-alive connection each",
        f"  {'server':<34} {'requests/s':>10} {'p50':>9} {'p99':>9} {'max':>9} "
        f"{'not 200':>8} {'client CPU':>11}",
    ]
    paced = f"modelkeep, {cfg['resolve_rate']:g}/s per client"
    loads = [
        ("modelkeep server (1 process)", (mk or {}).get("resolve")),
        ("modelkeep server, PostgreSQL", (result.get("postgres") or {}).get("resolve")),
        (paced, (mk or {}).get("resolve_paced")),
        ("MLflow server (4 workers)", (ml or {}).get("resolve")),
        ("static file (same body)", (mk or {}).get("static_resolve")),
    ]
    for label, load in loads:
        if not load:
            continue
        if load.get("error") or load.get("p99_ms") is None:
            lines.append(f"  {label:<34} FAILED: {load.get('error')}")
            continue
        lines.append(
            f"  {label:<34} {load['per_second']:>10,.0f} {_ms(load['p50_ms']):>9} "
            f"{_ms(load['p99_ms']):>9} {_ms(load['max_ms']):>9} "
            f"{load['not_ok'] + load['transport_errors']:>8} "
            f"{load['client_cpu_seconds']:>9.1f} s"
        )
    lines.append(
        "  (closed loop on shared cores: latency is about clients / throughput; paced:\n"
        "   each client sends on a fixed schedule, latency counted from when a request was due)"
    )
    for name, section in (("DVC", dvc), ("MLflow", ml), ("modelkeep", mk),
                          ("PostgreSQL resolve", result.get("postgres"))):  # fmt: skip
        if section and section.get("error"):
            lines.append(f"  {name} FAILED: {section['error']}")
    res = result["resources"]
    lines += [
        "",
        row("wall time", f"{res['wall_seconds']:.0f} s",
            ", ".join(f"{k} {v:.0f} s" for k, v in res["section_seconds"].items())),
        "",
        "Summary",
    ]  # fmt: skip
    lines += check_lines(result["checks"], 44)
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Targets and what is measured: see the module's docstring.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="3 versions of 64 MiB, 5 s of resolve load")  # fmt: skip
    parser.add_argument("--versions", type=int, help="versions of the W1 file (10; --quick 3)")
    parser.add_argument("--size-mib", type=int, help="size of the W1 file (512; --quick 64)")
    parser.add_argument(
        "--clone-version", type=int, help="the version cloned and pulled (default: min(5, N))"
    )
    parser.add_argument("--clients", type=int, default=32, help="resolve clients (32)")
    parser.add_argument("--resolve-seconds", type=float,
                        help="seconds of resolve load per server (10; --quick 5)")  # fmt: skip
    parser.add_argument(
        "--resolve-rate", type=float, default=10.0,
        help="requests/s per client of the paced resolve run (10; 0: none)",
    )  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help=f"folder to work in, on disk (default {DEFAULT_WORKDIR})")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="leave the files behind")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--skip-dvc", action="store_true", help="leave DVC out")
    parser.add_argument("--skip-mlflow", action="store_true", help="leave MLflow out")
    parser.add_argument("--skip-modelkeep", action="store_true",
                        help="leave modelkeep out (the baselines alone)")  # fmt: skip
    parser.add_argument("--postgres", action="store_true",
                        help="also measure resolve with the server's registry on PostgreSQL "
                             "(Debian's postgresql installed; a throw-away cluster)")  # fmt: skip
    parser.add_argument("--dvc-venv", type=Path, help="default: WORKDIR/dvc-venv")
    parser.add_argument("--mlflow-venv", type=Path, help="default: WORKDIR/mlflow-venv")
    args = parser.parse_args(argv)
    args.versions = args.versions or (3 if args.quick else 10)
    args.size_mib = args.size_mib or (64 if args.quick else 512)
    args.resolve_seconds = args.resolve_seconds or (5.0 if args.quick else 10.0)
    args.clone_version = args.clone_version or min(5, args.versions)
    if args.versions < 2 or args.size_mib < 1:
        parser.error("--versions must be at least 2 and --size-mib at least 1")
    if not 1 <= args.clone_version <= args.versions:
        parser.error("--clone-version must be one of the versions")
    if not 1 <= args.clients <= 1000 or not 0 < args.resolve_seconds <= 600:
        parser.error("--clients must be in 1..1000 and --resolve-seconds in (0, 600]")
    if not 0 <= args.resolve_rate <= 1000:
        parser.error("--resolve-rate must be in [0, 1000]")
    args.workdir = args.workdir.resolve()
    if on_tmpfs(args.workdir):
        parser.error(f"{args.workdir} is on a memory filesystem: pick a --workdir on disk")
    args.dvc_venv = (args.dvc_venv or args.workdir / "dvc-venv").resolve()
    args.mlflow_venv = (args.mlflow_venv or args.workdir / "mlflow-venv").resolve()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    result: dict[str, Any] = {}
    sections: dict[str, float] = {}
    with workspace(args.workdir, args.keep, _CREATED) as work:
        logs = work / "logs"
        log(f"W1: writing {args.versions} versions of a {args.size_mib} MiB safetensors file")
        start = time.perf_counter()
        files = make_versions(work / "versions", args.size_mib, args.versions)
        sections["W1 files"] = time.perf_counter() - start
        paths: list[Path] = files.pop("paths")
        restore = args.clone_version
        expected = blake3_file(paths[restore - 1])
        result["w1"] = files

        def section(name: str, fn: Callable[[], dict[str, Any]], folder: str = "") -> None:
            result[name] = attempt(name, fn)
            sections[name] = result[name]["section_seconds"]
            if folder and not args.keep:  # room for the next tool's copies
                shutil.rmtree(work / folder, ignore_errors=True)

        section("static", lambda: run_static(work, logs, paths[restore - 1], expected))
        if not args.skip_dvc:
            section("dvc", lambda: run_dvc(args, work, logs, paths, restore, expected),
                    "dvc")  # fmt: skip
        if not args.skip_mlflow:
            section("mlflow", lambda: run_mlflow(args, work, logs, paths, restore, expected),
                    "mlflow")  # fmt: skip
        if not args.skip_modelkeep:
            changed = files["changed_bytes"]
            section(
                "modelkeep",
                lambda: run_modelkeep(args, work, logs, paths, changed, restore, expected),
            )
        if args.postgres:
            section("postgres", lambda: run_resolve_postgres(args, work, logs), "postgres")
    import modelkeep

    result["config"] = {
        "versions": args.versions,
        "size_mib": args.size_mib,
        "clone_version": args.clone_version,
        "clients": args.clients,
        "resolve_seconds": args.resolve_seconds,
        "resolve_rate": args.resolve_rate,
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "python": sys.version.split()[0],
        "modelkeep": modelkeep.__version__,
        "workdir": str(args.workdir),
    }
    checks = checks_of(result)
    result["checks"] = [{**asdict(c), "status": c.status} for c in checks]
    result["resources"] = {
        "wall_seconds": time.perf_counter() - started,
        "section_seconds": sections,
        "self_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    print(json.dumps(result, indent=2, default=str) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
