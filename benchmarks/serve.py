"""Serve benchmark: `modelkeep serve` next to a minimal hand-written Starlette app.

    python benchmarks/serve.py [--seconds 20] [--concurrency 32] [--rounds 8]
                               [--client auto|raw|httpx] [--profile]
                               [--workdir DIR] [--keep] [--json]

A scikit-learn LogisticRegression (20 features, fitted on NumPy arrays) is committed
with an input example and aliased bench@production. Two servers then run side by side
on 127.0.0.1, each in its own process under uvicorn with the same settings:

- `modelkeep serve bench@production`, loaded on POST /predict;
- the fair minimal baseline, a bare Starlette app written into the work folder: it
  loads the checked-out model file with `skops.io.load` and, in an `async def` route,
  does `orjson.loads(body)`, `np.asarray(inputs)`, `model.predict`, `orjson.dumps`.

The load comes from another process: `wrk` with a Lua script when it is on PATH, else
benchmarks/_load.py, --concurrency asyncio tasks POSTing in a loop over as many
keep-alive connections, with a minimal HTTP/1.1 client on asyncio streams ("raw") or
with a shared httpx.AsyncClient ("httpx"; its pool costs so much CPU per request at
concurrency 32 that on 2 cores it measures itself, not the server). Bodies are
{"inputs": rows} of 1 and of 100 rows. Each server gets --seconds per body size, cut
into --rounds segments run in alternating order (AB BA AB BA ...), so that drift on the
machine falls on both. The load generator and the servers share the machine's cores;
the table says how busy each was, and how busy the rest of the machine was.

Targets (single rows): modelkeep >= 85 % of the minimal app's requests/s, and its p99
<= 1.5 x the minimal app's p99. A missed target (or --profile) gets a quick in-process
profile of both apps (each ASGI app called directly in this process, under cProfile)
and a one-line hint of where modelkeep's extra time per request goes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import importlib.util
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import orjson
import sklearn
import starlette
import uvicorn
from fastapi import FastAPI, Request
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from starlette.responses import Response

import modelkeep

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from types import ModuleType

from _bench import free_port, log, modelkeep_command, workspace
from _load import HEADERS, machine_busy, process_cpu

HERE = Path(__file__).resolve().parent
SEED = 20240601
MODEL = "bench"
ALIAS = "production"
REV = f"{MODEL}@{ALIAS}"
FEATURES = 20
ROW_COUNTS = (1, 100)
MODELKEEP = "modelkeep"
MINIMAL = "minimal"
MINIMAL_MODULE = "serve_minimal_app"
READY_TIMEOUT = 180.0  # first start on a cold disk imports a lot
WARM_SECONDS = 1.0
MIN_SEGMENT_SECONDS = 0.5
PROFILE_REQUESTS = 1000  # per pass and app
PROFILE_PASSES = 3
LOAD_GENERATORS = {
    "wrk": "wrk -t2 with a Lua script",
    "raw": "benchmarks/_load.py, minimal asyncio HTTP/1.1 client, own process",
    "httpx": f"benchmarks/_load.py, httpx {httpx.__version__} AsyncClient, own process",
}

# Targets (single-row bodies).
MIN_THROUGHPUT_RATIO = 0.85
MAX_P99_RATIO = 1.5

# What the benchmark creates inside the work folder; nothing else is touched.
_CREATED = (
    "repo",
    "checkout",
    f"{MINIMAL_MODULE}.py",
    "body-1.json",
    "body-100.json",
    "post.lua",
    "modelkeep-serve.log",
    "minimal-app.log",
)

MINIMAL_APP = '''"""Minimal baseline for benchmarks/serve.py: Starlette calling model.predict."""

import numpy as np
import orjson
import skops.io
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

PATH = @PATH@
model = skops.io.load(PATH, trusted=skops.io.get_untrusted_types(file=PATH))


async def predict(request: Request) -> Response:
    body = orjson.loads(await request.body())
    y = model.predict(np.asarray(body["inputs"]))
    out = orjson.dumps({"predictions": y}, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(out, media_type="application/json")


async def ready(request: Request) -> Response:
    return Response(b'{"ready":true}', media_type="application/json")


app = Starlette(
    routes=[Route("/predict", predict, methods=["POST"]), Route("/v2/health/ready", ready)]
)
'''

WRK_SCRIPT = """-- POST one JSON body; report one line the benchmark parses.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "errors": %d, "non2xx": %d, '
    .. '"p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout,
    e.status, latency:percentile(50), latency:percentile(99)))
