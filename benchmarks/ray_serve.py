"""Ray Serve benchmark: modelkeep on Ray next to a bare Ray Serve deployment of the same model.

    python3 benchmarks/ray_serve.py [--seconds 12] [--rounds 8] [--concurrency 8]
                                    [--moves 10] [--hold 3] [--bare-moves 3]
                                    [--workdir DIR] [--keep] [--json]

Run it as root: Ray binds every interface, so the benchmark runs inside a network
namespace of its own that holds only loopback. When this process sees any other
interface it re-executes itself under
``unshare -n sh -c 'ip link set lo up && exec python3 benchmarks/ray_serve.py ...'``.
(It looks at /proc/self/net/dev, which belongs to the process's namespace;
/sys/class/net keeps showing the namespace sysfs was mounted in, eth0 included.)

The model is serve.py's: a scikit-learn LogisticRegression (20 features), committed
with an input example and aliased bench@production, plus two more versions of it
(other regularisation) for the alias moves. One Ray instance (started here, its files
in WORKDIR/ray) serves everything on 127.0.0.1; each application is deleted before the
next group starts, so at most four replicas (and one coordinator) are alive at once.
Replicas ask Ray for half a CPU each (2 + 2 replicas fit on 2 cores); both kinds of
deployment keep Ray Serve's default max_ongoing_requests.

1. Single-row POST /predict at --concurrency, benchmarks/_load.py in its own process
   (raw HTTP/1.1 client; wrk is not used: the alias moves need every answer's header),
   --seconds per server in --rounds segments of rotating order, two groups:
   - 1 replica: modelkeep on Ray (`on_ray.deploy`, the local server's Starlette app in
     each replica, following bench@production), a bare Ray Serve deployment, and the
     local `modelkeep serve` (uvicorn, one process) for reference;
   - 2 replicas: modelkeep on Ray and the bare deployment.
   The bare deployment is as minimal as serve.py's minimal app: a `@serve.deployment`
   class that loads the checked-out skops file in `__init__` and, in `async
   __call__(request)`, does `orjson.loads`, `np.asarray`, `model.predict`,
   `orjson.dumps`; it also names its model in an X-Model-Version header (as modelkeep
   does), so that part 2 can tell answers apart.
   Target: modelkeep on Ray >= 0.9 x the bare deployment's req/s at each replica count.

2. Model change under load (modelkeep on Ray, 2 replicas, the load running):
   --moves alias moves, one every --hold seconds, with `repo.set_alias`: first back
   and forth between versions 1 and 2 (after the first, the target is the previous
   version, which the replicas keep loaded for an instant rollback), then round three
   versions (every target has to be loaded and warmed). Per move: the time until every
   replica reports the new version in the registry (`repo.replicas`), the time until
   every answer carries it (X-Model-Version), requests that failed (non-200, connection
   errors, 10 s timeouts), and the lowest throughput in 250 ms bins meanwhile, against
   the steady rate before the first move. Target: <= 2 s to the new version, 0
   failures. Contrast: the bare deployment's own way to change model, a user_config
   update (`reconfigure` loads the file the config names; `serve.run` of
   `.options(user_config=...)`, --bare-moves times), the same figures with the time
   `serve.run` took. Ray documents a user_config change as a lightweight update
   (replicas reconfigured in place), but that holds for config files (`serve deploy`);
   Ray 2.60's `serve.run` gives every call a new code version, so the replicas are
   replaced one at a time (each new one starts a worker process, imports, loads), and
   `version=` is gone from the public options. The "restarted" column says which
   happened, from the replicas' process ids before and after each move.

The load generator and Ray share the machine's cores: the table says how busy each
was (srv = Ray's proxy and the application's replicas, or the local server). Default
run: about 5 minutes (each user_config update takes tens of seconds on 2 busy cores).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import orjson
import ray
import sklearn
import skops.io
from ray import serve
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from starlette.responses import Response

import modelkeep
from modelkeep.serve import on_ray

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from starlette.requests import Request

from _bench import log, workspace

import serve as bench_serve  # benchmarks/serve.py: the fixture, segments and figures

HERE = Path(__file__).resolve().parent
MODEL, REV = bench_serve.MODEL, bench_serve.REV
# Versions 2 and 3 (for the moves): the same estimator, other regularisation.
MORE_VERSIONS = {2: 0.05, 3: 0.005}
HOST = "127.0.0.1"
REPLICA_CPUS = 0.5
POLL_INTERVAL = 0.5  # on_ray.deploy's default: how often a replica reads the registry
DEPLOY_TIMEOUT = 180.0
READY_TIMEOUT = 120.0
WARM_SECONDS = 1.0
MIN_SEGMENT_SECONDS = 0.5
LEAD_SECONDS = 2.0  # steady load before the first move: the rate the dip is measured against
REQUEST_TIMEOUT = 10.0  # a request that takes longer during the moves counts as failed
BIN_SECONDS = 0.25
REPLICA_POLL = 0.02
MAX_RAY_DIR = 40  # Ray's unix sockets live ~64 characters below its temp dir (limit 107)
NETNS_ENV = "MODELKEEP_BENCH_NETNS"

# Targets.
MIN_THROUGHPUT_RATIO = 0.9
MAX_MOVE_SECONDS = 2.0
MAX_MOVE_FAILURES = 0

# Servers, by key: (label, replicas).
MK1, BARE1, LOCAL, MK2, BARE2 = "mk-ray-1", "bare-ray-1", "local", "mk-ray-2", "bare-ray-2"
LABELS = {
    MK1: ("modelkeep on Ray", "1"),
    BARE1: ("bare Ray Serve", "1"),
    LOCAL: ("modelkeep serve", "1 proc"),
    MK2: ("modelkeep on Ray", "2"),
    BARE2: ("bare Ray Serve", "2"),
}

# What the benchmark creates inside the work folder; nothing else is touched.
_CREATED = (
    "repo",
    "checkout",
    *(f"checkout-{n}" for n in MORE_VERSIONS),
    "body-1.json",
    "body-100.json",
    "ray",
    "modelkeep-serve.log",
    "load-ready",
)


# -- the bare deployment --------------------------------------------------------------


@serve.deployment(ray_actor_options={"num_cpus": REPLICA_CPUS})
class Bare:
    """Ray Serve alone: the model file loaded in __init__, predict in __call__; a
    user_config update names another file, which ``reconfigure`` loads."""

    def __init__(self, path: str, version: str) -> None:
        self.current = (_load_skops(path), version)

    def reconfigure(self, config: dict[str, str]) -> None:
        self.current = (_load_skops(config["path"]), config["version"])

    async def __call__(self, request: Request) -> Response:
        model, version = self.current
        body = orjson.loads(await request.body())
        y = model.predict(np.asarray(body["inputs"]))
        out = orjson.dumps({"predictions": y}, option=orjson.OPT_SERIALIZE_NUMPY)
        return Response(out, media_type="application/json", headers={"X-Model-Version": version})


def _load_skops(path: str) -> Any:
    return skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))


# -- the network namespace --------------------------------------------------------------


def only_loopback() -> bool:
    """Whether this process's network namespace holds no interface but lo."""
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    return [line.split(":", 1)[0].strip() for line in lines] == ["lo"]


