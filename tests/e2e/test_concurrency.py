"""Several processes on one on-disk repository: commits race each other and gc.

Each child is a fresh interpreter (``python -c``) with its own ``Repo``, as
separate command-line invocations would be. Children report what they committed
as JSON on stdout; the parent then checks the repository against those reports.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import time
from pathlib import Path

import pytest

import children
import modelkeep
from modelkeep.store import ChunkParams

TIMEOUT = 240


def _spawn(script: str, *args: object, cwd: Path) -> subprocess.Popen[str]:
    return children.spawn(script, *args, cwd=cwd, author="e2e <e2e@example.org>")


def _result(proc: subprocess.Popen[str]) -> dict:
    return json.loads(children.finish(proc, TIMEOUT).strip().splitlines()[-1])


def _wait_for(path: Path, procs: list[subprocess.Popen[str]]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not path.exists():
        for p in procs:
            if p.poll() is not None:
                _, err = p.communicate()
                raise AssertionError(f"child exited early ({p.returncode}):\n{err}")
        assert time.monotonic() < deadline, f"gave up waiting for {path}"
        time.sleep(0.01)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _checkout_hashes(repo: modelkeep.Repo, rev: str, dest: Path) -> dict[str, str]:
    repo.checkout(rev, dest)
    return {
        p.relative_to(dest).as_posix(): _sha(p.read_bytes())
        for p in sorted(dest.rglob("*"))
        if p.is_file()
    }


# -- many committers ----------------------------------------------------------------

COMMITTER = r"""
import hashlib, json, os, sys, time
from pathlib import Path
import modelkeep

repo_path, worker, count, go, work = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    Path(sys.argv[4]), Path(sys.argv[5])
work.mkdir(parents=True)
repo = modelkeep.Repo(repo_path)
deadline = time.monotonic() + 120
while not go.exists():  # start together, to collide as much as possible
    if time.monotonic() > deadline:
        sys.exit("no go signal")
    time.sleep(0.002)
done = {}
for i in range(count):
    data = (f"worker {worker} commit {i}\n" * (1 + i % 5)).encode() + os.urandom(24)
    (work / "model.txt").write_bytes(data)
    v = repo.commit("churn", work / "model.txt", f"w{worker}-{i}")
    done[v.number] = {"sha": hashlib.sha256(data).hexdigest(), "message": f"w{worker}-{i}"}
repo.close()
print(json.dumps(done))
"""

WORKERS, PER_WORKER = 4, 50


@pytest.mark.slow
def test_parallel_commits_get_distinct_consecutive_versions(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    modelkeep.Repo.init(root).close()
    go = tmp_path / "go"
    procs = [
        _spawn(COMMITTER, root, w, PER_WORKER, go, tmp_path / f"work{w}", cwd=tmp_path)
        for w in range(WORKERS)
    ]
    go.touch()
    reports = [_result(p) for p in procs]

    committed: dict[int, dict[str, str]] = {}
    for report in reports:
        assert len(report) == PER_WORKER
        for number, record in report.items():
            assert int(number) not in committed, f"version {number} handed out twice"
            committed[int(number)] = record
    assert sorted(committed) == list(range(1, WORKERS * PER_WORKER + 1))

    with modelkeep.Repo(root) as repo:
        log = repo.log("churn")
        assert [v.number for v in log] == list(range(WORKERS * PER_WORKER, 0, -1))
        for v in log:
            # Each commit's parent is the branch head it saw: history stays linear.
            assert v.parents == ((v.number - 1,) if v.number > 1 else ())
            assert v.message == committed[v.number]["message"]
            got = _checkout_hashes(repo, v.rev, tmp_path / "out" / str(v.number))
            assert got == {"model.txt": committed[v.number]["sha"]}, v.rev
        assert repo.refs("churn", "branch")[0].version == WORKERS * PER_WORKER
        commits = [e for e in repo.history("churn") if e.action == "commit"]
        assert sorted(e.after for e in commits) == list(range(1, WORKERS * PER_WORKER + 1))
        report = repo.fsck()
        assert report.ok, report.problems
        assert report.versions_checked == WORKERS * PER_WORKER
        assert report.unreferenced == 0


# -- gc beside a committer ----------------------------------------------------------

GC_LOOP = r"""
import json, sys, time
from pathlib import Path
import modelkeep

