"""S3 client benchmark: obstore, boto3 and s3fs against one S3 server, same workload.

    python benchmarks/s3_clients.py [--rounds 3] [--big-mib 64] [--json]

Starts the moto S3 server the tests use (``tests/services.py``) on 127.0.0.1 and
measures, for each library, what the object store does to a bucket:

- 200 puts (conditional: ``If-None-Match: *``) of 64 KiB objects, then 200 gets,
  each from a pool of 8 threads (ObjectWriter writes and ``_ahead`` reads that way)
- one --big-mib put as a multipart upload of 8 MiB parts sent in parallel, and its get
- 200 HEAD requests (``exists``), from the same pool
- a listing of 1,000 keys (paginated)

Each figure is the best of --rounds; the libraries take turns within a round, so a
server that slows as it fills slows them alike. moto is a Python server holding
objects in memory: it is slower than S3 or MinIO, so the wall-clock ratios show what
each client adds on top of one server, not absolute S3 throughput. A second table
gives the CPU time of the client process alone (all its threads, the libraries' native
ones included): what a client costs the machine that runs modelkeep.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from _bench import log

if TYPE_CHECKING:
    from collections.abc import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import services  # needs the path above

KIB = 1 << 10
MIB = 1 << 20
SMALL = 64 * KIB
N_SMALL = 200
N_HEAD = 200
N_LIST = 1000
THREADS = 8
PART = 8 * MIB
T = TypeVar("T")
OPS = ("put 200 x 64 KiB", "get 200 x 64 KiB", "put big", "get big", "head 200", "list 1000")


class Client:
    """One library's way of doing each operation; keys are bucket-relative."""

    name = ""

    def put(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def get(self, key: str) -> bytes:
        raise NotImplementedError

    def put_big(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def get_big(self, key: str) -> bytes:
        return self.get(key)

    def head(self, key: str) -> bool:
        raise NotImplementedError

    def list(self, prefix: str) -> list[str]:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError


class Obstore(Client):
    name = "obstore"

    def __init__(self, server: services.S3Server, bucket: str) -> None:
        import obstore
        from obstore.store import S3Store

        self.obs = obstore
        env = server.env()
        self.store = S3Store(
            bucket,
            endpoint=server.endpoint,
            region=env["AWS_DEFAULT_REGION"],
            access_key_id=env["AWS_ACCESS_KEY_ID"],
            secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            client_options={"allow_http": True},
        )

    def put(self, key: str, data: bytes) -> None:
        self.obs.put(self.store, key, data, mode="create")

    def get(self, key: str) -> bytes:
        return self.obs.get(self.store, key).bytes().to_bytes()

    def put_big(self, key: str, data: bytes) -> None:
        # obstore sends a conditional put as one request: multipart means overwrite mode.
        self.obs.put(self.store, key, data, chunk_size=PART, max_concurrency=THREADS)

    def head(self, key: str) -> bool:
        self.obs.head(self.store, key)
        return True

    def list(self, prefix: str) -> list[str]:
        return [m["path"] for batch in self.obs.list(self.store, prefix, chunk_size=1000)
                for m in batch]  # fmt: skip

    def delete(self, key: str) -> None:
        self.obs.delete(self.store, key)


class Boto3(Client):
    name = "boto3"

    def __init__(self, server: services.S3Server, bucket: str) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        env = server.env()
        self.bucket = bucket
        self.client = boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            region_name=env["AWS_DEFAULT_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            # Enough pooled connections for the 8 threads plus the transfer manager's.
            config=Config(max_pool_connections=2 * THREADS),
        )
        self.transfer = TransferConfig(
            multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=THREADS
        )

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*")

    def get(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def put_big(self, key: str, data: bytes) -> None:
        self.client.upload_fileobj(io.BytesIO(data), self.bucket, key, Config=self.transfer)

    def get_big(self, key: str) -> bytes:
        out = io.BytesIO()
        self.client.download_fileobj(self.bucket, key, out, Config=self.transfer)
        return out.getvalue()

    def head(self, key: str) -> bool:
        self.client.head_object(Bucket=self.bucket, Key=key)
        return True

    def list(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)


class S3fs(Client):
    name = "s3fs"

    def __init__(self, server: services.S3Server, bucket: str) -> None:
        import s3fs

        env = server.env()
        self.bucket = bucket
        self.fs = s3fs.S3FileSystem(
            key=env["AWS_ACCESS_KEY_ID"],
            secret=env["AWS_SECRET_ACCESS_KEY"],
            endpoint_url=server.endpoint,
            client_kwargs={"region_name": env["AWS_DEFAULT_REGION"]},
            # A listing cache would answer HEADs without asking the server.
            use_listings_cache=False,
            skip_instance_cache=True,
            max_concurrency=THREADS,
        )

    def _path(self, key: str) -> str:
        return f"{self.bucket}/{key}"

    def put(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(self._path(key), data, mode="create")

    def get(self, key: str) -> bytes:
        data: bytes = self.fs.cat_file(self._path(key))
        return data

    def put_big(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(self._path(key), data, chunksize=PART)

    def head(self, key: str) -> bool:
        self.fs.info(self._path(key))
        return True

    def list(self, prefix: str) -> list[str]:
        n = len(self.bucket) + 1
        return [p[n:] for p in self.fs.find(self._path(prefix))]

    def delete(self, key: str) -> None:
        self.fs.rm_file(self._path(key))


def timed(fn: Callable[[], T]) -> tuple[float, float, T]:
    """Wall-clock and CPU seconds of ``fn()`` (CPU of this process: every thread)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def pooled(fn: Callable[[str], object], keys: list[str]) -> None:
    with ThreadPoolExecutor(THREADS) as pool:
        for _ in pool.map(fn, keys):
            pass


def one_round(client: Client, big: bytes, small: list[bytes]) -> dict[str, tuple[float, float]]:
    """The workload once, on fresh keys; returns (wall, CPU) seconds per operation."""
    run = uuid.uuid4().hex[:8]
    keys = [f"r{run}/small/{i:04d}" for i in range(N_SMALL)]
    out: dict[str, tuple[float, float]] = {}
    wall, cpu, _ = timed(lambda: pooled(lambda k: client.put(k, small[keys.index(k)]), keys))
    out[OPS[0]] = wall, cpu
    got: dict[str, bytes] = {}

    def fetch(k: str) -> None:
        got[k] = client.get(k)

    wall, cpu, _ = timed(lambda: pooled(fetch, keys))
    out[OPS[1]] = wall, cpu
    assert all(got[k] == small[i] for i, k in enumerate(keys)), f"{client.name}: bad read"
    big_key = f"r{run}/big"
    wall, cpu, _ = timed(lambda: client.put_big(big_key, big))
    out[OPS[2]] = wall, cpu
    wall, cpu, data = timed(lambda: client.get_big(big_key))
    out[OPS[3]] = wall, cpu
    assert data == big, f"{client.name}: bad big read"
    del data
    client.delete(big_key)  # moto keeps it in memory
    heads = [keys[i % N_SMALL] for i in range(N_HEAD)]
    wall, cpu, _ = timed(lambda: pooled(client.head, heads))
    out[OPS[4]] = wall, cpu
    listed = [f"r{run}/list/{i:05d}" for i in range(N_LIST)]
    pooled(lambda k: client.put(k, b"x"), listed)  # not timed: the listing is
    wall, cpu, found = timed(lambda: client.list(f"r{run}/list/"))
    out[OPS[5]] = wall, cpu
    assert sorted(found) == listed, f"{client.name}: listed {len(found)} keys"
    pooled(client.delete, keys + listed)
    return out


def render(best: dict[str, dict[str, float]]) -> str:
    names = list(best)
    lines = [f"  {'operation':<20}" + "".join(f"{n:>20}" for n in names)]
    for op in OPS:
        fastest = min(best[n][op] for n in names)
        cells = "".join(f"{best[n][op]:>9.3f} s ({best[n][op] / fastest:4.1f}x)" for n in names)
        lines.append(f"  {op:<20}{cells}")
    total = {n: sum(best[n].values()) for n in names}
    fastest = min(total.values())
    cells = "".join(f"{total[n]:>9.3f} s ({total[n] / fastest:4.1f}x)" for n in names)
    lines.append(f"  {'total':<20}{cells}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big-mib", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import random

    rng = random.Random(20240601)
    small = [rng.randbytes(SMALL) for _ in range(N_SMALL)]
    big = rng.randbytes(args.big_mib * MIB)
    with tempfile.TemporaryDirectory(prefix="modelkeep-bench-s3-") as tmp:
        server = services.start_s3(Path(tmp) / "moto.log")
        try:
            factories: list[Callable[[services.S3Server, str], Client]] = [Obstore, Boto3, S3fs]
            clients = [make(server, server.new_bucket()) for make in factories]
            best: dict[str, dict[str, float]] = {c.name: {} for c in clients}
            best_cpu: dict[str, dict[str, float]] = {c.name: {} for c in clients}
            for r in range(args.rounds):
                for client in clients:
                    log(f"round {r + 1}/{args.rounds}: {client.name}")
                    for op, (wall, cpu) in one_round(client, big, small).items():
                        best[client.name][op] = min(best[client.name].get(op, wall), wall)
                        best_cpu[client.name][op] = min(best_cpu[client.name].get(op, cpu), cpu)
        finally:
            server.stop()
    result: dict[str, Any] = {
        "wall_seconds": best, "cpu_seconds": best_cpu, "big_mib": args.big_mib,
        "rounds": args.rounds,
    }  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"Wall-clock against moto ({args.big_mib} MiB for big), best of {args.rounds}"
              " (ratio to the fastest):")  # fmt: skip
        print(render(best))
        print("CPU of the client process, best of the same rounds:")
        print(render(best_cpu))


if __name__ == "__main__":
    main()