def reexec_in_netns(argv: Sequence[str]) -> None:
    """Run this script again in a new network namespace of loopback only (never returns)."""
    if os.environ.get(NETNS_ENV):
        raise SystemExit("still more than loopback inside `unshare -n`: giving up")
    if os.geteuid() != 0:
        raise SystemExit(
            "Ray binds every interface: this benchmark runs in a network namespace of its "
            "own (unshare -n), which needs root; run it as root"
        )
    log("re-executing in a network namespace with only loopback (unshare -n)")
    os.environ[NETNS_ENV] = "1"
    script = 'ip link set lo up && exec "$0" "$@"'
    args = ["unshare", "-n", "sh", "-c", script, sys.executable, str(Path(__file__).resolve())]
    os.execvp("unshare", [*args, *argv])


# -- fixture -------------------------------------------------------------------------


@dataclass
class Fixture:
    base: bench_serve.Fixture
    files: dict[int, Path]  # version number → its checked-out model file
    body: Path  # one row
    expected: list[int]  # version 1's predictions on it


def build(workdir: Path) -> Fixture:
    """serve.py's model and repository (version 1, bench@production), and versions 2
    and 3 of the same estimator on the same rows, each checked out."""
    base = bench_serve.build(workdir)
    x, y = make_classification(
        n_samples=2100,
        n_features=bench_serve.FEATURES,
        n_informative=10,
        random_state=bench_serve.SEED,
    )
    files = {1: base.model_file}
    repo = modelkeep.Repo.open(base.repo)
    try:
        for number, c in MORE_VERSIONS.items():
            model = LogisticRegression(C=c, max_iter=1000).fit(x[:2000], y[:2000])
            version = repo.commit(MODEL, model, f"C={c}", input_example=x[:5])
            assert version.number == number, version.rev
            dest = workdir / f"checkout-{number}"
            repo.checkout(version, dest)
            files[number] = dest / version.artifact["main"]
    finally:
        repo.close()
    return Fixture(base, files, base.bodies[1], base.expected[1])


# -- servers -------------------------------------------------------------------------


@dataclass
class Target:
    key: str
    url: str
    pids: Callable[[], list[int]]  # the processes that serve it, looked up when loaded
    app: str | None = None  # its Ray Serve application
    deploy_seconds: float = 0.0


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                out.setdefault(ppid, []).append(int(entry.name))
    return out