repo_path, ready, stop = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
repo = modelkeep.Repo(repo_path)
cycles = removed = 0
deadline = time.monotonic() + 200
while True:
    last = stop.exists()  # one more full gc after the committer has finished
    report = repo.gc()
    cycles += 1
    removed += report.objects_removed
    ready.touch()
    if last or time.monotonic() > deadline:
        break
    time.sleep(0.005)
repo.close()
print(json.dumps({"cycles": cycles, "removed": removed}))
"""

SHARING_COMMITTER = r"""
import hashlib, json, random, sys
from pathlib import Path
import modelkeep
from modelkeep.errors import RefNotFoundError

repo_path, prefix_path, count, work = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), \
    Path(sys.argv[4])
rng = random.Random(7)
prefix = prefix_path.read_bytes()
work.mkdir(parents=True)
scratch = work.parent / "scratch"
scratch.mkdir()
repo = modelkeep.Repo(repo_path)
extras = []
done = {}
aborted = 0
for i in range(count):
    files = {
        # 1.5 MiB shared with every other version, then a distinct tail.
        "weights.bin": prefix + rng.randbytes(rng.randrange(40_000, 400_000)),
        "meta.json": json.dumps({"i": i}).encode(),
    }
    if i % 3 == 0 or not extras:
        extras.append(rng.randbytes(rng.randrange(300_000, 600_000)))  # a loose object
    files["extra.bin"] = extras[rng.randrange(len(extras))]  # often an earlier one
    for name, data in files.items():
        (work / name).write_bytes(data)
    v = repo.commit("churn", work, f"c{i}")
    done[v.number] = {k: hashlib.sha256(d).hexdigest() for k, d in files.items()}
    if i % 4 == 1:
        # A commit that fails after storing its (unique) objects: garbage for gc.
        (scratch / "junk.bin").write_bytes(rng.randbytes(300_000))
        (scratch / "junk.txt").write_bytes(rng.randbytes(100))
        try:
            repo.commit(f"scratch{i}", scratch, branch="wip")
        except RefNotFoundError:
            aborted += 1
repo.close()
print(json.dumps({"done": done, "aborted": aborted}))
"""


@pytest.mark.slow
def test_gc_loop_beside_committer_sharing_chunks(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    # Smaller chunks than the default, so a 1.5 MiB prefix is cut into several chunks
    # (some above the 256 KiB pack limit, stored loose; some below it, packed).
    modelkeep.Repo.init(root, ChunkParams(64 << 10, 256 << 10, 1 << 20)).close()
    prefix = tmp_path / "prefix.bin"
    prefix.write_bytes(random.Random(3).randbytes(3 << 19))
    ready, stop = tmp_path / "gc-ready", tmp_path / "gc-stop"

    gc_proc = _spawn(GC_LOOP, root, ready, stop, cwd=tmp_path)
    _wait_for(ready, [gc_proc])  # gc is looping before the first commit starts
    committer = _spawn(SHARING_COMMITTER, root, prefix, 30, tmp_path / "work", cwd=tmp_path)
    try:
        result = _result(committer)
    finally:
        stop.touch()
    gc_result = _result(gc_proc)

    done = {int(n): files for n, files in result["done"].items()}
    assert sorted(done) == list(range(1, 31))
    assert result["aborted"] > 0
    assert gc_result["cycles"] >= 2
    assert gc_result["removed"] > 0  # gc did delete things, the aborted commits' garbage

    with modelkeep.Repo(root) as repo:
        assert [v.number for v in repo.log("churn")] == list(range(30, 0, -1))
        for number, files in done.items():
            got = _checkout_hashes(repo, f"churn:{number}", tmp_path / "out" / str(number))
            assert got == files, f"churn:{number}"
        report = repo.fsck()
        assert report.ok, report.problems
        assert report.versions_checked == 30
        assert report.unreferenced == 0  # the final gc removed every aborted object
        # Versions share the prefix: far less is stored than was committed.
        stored = sum(
            p.stat().st_size for p in (root / ".modelkeep" / "store").rglob("*") if p.is_file()
        )
        assert stored < sum(v.size for v in repo.log("churn")) / 2
        for number in range(2, 31):
            (weights,) = [
                c
                for c in repo.diff("churn:1", f"churn:{number}").changed
                if c.path == "weights.bin"
            ]
            assert weights.chunks_changed < weights.chunks_total


# -- a retried commit while gc runs elsewhere -----------------------------------------

RETRYING_COMMITTER = r"""
import json, sys, time
from pathlib import Path
import modelkeep
from modelkeep.errors import RefNotFoundError, StoreError

