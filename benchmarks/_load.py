"""Load generator for benchmarks/serve.py, run in its own process.

    python benchmarks/_load.py --url URL --body FILE [--concurrency 32] [--seconds 10]
                               [--client raw|httpx] [--server-pid PID] [--server-pids P,Q]
                               [--timeline [--timeout S] [--ready-file FILE]]

``--concurrency`` asyncio tasks each POST the body (application/json) in a loop until
``--seconds`` have passed, over as many keep-alive connections:

- ``raw`` (default): each task owns one connection (asyncio streams) and writes a
  prebuilt HTTP/1.1 request, then reads the status line, the headers and
  Content-Length bytes of body. Little work per request, so the client takes as little
  as it can of the cores it shares with the server.
- ``httpx``: the tasks share one httpx.AsyncClient whose pool holds as many
  connections. Simpler, but its pool costs the client far more CPU per request as the
  concurrency grows (on 2 cores at concurrency 32 it saturates a core at a few hundred
  requests/s, so it measures itself rather than the server).

Before the clock starts every task sends one untimed request, so the connections are
open. Prints one JSON object: requests answered 200, other
answers and transport errors, the timed wall time, every latency (µs, from send to
the whole body read), this process's CPU time, the whole machine's busy CPU time and,
with ``--server-pid`` (or ``--server-pids``: a server of several processes, added up),
the server's CPU time, all over the timed window (Linux /proc).

``--timeline`` (raw connections only) also lists every request as ``[start, end,
status, version]``: perf_counter times (CLOCK_MONOTONIC, comparable between processes
of one machine), the HTTP status (0 for a transport error or a timeout, whose kind is
then the fourth field) and the answer's X-Model-Version header. Each request may take
``--timeout`` seconds (the connection is then dropped and opened again); ``--ready-file``
is written when the timed load starts, and SIGTERM ends the load early (the report is
printed as usual). For benchmarks/ray_serve.py, which moves an alias under this load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sys
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    import httpx

HEADERS = {"content-type": "application/json"}
TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int | None) -> float | None:
    """User + system CPU seconds of ``pid`` so far (None if unknown)."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS


def processes_cpu(pids: Sequence[int]) -> float | None:
    """User + system CPU seconds of all ``pids`` so far (None if none is given or any
    is unknown)."""
    if not pids:
        return None
    total = 0.0
    for pid in pids:
        cpu = process_cpu(pid)
        if cpu is None:
            return None
        total += cpu
    return total


