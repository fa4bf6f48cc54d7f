"""Real servers for the tests of shared engines: PostgreSQL and an S3 emulator.

Both run on 127.0.0.1 with throw-away state under a folder of the test session and
are stopped by the fixtures that start them (``tests/conftest.py``). PostgreSQL comes
from Debian's ``postgresql`` package (``scripts/test`` installs it); ``initdb`` and
``pg_ctl`` refuse root, so they run as the ``postgres`` user through ``runuser``. The
S3 emulator is ``moto[server]``, which keeps objects in memory: tests keep theirs small.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path


class ServiceUnavailable(RuntimeError):
    """A server the tests need cannot run on this machine."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceUnavailable(f"server on port {port} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise ServiceUnavailable(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def _pg_bin() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4])
    )
    if not found:
        raise ServiceUnavailable(
            "PostgreSQL is not installed (Debian's postgresql package; scripts/test installs it)"
        )
    return Path(found[-1]).parent


def _as_postgres(*cmd: str) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return list(cmd)


@dataclass
class Postgres:
    """A running PostgreSQL server; ``url(db)`` names a database on it."""

    data: Path
    port: int
    bin: Path
    user: str = "postgres"
    # A role that must log in with a password (the tests of wrong credentials).
    password_user: str = "mk_secret"
    password: str = "s3cret-pw"

    def url(self, database: str = "postgres", *, user: str | None = None) -> str:
        return f"postgresql://{user or self.user}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        out = subprocess.run(
            [str(self.bin / "psql"), "-X", "-qAt", "-h", "127.0.0.1", "-p", str(self.port),
             "-U", self.user, "-d", database, "-v", "ON_ERROR_STOP=1", "-c", sql],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"psql {sql!r} failed: {out.stderr.strip()}")
        return out.stdout.strip()

    def new_database(self, prefix: str = "mk", template: str | None = None) -> str:
        """A fresh database (empty, or a copy of ``template``); returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        copy = f' TEMPLATE "{template}"' if template else ""
        self.psql(f'CREATE DATABASE "{name}"{copy}')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop the database ``url`` names, closing whatever is still connected to it."""
        name = url.rsplit("/", 1)[1]
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def connections(self, database: str) -> int:
        """Backends connected to ``database`` now (pg_stat_activity)."""
        return int(self.psql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}'"))

    def stop(self) -> None:
        subprocess.run(
            _as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                         "-w", "stop"),
            capture_output=True, check=False, timeout=60,
        )  # fmt: skip


def start_postgres(base: Path) -> Postgres:
    """initdb into ``base`` and start a server on a free loopback port."""
    bin_dir = _pg_bin()
    base.mkdir(parents=True, exist_ok=True)
    data = base / "pgdata"
    sock = base / "pgsock"
    sock.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        # The postgres user must reach its folders (tempfile makes them private).
        os.chmod(base, 0o711)
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
    subprocess.run(
        _as_postgres(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                     "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"),
        capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    hba = data / "pg_hba.conf"
    hba.write_text(
        "local all all trust\n"
        "host all mk_secret 127.0.0.1/32 scram-sha-256\n"
        "host all all 127.0.0.1/32 trust\n"
    )
    port = free_port()
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={sock} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
        "-c max_connections=300 -c shared_buffers=64MB"
    )
    subprocess.run(
        _as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
                     "-l", str(base / "postgres.log"), "-w", "-t", "60", "start"),
        capture_output=True, check=True, timeout=90,
    )  # fmt: skip
    _wait_for_port(port, 30, None)
    server = Postgres(data=data, port=port, bin=bin_dir)
    server.psql(f"CREATE ROLE mk_secret LOGIN SUPERUSER PASSWORD '{server.password}'")
    return server


@dataclass
class S3Server:
    """A running moto S3 server; credentials are any non-empty strings."""

    proc: subprocess.Popen[bytes]
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "MODELKEEP_S3_ENDPOINT": self.endpoint,
        }

    def client(self) -> object:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def new_bucket(self, prefix: str = "mk") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]
        return name

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def start_s3(log: Path) -> S3Server:
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_for_port(port, 60, proc)
    except BaseException:
        proc.kill()
        raise
    return S3Server(proc=proc, port=port)