repo_path, work, gc_done = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
repo = modelkeep.Repo(repo_path)
# A first attempt that fails after its objects are stored (a mistyped --branch).
try:
    repo.commit("churn", work, "weights and tokenizer", branch="typo")
    sys.exit("the commit should have failed")
except RefNotFoundError:
    pass
# Part of it committed properly: its objects now live beside the failed attempt's.
v1 = repo.commit("churn", work / "weights.bin", "weights")
print("phase1", flush=True)
deadline = time.monotonic() + 120
while not gc_done.exists():  # another process runs gc now
    if time.monotonic() > deadline:
        sys.exit("no gc")
    time.sleep(0.01)
out = {"v1": v1.number}
try:
    repo.checkout(v1.rev, work.parent / "own-checkout")
    out["own_checkout"] = "ok"
except StoreError as exc:
    out["own_checkout"] = f"{type(exc).__name__}: {exc}"
v2 = repo.commit("churn", work / "tokenizer.json", "tokenizer, retried")
out["v2"] = v2.number
print(json.dumps(out))
"""


def test_commit_retried_after_gc_in_another_process(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    modelkeep.Repo.init(root).close()
    work = tmp_path / "work"
    work.mkdir()
    files = {"weights.bin": random.Random(5).randbytes(200_000), "tokenizer.json": b'{"v": 1}'}
    for name, data in files.items():
        (work / name).write_bytes(data)
    gc_done = tmp_path / "gc-done"

    # Set-up failures use pytest.fail, so they are not mistaken for the expected failure.
    child = _spawn(RETRYING_COMMITTER, root, work, gc_done, cwd=tmp_path)
    assert child.stdout is not None
    line = child.stdout.readline()
    if line.strip() != "phase1":
        child.kill()
        _, err = child.communicate()
        pytest.fail(f"child did not reach phase 1: {line!r}\n{err}")
    with modelkeep.Repo(root) as repo:
        if repo.gc().objects_removed == 0:  # the failed attempt's tokenizer and tree
            pytest.fail("gc found no garbage to collect")
    gc_done.touch()
    out, err = child.communicate(timeout=TIMEOUT)
    if child.returncode != 0:
        pytest.fail(f"child failed ({child.returncode}):\n{err}")
    result = json.loads(out.strip().splitlines()[-1])

    with modelkeep.Repo(root) as repo:
        report = repo.fsck()
        assert report.ok, report.problems
        got = _checkout_hashes(repo, f"churn:{result['v2']}", tmp_path / "v2")
        assert got == {"tokenizer.json": _sha(files["tokenizer.json"])}
    # The committer's own, long-lived Repo reads what gc moved to a new pack.
    assert result["own_checkout"] == "ok"