def ray_pids(app: str, proxy: bool = True) -> list[int]:
    """Ray's HTTP proxy (unless not ``proxy``) and the replicas of ``app``: processes
    this one started (Ray names its workers ``ray::ProxyActor``,
    ``ray::ServeReplica:APP:DEPLOYMENT``)."""
    children, found, todo = _children(), [], [os.getpid()]
    prefixes = (f"ray::ServeReplica:{app}:".encode(),) + ((b"ray::ProxyActor",) if proxy else ())
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            todo.append(child)
            with contextlib.suppress(OSError):
                if Path(f"/proc/{child}/cmdline").read_bytes().startswith(prefixes):
                    found.append(child)
    return sorted(found)


@contextlib.contextmanager
def within(seconds: float, what: str) -> Iterator[None]:
    """Raise TimeoutError in the main thread when ``what`` takes over ``seconds``."""

    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError(f"{what} took over {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def deploy_modelkeep(fixture: Fixture, key: str, replicas: int, port: int) -> Target:
    app = key
    start = time.perf_counter()
    with within(DEPLOY_TIMEOUT, f"deploying {app}"):
        _, url = on_ray.deploy(
            fixture.base.repo,
            REV,
            name=app,
            route=f"/{app}",
            replicas=replicas,
            replica_cpus=REPLICA_CPUS,
            host=HOST,
            port=port,
            interval=POLL_INTERVAL,
        )
    return Target(key, f"{url}/predict", lambda: ray_pids(app), app, time.perf_counter() - start)


def bare_app(fixture: Fixture, replicas: int, version: int | None = None) -> Any:
    """The bare application; with ``version``, a user_config naming that version's file
    (the constructor's arguments stay version 1's: only the user_config changes)."""
    options: dict[str, Any] = {"num_replicas": replicas}
    if version is not None:
        options["user_config"] = {
            "path": str(fixture.files[version]),
            "version": f"{MODEL}:{version}",
        }
    return Bare.options(**options).bind(  # type: ignore[attr-defined]
        str(fixture.files[1]), f"{MODEL}:1"
    )


def deploy_bare(fixture: Fixture, key: str, replicas: int, port: int) -> Target:
    app = key
    start = time.perf_counter()
    with within(DEPLOY_TIMEOUT, f"deploying {app}"):
        serve.run(bare_app(fixture, replicas), name=app, route_prefix=f"/{app}")
    url = f"http://{HOST}:{port}/{app}/predict"
    return Target(key, url, lambda: ray_pids(app), app, time.perf_counter() - start)


@contextlib.contextmanager
def local_server(fixture: Fixture, workdir: Path) -> Iterator[Target]:
    """`modelkeep serve bench@production` under uvicorn, as serve.py starts it."""
    port = bench_serve.free_port()
    log_path = workdir / "modelkeep-serve.log"
    argv = [
        *bench_serve.modelkeep_command(),
        "--repo",
        str(fixture.base.repo),
        "serve",
        REV,
        "--host",
        HOST,
        "--port",
        str(port),
    ]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(argv, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = bench_serve.Server(LOCAL, port, proc, log_path)
    try:
        deadline = time.perf_counter() + READY_TIMEOUT
        with httpx.Client(timeout=2.0) as client:
            while not server.is_ready(client):
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"modelkeep serve not ready after {READY_TIMEOUT:.0f} s")
                time.sleep(0.1)
        yield Target(LOCAL, server.url, lambda: [proc.pid], None, server.start_seconds)
    finally:
        server.stop()


def delete(target: Target) -> None:
    if target.app is not None:
        with within(DEPLOY_TIMEOUT, f"deleting {target.app}"):
            serve.delete(target.app)


def mem_available() -> float:
    """GiB the kernel says could be had without swapping."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / (1 << 20)
    return float("nan")


# -- part 1: throughput ---------------------------------------------------------------


def load_once(
    target: Target, body: Path, concurrency: int, seconds: float
) -> tuple[dict[str, Any], list[int]]:
    pids = target.pids()
    extra = ["--server-pids", ",".join(map(str, pids))] if pids else []
    return bench_serve.run_load(target.url, body, concurrency, seconds, extra)


def measure(
    targets: Sequence[Target],
    fixture: Fixture,
    concurrency: int,
    seconds: float,
    rounds: int,
) -> tuple[list[bench_serve.Segment], dict[str, bench_serve.Figures]]:
    """--seconds per target in ``rounds`` segments; round r starts with target r (mod n)."""
    for t in targets:
        log(f"warming {t.key} ({WARM_SECONDS:g} s, untimed)")
        load_once(t, fixture.body, concurrency, WARM_SECONDS)
    per_round = seconds / rounds
    segments: list[bench_serve.Segment] = []
    latencies: dict[str, list[int]] = {t.key: [] for t in targets}
    for r in range(rounds):
        k = r % len(targets)
        for t in [*targets[k:], *targets[:k]]:
            out, lat = load_once(t, fixture.body, concurrency, per_round)
            seg = bench_serve.Segment.of(t.key, 1, r + 1, out, lat, fixture.expected)
            segments.append(seg)
            latencies[t.key].extend(lat)
            log(
                f"  round {r + 1}/{rounds}, {t.key:<10} {seg.requests / seg.elapsed:>7,.0f} "
                f"req/s  p99 {seg.p99_ms:.1f} ms" + (f"  errors {seg.errors}" if seg.errors else "")
            )
    figures = {
        key: bench_serve.combine([s for s in segments if s.server == key], lat)
        for key, lat in latencies.items()
    }
    return segments, figures


# -- part 2: changing model under load -------------------------------------------------


class BackgroundLoad:
    """benchmarks/_load.py --timeline in its own process, until ``finish``."""

    def __init__(
        self, url: str, body: Path, concurrency: int, max_seconds: float, workdir: Path
    ) -> None:
        self.ready_file = workdir / "load-ready"
        self.ready_file.unlink(missing_ok=True)
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
            str(max_seconds),
            "--timeline",
            "--timeout",
            str(REQUEST_TIMEOUT),
            "--ready-file",
            str(self.ready_file),
        ]
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        self.max_seconds = max_seconds
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=HERE
        )

    def wait_ready(self) -> float:
        """The perf_counter time the timed load started at."""
        deadline = time.perf_counter() + READY_TIMEOUT
        while not self.ready_file.exists() or not self.ready_file.read_text().strip():
            if self.proc.poll() is not None or time.perf_counter() > deadline:
                self.kill()
                _, err = self.proc.communicate()
                raise RuntimeError(f"load generator did not start:\n{err.decode()}")
            time.sleep(0.05)
        return float(self.ready_file.read_text())

    def finish(self) -> dict[str, Any]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=REQUEST_TIMEOUT + 60)
        if self.proc.returncode != 0:
            raise RuntimeError(f"load generator failed:\n{err.decode(errors='replace')}")
        result: dict[str, Any] = json.loads(out)
        return result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()


def move_sequence(moves: int) -> list[int]:
    """Targets of the moves from version 1: the first half back and forth between 1
    and 2, the rest round 1, 2, 3 (never the current or the previous version)."""
    out, current = [], 1
    for i in range(moves):
        current = (3 - current) if i < moves // 2 else current % 3 + 1
        out.append(current)
    return out


@dataclass
class Move:
    number: int
    source: int
    target: int
    t0: float
    control_seconds: float | None  # replicas all report it / serve.run returned
    target_was: str = ""  # modelkeep: "kept" (already loaded) or "loaded"
    answers_seconds: float | None = None  # from t0 until no answer but the target's
    failed: int = 0
    failure_kinds: dict[str, int] = field(default_factory=dict)
    min_rate_pct: float | None = None  # lowest 250 ms bin while moving, % of steady
    mean_rate_pct: float | None = None
    max_latency_ms: float | None = None  # of the answers that ended while moving
    restarted: bool | None = None  # the application's replica processes changed

    @property
    def done_seconds(self) -> float | None:
        if self.control_seconds is None or self.answers_seconds is None:
            return None
        return max(self.control_seconds, self.answers_seconds)


def serving(repo: modelkeep.Repo, server: str) -> list[Any]:
    return [r for r in repo.replicas(MODEL) if r.server == server and r.state == "serving"]


def modelkeep_moves(
    target: Target, fixture: Fixture, concurrency: int, moves: int, hold: float, workdir: Path
) -> dict[str, Any]:
    """Move bench@production every ``hold`` seconds under load; per move, the time
    until every replica of ``target`` reports the new version."""
    sequence = move_sequence(moves)
    app = target.app
    assert app is not None
    server = f"ray:{app}"
    repo = modelkeep.Repo.open(fixture.base.repo)
    try:
        ids = {r.replica for r in serving(repo, server)}
        if len(ids) != 2 or any(r.version != 1 for r in serving(repo, server)):
            raise RuntimeError(f"expected 2 replicas serving {MODEL}:1 in {server}")
        load = BackgroundLoad(
            target.url, fixture.body, concurrency, LEAD_SECONDS + moves * hold + 30, workdir
        )
        try:
            started = load.wait_ready()
            first = started + LEAD_SECONDS
            done: list[Move] = []
            source = 1
            for i, number in enumerate(sequence):
                slot = first + i * hold
                time.sleep(max(0.0, slot - time.perf_counter()))
                before = [r for r in serving(repo, server) if r.replica in ids]
                kept = all(number in r.versions for r in before)
                pids = ray_pids(app, proxy=False)
                t0 = time.perf_counter()
                repo.set_alias(REV, f"{MODEL}:{number}", "benchmarks/ray_serve.py")
                control = None
                while time.perf_counter() < slot + hold - REPLICA_POLL:
                    now = [r for r in serving(repo, server) if r.replica in ids]
                    if len(now) == len(ids) and all(r.version == number for r in now):
                        control = time.perf_counter() - t0
                        break
                    time.sleep(REPLICA_POLL)
                move = Move(i + 1, source, number, t0, control, "kept" if kept else "loaded")
                move.restarted = ray_pids(app, proxy=False) != pids
                done.append(move)
                log(
                    f"  move {i + 1}/{moves}: {MODEL}:{source} → {number} "
                    f"({'kept' if kept else 'loaded'}), replicas after "
                    + ("n/a" if control is None else f"{control:.2f} s")
                )
                source = number
            time.sleep(max(0.0, first + moves * hold - time.perf_counter()))
            result = load.finish()
        finally:
            load.kill()
    finally:
        repo.close()
    return analyse(result, done, started, first)


def bare_moves(
    target: Target, fixture: Fixture, concurrency: int, moves: int, hold: float, workdir: Path
) -> dict[str, Any]:
    """The same moves as user_config updates of the bare deployment (2 replicas)."""
    sequence = move_sequence(moves)
    app = target.app
    assert app is not None
    # serve.run waits until every replica runs the new config (Ray 2.60's serve.run
    # gives each call a new code version: replicas are replaced one by one, not
    # reconfigured in place): each move takes what it takes, then the load holds on
    # the new version for ``hold`` seconds at least.
    load = BackgroundLoad(
        target.url,
        fixture.body,
        concurrency,
        LEAD_SECONDS + moves * (DEPLOY_TIMEOUT + hold),
        workdir,
    )
    try:
        started = load.wait_ready()
        first = started + LEAD_SECONDS
        time.sleep(max(0.0, first - time.perf_counter()))
        done: list[Move] = []
        source = 1
        for i, number in enumerate(sequence):
            pids = ray_pids(app, proxy=False)
            t0 = time.perf_counter()
            with within(DEPLOY_TIMEOUT, f"user_config update of {app}"):
                serve.run(bare_app(fixture, 2, number), name=app, route_prefix=f"/{app}")
            control = time.perf_counter() - t0
            done.append(Move(i + 1, source, number, t0, control))
            done[-1].restarted = ray_pids(app, proxy=False) != pids
            log(f"  update {i + 1}/{moves}: → {MODEL}:{number}, serve.run took {control:.2f} s")
            source = number
            time.sleep(max(0.0, t0 + hold - time.perf_counter()))
        result = load.finish()
    finally:
        load.kill()
    return analyse(result, done, started, first)


def analyse(
    result: dict[str, Any], moves: list[Move], started: float, first: float
) -> dict[str, Any]:
    """Per move, from the load's timeline: when answers switched, failures, the dip."""
    timeline = result["timeline"]
    ok_ends = np.sort(np.asarray([e[1] for e in timeline if e[2] == 200], dtype=np.float64))
    end_of_load = max((e[1] for e in timeline), default=first)

    def rate(a: float, b: float) -> float:
        n = np.searchsorted(ok_ends, b) - np.searchsorted(ok_ends, a)
        return float(n) / (b - a) if b > a else 0.0

    steady = rate(started, first)
    for i, m in enumerate(moves):
        until = moves[i + 1].t0 if i + 1 < len(moves) else end_of_load
        window = [e for e in timeline if m.t0 <= e[1] < until]
        answers = [e for e in window if e[2] == 200]
        new = [e[1] for e in answers if e[3] == f"{MODEL}:{m.target}"]
        other = [e[1] for e in answers if e[3] != f"{MODEL}:{m.target}"]
        if new and (not other or max(other) < max(new)):
            m.answers_seconds = max(other) - m.t0 if other else 0.0
        failed = [e for e in window if e[2] != 200]
        m.failed = len(failed)
        kinds: dict[str, int] = {}
        for e in failed:
            kind = e[3] if e[2] == 0 else f"HTTP {e[2]}"
            kinds[kind] = kinds.get(kind, 0) + 1
        m.failure_kinds = kinds
        span = m.done_seconds if m.done_seconds is not None else until - m.t0
        bins = max(1, int(np.ceil(span / BIN_SECONDS)))
        if steady:
            lows = [rate(m.t0 + b * BIN_SECONDS, m.t0 + (b + 1) * BIN_SECONDS) for b in range(bins)]
            m.min_rate_pct = 100 * min(lows) / steady
            m.mean_rate_pct = 100 * rate(m.t0, m.t0 + bins * BIN_SECONDS) / steady
        took = [e[1] - e[0] for e in answers if e[1] <= m.t0 + bins * BIN_SECONDS]
        m.max_latency_ms = 1000 * max(took) if took else None
    # The same figures before the first move, for scale: what noise alone does.
    lead_bins = int((first - started) / BIN_SECONDS)
    lead_lows = [
        rate(started + b * BIN_SECONDS, started + (b + 1) * BIN_SECONDS) for b in range(lead_bins)
    ]
    lead_took = [e[1] - e[0] for e in timeline if e[1] < first and e[2] == 200]
    lead_failed = sum(1 for e in timeline if e[1] < first and e[2] != 200)
    return {
        "steady_rps": steady,
        "steady_min_rate_pct": 100 * min(lead_lows) / steady if lead_lows and steady else None,
        "steady_max_latency_ms": 1000 * max(lead_took) if lead_took else None,
        "requests": len(timeline),
        "failed_total": sum(1 for e in timeline if e[2] != 200),
        "failed_before_first_move": lead_failed,
        "moves": [{**asdict(m), "done_seconds": m.done_seconds} for m in moves],
    }


# -- run ------------------------------------------------------------------------------


def run(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    load_start = os.getloadavg()
    memory = [mem_available()]
    log(f"building the model and the repository in {workdir}")
    fixture = build(workdir)
    port = bench_serve.free_port()
    log("starting Ray")
    start = time.perf_counter()
    started = on_ray.connect(None, temp_dir=str(workdir / "ray"))
    figures: dict[str, bench_serve.Figures] = {}
    segments: list[bench_serve.Segment] = []
    deploy_seconds: dict[str, float] = {}
    alive: list[Target] = []
    try:
        serve.start(http_options={"host": HOST, "port": port})
        ray_seconds = time.perf_counter() - start
        log(f"Ray and Serve up after {ray_seconds:.1f} s")

        def up(target: Target) -> Target:
            alive.append(target)
            deploy_seconds[target.key] = target.deploy_seconds
            memory.append(mem_available())
            log(f"{target.key} ready after {target.deploy_seconds:.1f} s")
            return target

        def down(*targets: Target) -> None:
            for t in targets:
                delete(t)
                alive.remove(t)

        log("group 1: one replica each, and the local server")
        mk1 = up(deploy_modelkeep(fixture, MK1, 1, port))
        bare1 = up(deploy_bare(fixture, BARE1, 1, port))
        with local_server(fixture, workdir) as local:
            deploy_seconds[LOCAL] = local.deploy_seconds
            segs, figs = measure(
                [mk1, bare1, local], fixture, args.concurrency, args.seconds, args.rounds
            )
        segments += segs
        figures.update(figs)
        down(mk1, bare1)

        log("group 2: two replicas each")
        mk2 = up(deploy_modelkeep(fixture, MK2, 2, port))
        bare2 = up(deploy_bare(fixture, BARE2, 2, port))
        segs, figs = measure([mk2, bare2], fixture, args.concurrency, args.seconds, args.rounds)
        segments += segs
        figures.update(figs)

        log(f"alias moves under load: {args.moves} every {args.hold:g} s, modelkeep on Ray")
        mk_moves = modelkeep_moves(mk2, fixture, args.concurrency, args.moves, args.hold, workdir)
        memory.append(mem_available())
        down(mk2)
        log(f"user_config updates under load: {args.bare_moves}, bare Ray Serve")
        bare_updates = bare_moves(
            bare2, fixture, args.concurrency, args.bare_moves, args.hold, workdir
        )
        memory.append(mem_available())
        down(bare2)
    finally:
        for t in alive:
            with contextlib.suppress(Exception):
                delete(t)
        with contextlib.suppress(Exception):
            serve.shutdown()  # type: ignore[no-untyped-call]
        on_ray.disconnect(started)
        if not started:
            ray.shutdown()
    load_end = os.getloadavg()
    checks = make_checks(figures, mk_moves)
    return {
        "config": {
            "seconds_per_server": args.seconds,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "moves": args.moves,
            "bare_moves": args.bare_moves,
            "hold_seconds": args.hold,
            "poll_interval": POLL_INTERVAL,
            "replica_cpus": REPLICA_CPUS,
            "load_generator": "benchmarks/_load.py, minimal asyncio HTTP/1.1 client, own process",
            "model": f"LogisticRegression, {bench_serve.FEATURES} features, fitted on "
            f"{fixture.base.train_rows:,} rows (NumPy); versions 2 and 3: C = "
            + ", ".join(f"{c:g}" for c in MORE_VERSIONS.values()),
            "workdir": str(workdir),
            "port": port,
            "cpus": os.cpu_count(),
            "load_average_start": list(load_start),
            "load_average_end": list(load_end),
            "mem_available_gib_min": min(memory),
            "mem_available_gib_start": memory[0],
            "python": sys.version.split()[0],
            "modelkeep": modelkeep.__version__,
            "ray": ray.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "start_seconds": {"ray_and_serve": ray_seconds, **deploy_seconds},
        "segments": [asdict(s) for s in segments],
        "figures": [asdict(f) for f in figures.values()],
        "alias_moves": mk_moves,
        "user_config_updates": bare_updates,
        "checks": [{**asdict(c), "status": c.status} for c in checks],
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def make_checks(
    figures: dict[str, bench_serve.Figures], moves: dict[str, Any]
) -> list[bench_serve.Check]:
    checks = []
    for mk, bare, n in ((MK1, BARE1, 1), (MK2, BARE2, 2)):
        a, b = figures[mk], figures[bare]
        checks.append(
            bench_serve.Check(
                f"req/s, modelkeep on Ray / bare, {n} repl.",
                _ratio(a.rps, b.rps),
                MIN_THROUGHPUT_RATIO,
                True,
                f"{a.rps:,.0f} vs {b.rps:,.0f} req/s",
            )
        )
    done = [m["done_seconds"] for m in moves["moves"]]
    slowest = float("inf") if None in done else max(done, default=0.0)
    checks.append(
        bench_serve.Check(
            "alias move: slowest, to all replicas+answers",
            slowest,
            MAX_MOVE_SECONDS,
            False,
            f"{len(done)} moves, median "
            + ("n/a" if None in done else f"{float(np.median(done)):.2f} s"),
        )
    )
    failed = sum(m["failed"] for m in moves["moves"])
    checks.append(
        bench_serve.Check(
            "alias move: failed requests while moving",
            float(failed),
            float(MAX_MOVE_FAILURES),
            False,
            f"of {moves['requests']:,} requests, {moves['failed_total']} failed in all",
        )
    )
    return checks


# -- output ---------------------------------------------------------------------------


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def _move_rows(moves: list[dict[str, Any]], control: str) -> list[str]:
    lines = [
        f"  {'move':>4}  {'to':<8} {'target':<7} {control:>11} {'answers s':>9} "
        f"{'failed':>6} {'rate min/mean %':>15} {'max ms':>7} {'restarted':>9}"
    ]
    for m in moves:
        kinds = ", ".join(f"{k} {v}" for k, v in m["failure_kinds"].items())
        rate = f"{_num(m['min_rate_pct'], '.0f')} / {_num(m['mean_rate_pct'], '.0f')}"
        lines.append(
            f"  {m['number']:>4}  {MODEL}:{m['target']:<2} {m['target_was'] or '-':<7} "
            f"{_num(m['control_seconds'], '.2f'):>11} {_num(m['answers_seconds'], '.2f'):>9} "
            f"{m['failed']:>6} {rate:>15} {_num(m['max_latency_ms'], '.0f'):>7} "
            f"{ {True: 'yes', False: 'no', None: 'n/a'}[m['restarted']]:>9}"
            + (f"  ({kinds})" if kinds else "")
        )
    return lines


def _summary(moves: dict[str, Any], control: str) -> str:
    ms = moves["moves"]
    done = [m["done_seconds"] for m in ms if m["done_seconds"] is not None]
    lows = [m["min_rate_pct"] for m in ms if m["min_rate_pct"] is not None]
    ctl = [m["control_seconds"] for m in ms if m["control_seconds"] is not None]
    return (
        f"  {len(ms)} moves: {control} median {_num(np.median(ctl) if ctl else None, '.2f')} s, "
        f"done (all replicas and answers) median {_num(np.median(done) if done else None, '.2f')}"
        f" s, slowest {_num(max(done) if done else None, '.2f')} s"
        f"{'' if len(done) == len(ms) else f' ({len(ms) - len(done)} never finished)'}; "
        f"failed {sum(m['failed'] for m in ms)} while moving ({moves['failed_total']} in all of "
        f"{moves['requests']:,}); lowest 250 ms rate {_num(min(lows) if lows else None, '.0f')} %"
        f" of the steady {moves['steady_rps']:,.0f} req/s (before the first move, for scale: "
        f"lowest bin {_num(moves['steady_min_rate_pct'], '.0f')} %, slowest answer "
        f"{_num(moves['steady_max_latency_ms'], '.0f')} ms)"
    )


def render(result: dict[str, Any]) -> str:
    cfg = result["config"]
    la, le = cfg["load_average_start"], cfg["load_average_end"]
    st = result["start_seconds"]
    lines = [
        f"modelkeep {cfg['modelkeep']} on Ray Serve benchmark: Ray {cfg['ray']}, {cfg['cpus']} "
        f"CPUs (load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} at start, {le[0]:.2f} at end), "
        f"Python {cfg['python']}, scikit-learn {cfg['scikit-learn']}; memory available "
        f"{cfg['mem_available_gib_start']:.1f} GiB at start, {cfg['mem_available_gib_min']:.1f}"
        " at the lowest",
        f"Model: {cfg['model']}",
        f'1. Single-row POST /predict ({{"inputs": [row]}}), concurrency {cfg["concurrency"]}; '
        f"load: {cfg['load_generator']}",
        f"{cfg['seconds_per_server']:g} s per server in {cfg['rounds']} rounds of rotating order;"
        f" Ray replicas ask {cfg['replica_cpus']:g} CPU each; the load generator, Ray and the "
        f"servers share the machine's {cfg['cpus']} cores",
        f"(ready after: Ray + Serve {st['ray_and_serve']:.1f} s; "
        + ", ".join(f"{k} {v:.1f} s" for k, v in st.items() if k != "ray_and_serve")
        + "; CPU columns are cores busy: srv = Ray's proxy + the application's replicas, or"
        " the local server; client = the load generator; other = the rest)",
        "",
        f"  {'server':<17} {'repl.':>6} {'req/s':>7} {'by round':>13} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'errors':>6}  {'srv':>4} {'srv µs/req':>10} {'client':>6} "
        f"{'other':>5}  answers",
    ]
    for f in result["figures"]:
        label, replicas = LABELS[f["server"]]
        spread = f"{min(f['rps_by_round']):,.0f}-{max(f['rps_by_round']):,.0f}"
        ok = {True: "ok", False: "WRONG", None: "n/a"}[f["predictions_ok"]]
        lines.append(
            f"  {label:<17} {replicas:>6} {f['rps']:>7,.0f} {spread:>13} {f['p50_ms']:>7.1f} "
            f"{f['p99_ms']:>7.1f} {f['errors']:>6}  {_num(f['server_cores'], '.2f'):>4} "
            f"{_num(f['server_us_per_request'], ',.0f'):>10} "
            f"{_num(f['client_cores'], '.2f'):>6} {_num(f['other_cores'], '.2f'):>5}  {ok}"
        )
    by_key = {f["server"]: f for f in result["figures"]}
    for mk, bare, n in ((MK1, BARE1, 1), (MK2, BARE2, 2)):
        a, b = by_key[mk], by_key[bare]
        lines.append(
            f"  {n} replica(s): modelkeep on Ray / bare: req/s {_ratio(a['rps'], b['rps']):.2f}, "
            f"p50 {_ratio(a['p50_ms'], b['p50_ms']):.2f}, "
            f"p99 {_ratio(a['p99_ms'], b['p99_ms']):.2f}, srv µs/req "
            + _num(
                None
                if a["server_us_per_request"] is None or b["server_us_per_request"] is None
                else _ratio(a["server_us_per_request"], b["server_us_per_request"]),
                ".2f",
            )
        )
    a, b = by_key[MK1], by_key[LOCAL]
    lines.append(
        f"  modelkeep on Ray, 1 replica / local modelkeep serve: req/s "
        f"{_ratio(a['rps'], b['rps']):.2f}, p99 {_ratio(a['p99_ms'], b['p99_ms']):.2f}"
    )
    mk, bare = result["alias_moves"], result["user_config_updates"]
    lines += [
        "",
        f"2. Changing model under load (2 replicas, concurrency {cfg['concurrency']}, a move "
        f"every {cfg['hold_seconds']:g} s at least; rate = requests answered 200 in 250 ms "
        "bins while moving, % of the steady rate before the first move; max ms = slowest answer"
        " meanwhile; requests time out after "
        f"{REQUEST_TIMEOUT:g} s)",
        f"modelkeep on Ray, repo.set_alias(bench@production): replicas s = until every "
        f"replica reports it (repo.replicas; they poll every {cfg['poll_interval']:g} s); "
        "answers s = until every answer carries it (X-Model-Version); target kept = the "
        "previous version, still loaded; loaded = loaded and warmed for this move",
    ]
    lines += _move_rows(mk["moves"], "replicas s")
    lines += [_summary(mk, "replicas"), ""]
    lines.append(
        "bare Ray Serve, serve.run(.options(user_config={path, version})): reconfigure loads "
        "the file; serve.run s = until serve.run returned"
    )
    lines += _move_rows(bare["moves"], "serve.run s")
    lines += [_summary(bare, "serve.run"), "", "Summary"]
    for c in result["checks"]:
        op = ">=" if c["higher_is_better"] else "<="
        lines.append(
            f"  {c['status']:<4}  {c['name']:<43} {c['value']:>6.2f}  target {op} "
            f"{c['limit']:g}   {c['detail']}"
        )
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="per server (default 12)")
    parser.add_argument("--rounds", type=int, default=8, help="segments per server (default 8)")
    parser.add_argument(
        "--concurrency", type=int, default=8, help="connections and tasks (default 8)"
    )
    parser.add_argument("--moves", type=int, default=10, help="alias moves under load (default 10)")
    parser.add_argument(
        "--bare-moves", type=int, default=3, help="user_config updates under load (default 3)"
    )
    parser.add_argument(
        "--hold", type=float, default=3.0, help="seconds from one move to the next (default 3)"
    )
    parser.add_argument("--workdir", type=Path, help="folder to work in (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="leave the files behind")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.concurrency < 1 or args.rounds < 1 or args.hold < 1:
        parser.error(
            "--seconds must be positive, --hold at least 1, --concurrency and --rounds at least 1"
        )
    if not 1 <= args.moves <= 50 or not 1 <= args.bare_moves <= 50:
        parser.error("--moves and --bare-moves: 1 to 50")
    args.rounds = max(1, min(args.rounds, int(args.seconds / MIN_SEGMENT_SECONDS)))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not only_loopback():
        reexec_in_netns(sys.argv[1:] if argv is None else list(argv))
    with workspace(args.workdir, args.keep, _CREATED) as workdir:
        if len(str(workdir / "ray")) > MAX_RAY_DIR:
            print(
                f"{workdir / 'ray'} is too long a path for Ray's unix sockets: pick a --workdir "
                f"of at most {MAX_RAY_DIR - 4} characters",
                file=sys.stderr,
            )
            return 2
        result = run(workdir, args)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