def machine_busy() -> float | None:
    """CPU seconds all processes on the machine have used so far (Linux /proc/stat)."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal ...: all but idle and iowait
    ticks = [int(v) for v in first[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / TICKS


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    bad: Counter[str] = field(default_factory=Counter)
    first_body: str | None = None


async def httpx_worker(
    client: httpx.AsyncClient, url: str, body: bytes, deadline: float, tally: Tally
) -> None:
    import httpx

    clock = time.perf_counter
    while (start := clock()) < deadline:
        try:
            response = await client.post(url, content=body, headers=HEADERS)
        except httpx.HTTPError as exc:
            tally.bad[type(exc).__name__] += 1
            continue
        took = clock() - start
        if response.status_code == 200:
            tally.latencies.append(took)
        else:
            tally.bad[f"HTTP {response.status_code}"] += 1


class BadResponse(Exception):
    pass


class RawConnection:
    """One keep-alive HTTP/1.1 connection that POSTs the same prebuilt request."""

    def __init__(self, url: str, body: bytes) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.request = (
            f"POST {parts.path or '/'} HTTP/1.1\r\n"
            f"Host: {parts.netloc}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "\r\n"
        ).encode() + body
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.version: str | None = None  # the last answer's X-Model-Version header

    async def post(self) -> tuple[int, bytes]:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.reader, self.writer
        try:
            writer.write(self.request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            length, close = None, False
            self.version = None
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
                elif name == b"x-model-version":
                    self.version = value.strip().decode("latin-1")
            if length is None:
                raise BadResponse("no Content-Length")
            payload = await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            self.close()
            raise
        if close:
            self.close()
        return status, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def raw_worker(conn: RawConnection, deadline: float, tally: Tally) -> None:
    clock = time.perf_counter
    while (start := clock()) < deadline:
        try:
            status, _ = await conn.post()
        except (OSError, asyncio.IncompleteReadError, BadResponse, ValueError) as exc:
            tally.bad[type(exc).__name__] += 1
            continue
        took = clock() - start
        if status == 200:
            tally.latencies.append(took)
        else:
            tally.bad[f"HTTP {status}"] += 1


async def timeline_worker(
    conn: RawConnection,
    deadline: float,
    stop: asyncio.Event,
    timeout: float | None,
    tally: Tally,
    timeline: list[tuple[float, float, int, str | None]],
) -> None:
    """``raw_worker``, keeping every request (see ``--timeline``)."""
    clock = time.perf_counter
    while (start := clock()) < deadline and not stop.is_set():
        try:
            status, _ = await asyncio.wait_for(conn.post(), timeout)
        except TimeoutError:
            conn.close()
            tally.bad["Timeout"] += 1
            timeline.append((start, clock(), 0, "Timeout"))
            continue
        except (OSError, asyncio.IncompleteReadError, BadResponse, ValueError) as exc:
            tally.bad[type(exc).__name__] += 1
            timeline.append((start, clock(), 0, type(exc).__name__))
            continue
        end = clock()
        timeline.append((start, end, status, conn.version))
        if status == 200:
            tally.latencies.append(end - start)
        else:
            tally.bad[f"HTTP {status}"] += 1


async def run_raw(
    url: str,
    body: bytes,
    concurrency: int,
    seconds: float,
    server_pids: Sequence[int],
    *,
    timeline: list[tuple[float, float, int, str | None]] | None = None,
    timeout: float | None = None,
    ready_file: Path | None = None,
) -> dict[str, Any]:
    conns = [RawConnection(url, body) for _ in range(concurrency)]
    try:
        warm = await asyncio.gather(*(c.post() for c in conns))
        bad = [status for status, _ in warm if status != 200]
        if bad:
            raise SystemExit(f"{url} answered {bad[0]} to the warm-up request: {warm[0][1]!r}")
        tally = Tally(first_body=warm[0][1].decode())
        busy_before, server_before = machine_busy(), processes_cpu(server_pids)
        cpu_before = own_cpu()
        start = time.perf_counter()
        if timeline is None:
            await asyncio.gather(*(raw_worker(c, start + seconds, tally) for c in conns))
        else:
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            if ready_file is not None:
                ready_file.write_text(f"{start}\n")
            await asyncio.gather(
                *(
                    timeline_worker(c, start + seconds, stop, timeout, tally, timeline)
                    for c in conns
                )
            )
        elapsed = time.perf_counter() - start
        cpu = own_cpu() - cpu_before
        server_after, busy_after = processes_cpu(server_pids), machine_busy()
    finally:
        for c in conns:
            c.close()
    return report(tally, elapsed, cpu, (server_before, server_after), (busy_before, busy_after))


def report(
    tally: Tally,
    elapsed: float,
    cpu: float,
    server: tuple[float | None, float | None],
    busy: tuple[float | None, float | None],
) -> dict[str, Any]:
    def delta(pair: tuple[float | None, float | None]) -> float | None:
        return None if pair[0] is None or pair[1] is None else pair[1] - pair[0]

    return {
        "requests": len(tally.latencies),
        "errors": sum(tally.bad.values()),
        "error_kinds": dict(tally.bad),
        "elapsed": elapsed,
        "latencies_us": [round(s * 1e6) for s in tally.latencies],
        "client_cpu": cpu,
        "server_cpu": delta(server),
        "machine_cpu": delta(busy),
        "first_body": tally.first_body,
    }


async def run_httpx(
    url: str, body: bytes, concurrency: int, seconds: float, server_pids: Sequence[int]
) -> dict[str, Any]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        warm = await asyncio.gather(
            *(client.post(url, content=body, headers=HEADERS) for _ in range(concurrency))
        )
        bad = [r.status_code for r in warm if r.status_code != 200]
        if bad:
            raise SystemExit(f"{url} answered {bad[0]} to the warm-up request: {warm[0].text}")
        tally = Tally(first_body=warm[0].text)
        busy_before, server_before = machine_busy(), processes_cpu(server_pids)
        cpu_before = own_cpu()
        start = time.perf_counter()
        await asyncio.gather(
            *(httpx_worker(client, url, body, start + seconds, tally) for _ in range(concurrency))
        )
        elapsed = time.perf_counter() - start
        cpu = own_cpu() - cpu_before
        server_after, busy_after = processes_cpu(server_pids), machine_busy()
    return report(tally, elapsed, cpu, (server_before, server_after), (busy_before, busy_after))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", type=Path, required=True, help="file holding the JSON body")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw")
    parser.add_argument("--server-pid", type=int)
    parser.add_argument("--server-pids", help="comma-separated: a server of several processes")
    parser.add_argument("--timeline", action="store_true", help="list every request (raw)")
    parser.add_argument("--timeout", type=float, help="seconds a request may take (--timeline)")
    parser.add_argument("--ready-file", type=Path, help="written when the load starts (--timeline)")
    args = parser.parse_args(argv)
    if not args.url.startswith("http://127.0.0.1:"):
        parser.error("only http://127.0.0.1:PORT/... is loaded")
    if args.timeline and args.client != "raw":
        parser.error("--timeline needs --client raw")
    pids = [] if args.server_pid is None else [args.server_pid]
    if args.server_pids:
        pids += [int(p) for p in args.server_pids.split(",")]
    body = args.body.read_bytes()
    timeline: list[tuple[float, float, int, str | None]] | None = None
    if args.timeline:
        timeline = []
        coro = run_raw(
            args.url,
            body,
            args.concurrency,
            args.seconds,
            pids,
            timeline=timeline,
            timeout=args.timeout,
            ready_file=args.ready_file,
        )
    elif args.client == "raw":
        coro = run_raw(args.url, body, args.concurrency, args.seconds, pids)
    else:
        coro = run_httpx(args.url, body, args.concurrency, args.seconds, pids)
    result = asyncio.run(coro)
    if timeline is not None:
        result["timeline"] = timeline
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
