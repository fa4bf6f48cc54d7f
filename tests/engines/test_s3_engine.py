"""A repository on PostgreSQL + S3 (the moto emulator), used by many processes at once:
the issue's required races, a killed committer, gc beside commits, and the endpoint
going away.

Every child is a fresh interpreter that opens the repository by its folder (whose
config points at the database and the bucket), as separate machines would: the only
things they share are the PostgreSQL server and the S3 endpoint. Objects stay small:
moto keeps them in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

import children
import modelkeep
from modelkeep.errors import RepositoryExistsError, UnreachableError, UsageError

pytestmark = [pytest.mark.local_engine, pytest.mark.slow]  # each test picks its engines

TIMEOUT = 300
RACE_SECONDS = float(os.environ.get("MODELKEEP_RACE_SECONDS", "60"))


@pytest.fixture
def shared(postgres: Any, s3_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh repository on PostgreSQL + S3, its folder at ``tmp_path / "repo"``; gc
    here collects at once (no grace period: these tests race it against commits)."""
    monkeypatch.setenv("MODELKEEP_GC_GRACE", "0")
    db = postgres.new_database()
    bucket = s3_server.new_bucket()
    root = tmp_path / "repo"
    modelkeep.Repo.init(root, db=db, store=f"s3://{bucket}/models").close()
    yield root
    postgres.drop_database(db)


def _spawn(script: str, *args: object, cwd: Path) -> subprocess.Popen[str]:
    # Each child its own read cache, as each machine has its own.
    cache = str(cwd / f"cache-{random.getrandbits(32):08x}")
    return children.spawn(
        script, *args, cwd=cwd, author="engines <engines@example.org>", MODELKEEP_CACHE=cache
    )


def _finish(proc: subprocess.Popen[str]) -> str:
    return children.finish(proc, TIMEOUT)


def _check_every_version(root: Path, expected: dict[int, str] | None, tmp: Path) -> int:
    """Check out every listed version and compare it with what was committed (by
    sha256 of the weights file); returns how many versions there are."""
    repo = modelkeep.Repo(root)
    try:
        versions = repo.log("churn", limit=None)
        numbers = sorted(v.number for v in versions)
        assert numbers == list(range(1, len(numbers) + 1))
        for v in versions:
            out = tmp / f"out-{v.number}"
            repo.checkout(f"churn:{v.number}", out)
            digest = hashlib.sha256((out / "weights.bin").read_bytes()).hexdigest()
            if expected is not None:
                assert digest == expected[v.number], f"churn:{v.number} differs"
            else:
                assert digest == v.message.split()[-1], f"churn:{v.number} differs"
        report = repo.fsck()
        assert report.problems == []
        return len(versions)
    finally:
        repo.close()


# -- 4 processes × 50 commits ---------------------------------------------------------

_COMMITTER = r"""
import hashlib, json, random, sys
from pathlib import Path
import modelkeep

root, worker, count = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
repo = modelkeep.Repo(root)
rng = random.Random(worker)
made = {}
for i in range(count):
    data = rng.randbytes(rng.randrange(2_000, 60_000)) + f"{worker}/{i}".encode()
    folder = root.parent / f"w{worker}"
    folder.mkdir(exist_ok=True)
    (folder / "weights.bin").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    v = repo.commit("churn", folder, f"{worker}/{i} {digest}")
    made[v.number] = digest
repo.close()
print(json.dumps(made))
"""


def test_four_processes_by_fifty_commits_get_versions_1_to_200(shared: Path) -> None:
    procs = [_spawn(_COMMITTER, shared, w, 50, cwd=shared.parent) for w in range(4)]
    made: dict[int, str] = {}
    for proc in procs:
        for number, digest in json.loads(_finish(proc).strip().splitlines()[-1]).items():
            assert int(number) not in made
            made[int(number)] = digest
    assert sorted(made) == list(range(1, 201))
    assert _check_every_version(shared, made, shared.parent) == 200


# -- a committer killed at random points ------------------------------------------------

_KILLED = r"""
import hashlib, random, sys
from pathlib import Path
import modelkeep

root, seed = Path(sys.argv[1]), int(sys.argv[2])
repo = modelkeep.Repo(root)
rng = random.Random(seed)
folder = root.parent / f"k{seed}"
folder.mkdir(exist_ok=True)
base = random.Random(7).randbytes(3 << 20)  # shared by every version: chunks dedup
for i in range(1000):
    # Large enough to be several chunks and loose objects (uploads in flight).
    data = base[: rng.randrange(1 << 20, 3 << 20)] + rng.randbytes(rng.randrange(1 << 20, 4 << 20))
    (folder / "weights.bin").write_bytes(data)
    repo.commit("churn", folder, f"{seed}/{i} {hashlib.sha256(data).hexdigest()}")
    print("done", i, flush=True)
"""