end
"""


# -- the model and the servers --------------------------------------------------------


@dataclass
class Fixture:
    repo: Path
    model_file: Path
    bodies: dict[int, Path]
    expected: dict[int, list[int]]  # model.predict on each body, in this process
    train_rows: int


def build(workdir: Path) -> Fixture:
    x, y = make_classification(
        n_samples=2100, n_features=FEATURES, n_informative=10, random_state=SEED
    )
    train_x, train_y, held_out = x[:2000], y[:2000], x[2000:]
    model = LogisticRegression(max_iter=1000).fit(train_x, train_y)
    repo = modelkeep.Repo.init(workdir / "repo")
    try:
        version = repo.commit(MODEL, model, "serve benchmark model", input_example=train_x[:5])
        repo.set_alias(REV, version.rev, "serve benchmark")
        repo.checkout(version, workdir / "checkout")
        main_file = workdir / "checkout" / version.artifact["main"]
    finally:
        repo.close()
    bodies, expected = {}, {}
    for n in ROW_COUNTS:
        rows = held_out[:n]
        bodies[n] = workdir / f"body-{n}.json"
        bodies[n].write_bytes(orjson.dumps({"inputs": rows.tolist()}))
        expected[n] = model.predict(rows).tolist()
    return Fixture(workdir / "repo", main_file, bodies, expected, len(train_x))


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    spawned: float = field(default_factory=time.perf_counter)
    start_seconds: float = 0.0  # from spawn to ready

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/predict"

    def is_ready(self, client: httpx.Client) -> bool:
        """True once GET /v2/health/ready answers 200 (start_seconds is set then)."""
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            if client.get(f"http://127.0.0.1:{self.port}/v2/health/ready").status_code == 200:
                self.start_seconds = time.perf_counter() - self.spawned
                return True
        return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _spawn(name: str, argv: list[str], cwd: Path, log_path: Path) -> Server:
    port = int(argv[argv.index("--port") + 1])
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Server(name, port, proc, log_path)


@contextlib.contextmanager
def servers(fixture: Fixture, workdir: Path) -> Iterator[dict[str, Server]]:
    app_file = workdir / f"{MINIMAL_MODULE}.py"
    app_file.write_text(MINIMAL_APP.replace("@PATH@", repr(str(fixture.model_file))))
    started: dict[str, Server] = {}
    try:
        started[MODELKEEP] = _spawn(
            MODELKEEP,
            [
                *modelkeep_command(),
                "--repo",
                str(fixture.repo),
                "serve",
                REV,
                "--host",
                "127.0.0.1",
                "--port",
                str(free_port()),
                *SERVE_ARGS,
            ],
            workdir,
            workdir / "modelkeep-serve.log",
        )
        started[MINIMAL] = _spawn(
            MINIMAL,
            [
                sys.executable,
                "-m",
                "uvicorn",
                f"{MINIMAL_MODULE}:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(free_port()),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            workdir,
            workdir / "minimal-app.log",
        )
        waiting = list(started.values())
        deadline = time.perf_counter() + READY_TIMEOUT
        with httpx.Client(timeout=2.0) as client:
            while waiting:
                waiting = [s for s in waiting if not s.is_ready(client)]
                if waiting and time.perf_counter() > deadline:
                    names = ", ".join(s.name for s in waiting)
                    raise RuntimeError(f"{names} not ready after {READY_TIMEOUT:.0f} s")
                time.sleep(0.1 if waiting else 0)
        yield started
    finally:
        for server in started.values():
            server.stop()


# -- load -----------------------------------------------------------------------------


@dataclass
class Segment:
    server: str
    rows: int
    round: int
    requests: int
    errors: int
    error_kinds: dict[str, int]
    elapsed: float
    p50_ms: float
    p99_ms: float
    client_cpu: float | None
    server_cpu: float | None
    machine_cpu: float | None
    predictions_ok: bool | None  # the first answer holds the expected predictions

    @classmethod
    def of(
        cls,
        server: str,
        rows: int,
        round: int,
        out: dict[str, Any],
        latencies: list[int],
        expected: list[int],
    ) -> Segment:
        """A round's figures from a load generator's output and its latencies (µs)."""
        if latencies:
            p50, p99 = (float(v) / 1000 for v in np.percentile(latencies, [50, 99]))
        else:  # wrk gives percentiles only; an empty list: nothing answered
            p50, p99 = out.get("p50_us", 0) / 1000, out.get("p99_us", 0) / 1000
        return cls(
            server=server,
            rows=rows,
            round=round,
            requests=out["requests"],
            errors=out["errors"],
            error_kinds=out["error_kinds"],
            elapsed=out["elapsed"],
            p50_ms=p50,
            p99_ms=p99,
            client_cpu=out["client_cpu"],
            server_cpu=out["server_cpu"],
            machine_cpu=out["machine_cpu"],
            predictions_ok=_predictions_ok(out["first_body"], expected),
        )


def _predictions_ok(body: str | None, expected: list[int]) -> bool | None:
    if body is None:
        return None
    try:
        return bool(orjson.loads(body).get("predictions") == expected)
    except (orjson.JSONDecodeError, AttributeError):
        return False


def load_python(
    client: str, server: Server, body: Path, concurrency: int, seconds: float
) -> tuple[dict[str, Any], list[int]]:
    extra = ["--client", client, "--server-pid", str(server.proc.pid)]
    return run_load(server.url, body, concurrency, seconds, extra)


def run_load(
    url: str, body: Path, concurrency: int, seconds: float, extra: Sequence[str] = ()
) -> tuple[dict[str, Any], list[int]]:
    """benchmarks/_load.py against ``url`` in its own process: its figures and the
    latencies (µs) of every request. ``extra``: more of _load.py's options."""
    argv = [
        sys.executable,
        str(HERE / "_load.py"),
        "--url",
        url,
        "--body",
        str(body),
        "--concurrency",
        str(concurrency),
        "--seconds",
        str(seconds),
        *extra,
    ]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        argv, capture_output=True, check=False, timeout=seconds + 120, env=env, cwd=HERE
    )
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{proc.stderr.decode(errors='replace')}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result, result.pop("latencies_us")