def test_a_commit_killed_at_random_points_leaves_no_half_published_version(
    shared: Path,
) -> None:
    rng = random.Random(13)
    for seed in range(6):
        proc = _spawn(_KILLED, shared, seed, cwd=shared.parent)
        time.sleep(rng.uniform(1.5, 4.0))  # the import is about a second
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=TIMEOUT)
    # Every version visible is whole (its message carries its content's digest) and
    # fsck finds nothing missing; what the killed commits left is unreferenced.
    count = _check_every_version(shared, None, shared.parent)
    assert count >= 1
    repo = modelkeep.Repo(shared)
    try:
        repo.gc()
        assert repo.fsck().problems == []
        assert repo.fsck().unreferenced == 0
    finally:
        repo.close()


# -- a committer and gc racing -----------------------------------------------------------

_RACER = r"""
import hashlib, json, random, sys, time
from pathlib import Path
import modelkeep

root, seconds = Path(sys.argv[1]), float(sys.argv[2])
repo = modelkeep.Repo(root)
rng = random.Random(5)
folder = root.parent / "racer"
folder.mkdir(exist_ok=True)
made = {}
orphan = None
end = time.monotonic() + seconds
i = 0
while time.monotonic() < end:
    if i % 3 == 0:
        # Store objects no version will reference (as a crashed commit leaves them):
        # the next commit finds them present and skips them, while gc may be about
        # to delete them as garbage. The store lock must settle who goes first.
        orphan = rng.randbytes(rng.randrange(100_000, 400_000))
        (folder / "weights.bin").write_bytes(orphan)
        with repo.store.writer() as w:
            repo.store.store_file(folder / "weights.bin", w)
    data = (orphan or b"") + rng.randbytes(rng.randrange(1_000, 50_000))
    (folder / "weights.bin").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    v = repo.commit("churn", folder, f"race {i} {digest}")
    made[v.number] = digest
    i += 1
repo.close()
print(json.dumps(made))
"""

_COLLECTOR = r"""
import sys, time
from pathlib import Path
import modelkeep

root, seconds = Path(sys.argv[1]), float(sys.argv[2])
runs = 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    with modelkeep.Repo(root) as repo:
        repo.gc()
    runs += 1
print(runs)
"""


def test_a_committer_and_gc_racing_leave_every_version_whole(shared: Path) -> None:
    committer = _spawn(_RACER, shared, RACE_SECONDS, cwd=shared.parent)
    collector = _spawn(_COLLECTOR, shared, RACE_SECONDS, cwd=shared.parent)
    made = {int(k): v for k, v in json.loads(_finish(committer).splitlines()[-1]).items()}
    runs = int(_finish(collector).splitlines()[-1])
    assert runs >= 2, "gc never ran beside the committer"
    assert len(made) >= 5
    assert _check_every_version(shared, made, shared.parent) == len(made)


# -- the endpoint going away -------------------------------------------------------------


def test_the_endpoint_going_away_mid_commit_is_a_clear_error_and_publishes_nothing(
    postgres: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import services

    server = services.start_s3(tmp_path / "moto.log")
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    db = postgres.new_database()
    try:
        bucket = server.new_bucket()
        root = tmp_path / "repo"
        modelkeep.Repo.init(
            root, db=db, store=f"s3://{bucket}/m", s3_endpoint=server.endpoint
        ).close()
        small = tmp_path / "small.bin"
        small.write_bytes(b"first" * 1000)
        with modelkeep.Repo(root) as repo:
            repo.commit("churn", small, "first")
        big = tmp_path / "big.bin"
        big.write_bytes(random.Random(3).randbytes(96 << 20))
        # The command line, in a child of its own (`modelkeep --repo ROOT commit …`).
        proc = children.spawn(
            "from modelkeep.cli.app import main; main()",
            "--repo", root, "commit", "churn", big, "-m", "second",
            cwd=tmp_path, author="engines <engines@example.org>", **server.env(),
        )  # fmt: skip
        # Stop the endpoint once the commit's uploads are under way (moto logs each).
        log = tmp_path / "moto.log"
        before = log.read_text().count("/m/objects/")
        deadline = time.monotonic() + 60
        while log.read_text().count("/m/objects/") < before + 3:
            assert proc.poll() is None, "the commit ended before it uploaded anything"
            assert time.monotonic() < deadline, "the commit never started uploading"
            time.sleep(0.02)
        server.stop()
        _out, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 7, err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err
        assert lines[0].startswith("error: ")
        assert server.endpoint in lines[0]
        assert f"s3://{bucket}/m" in lines[0]
        # The registry never saw the second version.
        from modelkeep.registry import Registry

        reg = Registry(db)
        try:
            assert [v.number for v in reg.versions("churn")] == [1]
            assert [e.after for e in reg.events() if e.action == "commit"] == [1]
        finally:
            reg.dispose()
    finally:
        server.stop()
        postgres.drop_database(db)


# -- bad input ---------------------------------------------------------------------------


def test_a_bucket_holding_another_repository_is_refused(
    shared: Path, postgres: Any, tmp_path: Path, cli: Any
) -> None:
    store = json.loads((shared / ".modelkeep" / "config.json").read_text())["store"]
    db = postgres.new_database()
    try:
        with pytest.raises(RepositoryExistsError, match=r"already holds a modelkeep repository"):
            modelkeep.Repo.init(tmp_path / "other", db=db, store=store)
        assert not (tmp_path / "other").exists()
        result = cli(tmp_path / "third", "init", str(tmp_path / "third"), "--db", db,
                     "--store", store)  # fmt: skip
        assert result.code == 4
        assert store in result.one_line_error()
    finally:
        postgres.drop_database(db)


def test_a_missing_bucket_is_an_unreachable_store(
    postgres: Any, s3_server: Any, tmp_path: Path, cli: Any
) -> None:
    db = postgres.new_database()
    try:
        with pytest.raises(UnreachableError, match=r"no bucket 'no-such-bucket'.*create the"):
            modelkeep.Repo.init(tmp_path / "x", db=db, store="s3://no-such-bucket/p")
        assert not (tmp_path / "x").exists()
        result = cli(tmp_path / "y", "init", str(tmp_path / "y"), "--db", db, "--store",
                     "s3://no-such-bucket/p")  # fmt: skip
        assert result.code == 7
        assert "s3://no-such-bucket/p" in result.one_line_error()
        from modelkeep.registry import Registry

        reg = Registry(db)
        try:
            assert not reg.holds_schema()  # nothing was created in the database either
        finally:
            reg.dispose()
    finally:
        postgres.drop_database(db)


def test_repeated_loads_on_one_machine_fetch_nothing(shared: Path, tmp_path: Path) -> None:
    """A second checkout of the same version reads every object from the local read
    cache: the S3 requests made are counted by the moto server's own log."""
    data = random.Random(1).randbytes(2 << 20)
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "weights.bin").write_bytes(data)
    with modelkeep.Repo(shared) as repo:
        repo.commit("churn", tmp_path / "w", "one")
    cache = tmp_path / "cache"
    os.environ["MODELKEEP_CACHE"] = str(cache)
    try:
        with modelkeep.Repo(shared) as repo:
            repo.checkout("churn:1", tmp_path / "a")
            store: Any = repo.store.backend
            fetched_first = store.fetched_bytes
        with modelkeep.Repo(shared) as repo:
            repo.checkout("churn:1", tmp_path / "b")
            fetched_again = repo.store.backend.fetched_bytes  # type: ignore[attr-defined]
    finally:
        del os.environ["MODELKEEP_CACHE"]
    assert (tmp_path / "b" / "weights.bin").read_bytes() == data
    assert fetched_first >= len(data) // 2  # compressible? random: fetched whole
    assert fetched_again == 0


def test_gc_on_a_shared_store_keeps_young_unreferenced_objects(
    shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beside the store lock, a grace period: objects no version references yet are
    kept while younger than MODELKEEP_GC_GRACE (an hour by default)."""
    orphan = tmp_path / "orphan.bin"
    orphan.write_bytes(random.Random(2).randbytes(600_000))
    with modelkeep.Repo(shared) as repo:
        with repo.store.writer() as w:
            repo.store.store_file(orphan, w)
        assert repo.fsck().unreferenced > 0
        monkeypatch.delenv("MODELKEEP_GC_GRACE")
        assert repo.gc().objects_removed == 0
        monkeypatch.setenv("MODELKEEP_GC_GRACE", "soon")
        with pytest.raises(UsageError, match="MODELKEEP_GC_GRACE"):
            repo.gc()
        monkeypatch.setenv("MODELKEEP_GC_GRACE", "0")
        assert repo.gc().objects_removed > 0
        assert repo.fsck().unreferenced == 0