def load_wrk(
    wrk: str, server: Server, body: Path, concurrency: int, seconds: float, script: Path
) -> tuple[dict[str, Any], list[int]]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before, busy_before = process_cpu(server.proc.pid), machine_busy()
    start = time.perf_counter()
    proc = subprocess.run(
        [
            wrk,
            "-t2",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            server.url,
        ],
        capture_output=True,
        check=False,
        timeout=seconds + 120,
        env={**os.environ, "BENCH_BODY": str(body)},
    )
    elapsed = time.perf_counter() - start
    server_after, busy_after = process_cpu(server.proc.pid), machine_busy()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in proc.stdout.decode().splitlines() if ln.startswith("BENCH ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed:\n{proc.stdout.decode()}\n{proc.stderr.decode()}")
    out = json.loads(line[len("BENCH ") :])
    with httpx.Client(timeout=10.0) as client:  # one answer, to check the predictions
        first = client.post(server.url, content=body.read_bytes(), headers=HEADERS).text
    return {
        "requests": out["requests"] - out["non2xx"],
        "errors": out["errors"] + out["non2xx"],
        "error_kinds": {"transport": out["errors"], "non-2xx": out["non2xx"]},
        "elapsed": out["duration_us"] / 1e6 or elapsed,
        "client_cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "server_cpu": None
        if server_before is None or server_after is None
        else server_after - server_before,
        "machine_cpu": None
        if busy_before is None or busy_after is None
        else busy_after - busy_before,
        "first_body": first,
        "p50_us": out["p50_us"],
        "p99_us": out["p99_us"],
    }, []


@dataclass
class Figures:
    server: str
    rows: int
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    exact_percentiles: bool
    rps_by_round: list[float]
    server_cores: float | None  # server CPU seconds per wall second
    server_us_per_request: float | None
    client_cores: float | None
    other_cores: float | None  # the rest of the machine: the idle server, neighbours
    predictions_ok: bool | None


def _sum(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def combine(segments: list[Segment], latencies: list[int]) -> Figures:
    requests = sum(s.requests for s in segments)
    seconds = sum(s.elapsed for s in segments)
    if latencies:
        arr = np.asarray(latencies, dtype=np.float64) / 1000.0
        p50, p99 = (float(v) for v in np.percentile(arr, [50, 99]))
        exact = True
    elif requests:  # wrk: request-weighted mean of each segment's percentile
        weights = [s.requests for s in segments]
        p50 = float(np.average([s.p50_ms for s in segments], weights=weights))
        p99 = float(np.average([s.p99_ms for s in segments], weights=weights))
        exact = False
    else:  # nothing answered 200
        p50 = p99 = float("nan")
        exact = True
    server = _sum([s.server_cpu for s in segments])
    client = _sum([s.client_cpu for s in segments])
    machine = _sum([s.machine_cpu for s in segments])
    others = None
    if machine is not None and server is not None and client is not None:
        others = max(0.0, machine - server - client) / seconds
    oks = [s.predictions_ok for s in segments]
    return Figures(
        server=segments[0].server,
        rows=segments[0].rows,
        requests=requests,
        errors=sum(s.errors for s in segments),
        seconds=seconds,
        rps=requests / seconds,
        p50_ms=p50,
        p99_ms=p99,
        exact_percentiles=exact,
        rps_by_round=[s.requests / s.elapsed for s in segments],
        server_cores=None if server is None else server / seconds,
        server_us_per_request=None if server is None or not requests else 1e6 * server / requests,
        client_cores=None if client is None else client / seconds,
        other_cores=others,
        predictions_ok=None if None in oks else all(oks),
    )


def measure(
    started: dict[str, Server],
    fixture: Fixture,
    workdir: Path,
    concurrency: int,
    seconds: float,
    rounds: int,
    client: str,
) -> tuple[list[Segment], dict[tuple[str, int], Figures]]:
    wrk = shutil.which("wrk") if client == "wrk" else None
    script = workdir / "post.lua"
    if wrk:
        script.write_text(WRK_SCRIPT)

    def one(server: Server, rows: int, secs: float) -> tuple[dict[str, Any], list[int]]:
        body = fixture.bodies[rows]
        if wrk:
            return load_wrk(wrk, server, body, concurrency, secs, script)
        return load_python(client, server, body, concurrency, secs)

    for name in (MODELKEEP, MINIMAL):
        log(f"warming {name} ({WARM_SECONDS:g} s, untimed)")
        one(started[name], 1, WARM_SECONDS)

    per_round = seconds / rounds
    segments: list[Segment] = []
    latencies: dict[tuple[str, int], list[int]] = {}
    for r_index, rows in enumerate(ROW_COUNTS):
        for r in range(rounds):
            order = (MODELKEEP, MINIMAL) if (r + r_index) % 2 == 0 else (MINIMAL, MODELKEEP)
            for name in order:
                out, lat = one(started[name], rows, per_round)
                seg = Segment.of(name, rows, r + 1, out, lat, fixture.expected[rows])
                segments.append(seg)
                latencies.setdefault((name, rows), []).extend(lat)
                log(
                    f"  {rows:>3} row(s), round {r + 1}/{rounds}, {name:<9} "
                    f"{seg.requests / seg.elapsed:>8,.0f} req/s  p99 {seg.p99_ms:.1f} ms"
                    + (f"  errors {seg.errors}" if seg.errors else "")
                )
    figures = {
        key: combine([s for s in segments if (s.server, s.rows) == key], latencies[key])
        for key in latencies
    }
    return segments, figures


# -- profile --------------------------------------------------------------------------


def _import_minimal(workdir: Path) -> ModuleType:
    path = workdir / f"{MINIMAL_MODULE}.py"
    spec = importlib.util.spec_from_file_location(f"_bench_{MINIMAL_MODULE}", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = dont_write
    return module


async def _drive(app: Any, body: bytes, n: int) -> None:
    """``n`` POST /predict calls straight into the ASGI app: no HTTP, no client."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict",
        "raw_path": b"/predict",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
    }
    message = {"type": "http.request", "body": body, "more_body": False}
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return message

    async def send(event: dict[str, Any]) -> None:
        if event["type"] == "http.response.start":
            statuses.append(event["status"])

    for _ in range(n):
        await app(dict(scope), receive, send)
    if any(status != 200 for status in statuses):
        raise RuntimeError(f"in-process request failed: statuses {sorted(set(statuses))}")


def _bucket(path: str, func: str) -> str:
    """Where a profiled function lives: a package, a modelkeep module, or builtins."""
    if path == "~":  # C functions: named after what they belong to
        for name in ("orjson", "numpy", "sklearn", "scipy"):
            if name in func:
                return name
        return "builtins"
    parts = Path(path).parts
    if "modelkeep" in parts:
        i = len(parts) - 1 - parts[::-1].index("modelkeep")
        return "/".join(parts[i:])
    if "site-packages" in parts:
        i = parts.index("site-packages")
        if i + 1 < len(parts):
            top = parts[i + 1].removesuffix(".py")
            return {"httpcore": "httpx", "anyio": "httpx", "sniffio": "httpx"}.get(top, top)
    return f"stdlib {Path(path).stem}"


def _profile_buckets(app: Any, body: bytes, n: int) -> dict[str, float]:
    asyncio.run(_drive(app, body, 50))  # warm
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        asyncio.run(_drive(app, body, n))
    finally:
        profiler.disable()
    table: dict[tuple[str, int, str], tuple[Any, ...]]
    table = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    buckets: dict[str, float] = {}
    for (path, _line, func), row in table.items():
        key = _bucket(path, func)
        buckets[key] = buckets.get(key, 0.0) + float(row[2])  # self time
    return {k: 1e6 * v / n for k, v in buckets.items()}  # µs per request


def _minimal_on_fastapi(model: Any) -> FastAPI:
    """The minimal app's handler on FastAPI instead of Starlette: the framework's share."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        body = orjson.loads(await request.body())
        y = model.predict(np.asarray(body["inputs"]))
        out = orjson.dumps({"predictions": y}, option=orjson.OPT_SERIALIZE_NUMPY)
        return Response(out, media_type="application/json")

    return app


def profile(fixture: Fixture, workdir: Path, n: int) -> dict[str, Any]:
    """The apps in this process, ``n`` sequential single-row requests a pass, passes
    alternating: plain time per request (the fastest pass), then cProfile self time per
    package (the lowest of the passes, bucket by bucket), and modelkeep's extra."""
    from modelkeep.serve.run import prepare

    body = fixture.bodies[1].read_bytes()
    follower, mk_app = prepare(fixture.repo, REV)
    try:
        minimal = _import_minimal(workdir)
        apps = {
            MODELKEEP: mk_app,
            MINIMAL: minimal.app,
            "minimal on FastAPI": _minimal_on_fastapi(minimal.model),
        }
        for app in apps.values():
            asyncio.run(_drive(app, body, 100))  # warm
        plain_runs: dict[str, list[float]] = {name: [] for name in apps}
        profiled_runs: dict[str, list[dict[str, float]]] = {MODELKEEP: [], MINIMAL: []}
        for _ in range(PROFILE_PASSES):
            for name, app in apps.items():
                start = time.perf_counter()
                asyncio.run(_drive(app, body, n))
                plain_runs[name].append(1e6 * (time.perf_counter() - start) / n)
                if name in profiled_runs:
                    profiled_runs[name].append(_profile_buckets(app, body, n))
    finally:
        follower.stop()
    plain = {name: min(runs) for name, runs in plain_runs.items()}
    buckets = {
        name: {k: min(r.get(k, 0.0) for r in runs) for k in set().union(*runs)}
        for name, runs in profiled_runs.items()
    }
    keys = set(buckets[MODELKEEP]) | set(buckets[MINIMAL])
    extra = {k: buckets[MODELKEEP].get(k, 0.0) - buckets[MINIMAL].get(k, 0.0) for k in sorted(keys)}
    top = sorted(((k, v) for k, v in extra.items() if v > 0), key=lambda kv: -kv[1])[:5]
    mk_modules = sorted(
        ((k, v) for k, v in buckets[MODELKEEP].items() if k.startswith("modelkeep/")),
        key=lambda kv: -kv[1],
    )
    framework = plain["minimal on FastAPI"] - plain[MINIMAL]
    hint = (
        f"hint: in-process (single-row calls straight into each ASGI app, no HTTP; fastest of "
        f"{PROFILE_PASSES} x {n}) modelkeep takes {plain[MODELKEEP]:.0f} µs/request, the "
        f"minimal app {plain[MINIMAL]:.0f} ({plain[MODELKEEP] - plain[MINIMAL]:+.0f}), the "
        f"minimal handler on FastAPI {plain['minimal on FastAPI']:.0f} (FastAPI's share "
        f"{framework:+.0f}); under cProfile modelkeep's extra self time per request is in "
        + ", ".join(f"{k} {v:+.0f} µs" for k, v in top)
        + " (cProfile inflates pure-Python code most)"
    )
    return {
        "requests_per_pass": n,
        "passes": PROFILE_PASSES,
        "plain_us_per_request": plain,
        "profiled_us_per_request_by_bucket": buckets,
        "extra_us_per_request": extra,
        "modelkeep_modules_us_per_request": dict(mk_modules),
        "hint": hint,
    }


# -- results --------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    value: float
    limit: float
    higher_is_better: bool
    detail: str

    @property
    def status(self) -> str:
        ok = self.value >= self.limit if self.higher_is_better else self.value <= self.limit
        return "PASS" if ok else "MISS"


def _loop_and_http() -> str:
    """What uvicorn picks with loop="auto" and http="auto" (the same for both servers)."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"{loop} loop, {http} HTTP"


def run(
    workdir: Path,
    seconds: float,
    concurrency: int,
    rounds: int,
    client: str,
    force_profile: bool,
) -> dict[str, Any]:
    load_start = os.getloadavg()
    log(f"building the model and the repository in {workdir}")
    fixture = build(workdir)
    log("starting modelkeep serve and the minimal app")
    with servers(fixture, workdir) as started:
        start_seconds = {name: s.start_seconds for name, s in started.items()}
        log(
            f"ready: modelkeep after {start_seconds[MODELKEEP]:.1f} s, "
            f"minimal after {start_seconds[MINIMAL]:.1f} s (started together)"
        )
        segments, figures = measure(started, fixture, workdir, concurrency, seconds, rounds, client)
        ports = {name: s.port for name, s in started.items()}
    load_end = os.getloadavg()

    mk1, min1 = figures[(MODELKEEP, 1)], figures[(MINIMAL, 1)]
    checks = [
        Check(
            "single-row req/s, modelkeep / minimal",
            _ratio(mk1.rps, min1.rps) or 0.0,
            MIN_THROUGHPUT_RATIO,
            True,
            f"{mk1.rps:,.0f} vs {min1.rps:,.0f} req/s",
        ),
        Check(
            "single-row p99, modelkeep / minimal",
            _ratio(mk1.p99_ms, min1.p99_ms) or float("inf"),
            MAX_P99_RATIO,
            False,
            f"{mk1.p99_ms:.1f} vs {min1.p99_ms:.1f} ms",
        ),
    ]
    missed = any(c.status == "MISS" for c in checks)
    prof = None
    if missed or force_profile:
        log(f"profiling in-process ({PROFILE_PASSES} passes of {PROFILE_REQUESTS} requests)")
        prof = profile(fixture, workdir, PROFILE_REQUESTS)
    mk100, min100 = figures[(MODELKEEP, 100)], figures[(MINIMAL, 100)]
    return {
        "config": {
            "seconds_per_server_and_body": seconds,
            "rounds": rounds,
            "concurrency": concurrency,
            "load_generator": LOAD_GENERATORS[client],
            "server_stack": f"uvicorn {uvicorn.__version__} ({_loop_and_http()}), 1 worker",
            "starlette": starlette.__version__,
            "model": f"LogisticRegression, {FEATURES} features, fitted on "
            f"{fixture.train_rows:,} rows (NumPy)",
            "workdir": str(workdir),
            "ports": ports,
            "cpus": os.cpu_count(),
            "load_average_start": list(load_start),
            "load_average_end": list(load_end),
            "python": sys.version.split()[0],
            "modelkeep": modelkeep.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "start_seconds": start_seconds,
        "segments": [asdict(s) for s in segments],
        "figures": [asdict(f) for f in figures.values()],
        "checks": [{**asdict(c), "status": c.status} for c in checks],
        "info": {
            "hundred_rows_rps_ratio": _ratio(mk100.rps, min100.rps),
            "hundred_rows_p99_ratio": _ratio(mk100.p99_ms, min100.p99_ms),
            "single_row_server_cpu_ratio": _ratio(
                mk1.server_us_per_request, min1.server_us_per_request
            ),
        },
        "profile": prof,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or not b else a / b


# -- output ---------------------------------------------------------------------------


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def render(result: dict[str, Any]) -> str:
    cfg = result["config"]
    la, le = cfg["load_average_start"], cfg["load_average_end"]
    lines = [
        f"modelkeep {cfg['modelkeep']} serve benchmark: {cfg['cpus']} CPUs (load average "
        f"{la[0]:.2f} {la[1]:.2f} {la[2]:.2f} at start, {le[0]:.2f} at end), "
        f"Python {cfg['python']}, scikit-learn {cfg['scikit-learn']}",
        f'Model: {cfg["model"]}; POST /predict with {{"inputs": rows}}',
        f"Servers: {cfg['server_stack']} each, on 127.0.0.1; load: {cfg['load_generator']}, "
        f"concurrency {cfg['concurrency']}",
        f"{cfg['seconds_per_server_and_body']:g} s per server and body size, in "
        f"{cfg['rounds']} rounds of alternating order; the load generator and the servers "
        f"share the machine's {cfg['cpus']} cores",
        f"(ready after: modelkeep {result['start_seconds'][MODELKEEP]:.1f} s, minimal "
        f"{result['start_seconds'][MINIMAL]:.1f} s; CPU columns are cores busy: srv = the "
        "server, client = the load generator, other = the rest, idle server included)",
        "",
        f"  {'rows':>4}  {'server':<9} {'req/s':>8} {'by round':>17} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'errors':>6}  {'srv':>4} {'srv µs/req':>10} {'client':>6} "
        f"{'other':>5}  answers",
    ]
    order = {MODELKEEP: 0, MINIMAL: 1}
    for f in sorted(result["figures"], key=lambda f: (f["rows"], order[f["server"]])):
        spread = f"{min(f['rps_by_round']):,.0f}-{max(f['rps_by_round']):,.0f}"
        ok = {True: "ok", False: "WRONG", None: "n/a"}[f["predictions_ok"]]
        lines.append(
            f"  {f['rows']:>4}  {f['server']:<9} {f['rps']:>8,.0f} {spread:>17} "
            f"{f['p50_ms']:>7.1f} {f['p99_ms']:>7.1f}{'' if f['exact_percentiles'] else '~'}"
            f"{f['errors']:>6}  {_num(f['server_cores'], '.2f'):>4} "
            f"{_num(f['server_us_per_request'], ',.0f'):>10} "
            f"{_num(f['client_cores'], '.2f'):>6} {_num(f['other_cores'], '.2f'):>5}  {ok}"
        )
    info = result["info"]
    lines += ["", "Summary"]
    for c in result["checks"]:
        op = ">=" if c["higher_is_better"] else "<="
        lines.append(
            f"  {c['status']:<4}  {c['name']:<38} {c['value']:>5.2f}  "
            f"target {op} {c['limit']:g}   {c['detail']}"
        )
    by_key = {(f["server"], f["rows"]): f for f in result["figures"]}
    mk100, min100 = by_key[(MODELKEEP, 100)], by_key[(MINIMAL, 100)]
    lines += [
        f"  info  {'100-row req/s, modelkeep / minimal':<38} "
        f"{_num(info['hundred_rows_rps_ratio'], '.2f'):>5}  (no target)   "
        f"{mk100['rps']:,.0f} vs {min100['rps']:,.0f} req/s",
        f"  info  {'100-row p99, modelkeep / minimal':<38} "
        f"{_num(info['hundred_rows_p99_ratio'], '.2f'):>5}  (no target)   "
        f"{mk100['p99_ms']:.1f} vs {min100['p99_ms']:.1f} ms",
    ]
    cpu_ratio = info["single_row_server_cpu_ratio"]
    if cpu_ratio is not None:
        mk1, min1 = by_key[(MODELKEEP, 1)], by_key[(MINIMAL, 1)]
        lines.append(
            f"  info  {'single-row server CPU/req, mk / min':<38} {cpu_ratio:>5.2f}  "
            f"(no target)   {mk1['server_us_per_request']:,.0f} vs "
            f"{min1['server_us_per_request']:,.0f} µs: with a core each and nothing else "
            f"running, req/s would go about as {1 / cpu_ratio:.2f}"
        )
    if result["profile"] is not None:
        lines += ["", result["profile"]["hint"]]
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------


# Extra arguments for `modelkeep serve` (--serve-arg), e.g. to measure --no-monitor.
SERVE_ARGS: list[str] = []


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="per server and body size (default 20)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=32, help="connections and tasks (default 32)"
    )
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        help="extra argument for `modelkeep serve` (repeatable), e.g. --serve-arg=--no-monitor",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=8,
        help="alternating segments per server and body size, each at least 0.5 s (default 8)",
    )
    parser.add_argument(
        "--client",
        choices=("auto", "raw", "httpx"),
        default="auto",
        help="load generator: auto = wrk if on PATH, else raw (default auto)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile in-process even if every target passes"
    )
    parser.add_argument("--workdir", type=Path, help="folder to work in (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="leave the files behind")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.concurrency < 1 or args.rounds < 1:
        parser.error("--seconds must be positive, --concurrency and --rounds at least 1")
    args.rounds = max(1, min(args.rounds, int(args.seconds / MIN_SEGMENT_SECONDS)))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    SERVE_ARGS.extend(args.serve_arg)
    with workspace(args.workdir, args.keep, _CREATED) as workdir:
        client = args.client
        if client == "auto":
            client = "wrk" if shutil.which("wrk") else "raw"
        result = run(workdir, args.seconds, args.concurrency, args.rounds, client, args.profile)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
