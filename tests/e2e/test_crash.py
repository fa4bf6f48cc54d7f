"""Commits killed with SIGKILL at random points leave a repository that needs no repair.

A child process commits multi-file versions (three 2–8 MiB random files, some
kept from the previous version, plus small files) in a loop and is killed after
a seeded random delay, round after round. Before each commit it records the
BLAKE3 of every file it is about to commit, tagged with the commit message; after
the commit returns it records the version number. A kill can land after the
version is published but before that second record: such a version is matched to
its attempt through its message, so every version is checked byte for byte.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import blake3
import pytest

import modelkeep

pytestmark = pytest.mark.slow

DELAY_ROUNDS = 8  # killed after a random delay, spread over one commit and a bit more
WRITE_ROUNDS = 1  # killed as soon as the commit starts writing its first object
PACK_ROUNDS = 1  # killed as soon as the commit's pack exists, right before publishing
TIMEOUT = 120

CRASHER = r"""
import json, os, random, sys, time
from pathlib import Path
import blake3
import modelkeep

repo_path, work, log_path = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
rnd, seed, count = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
rng = random.Random(seed)
repo = modelkeep.Repo(repo_path)
fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

def record(**fields):
    os.write(fd, (json.dumps(fields) + "\n").encode())  # one write: whole line or none

content = {}
i = 0
while count == 0 or i < count:
    for name in ("a.bin", "b.bin", "c.bin"):
        if name not in content or rng.random() < 0.7:
            content[name] = rng.randbytes(rng.randrange(2 << 20, 8 << 20))
    content["config.json"] = json.dumps({"round": rnd, "commit": i}).encode()
    content["sub/notes.txt"] = f"round {rnd} commit {i}\n".encode() * rng.randrange(1, 400)
    for name, data in content.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(data)
    tag = f"r{rnd}-{i}"
    record(event="attempt", tag=tag,
           files={n: blake3.blake3(d).hexdigest() for n, d in content.items()})
    started = time.perf_counter()
    v = repo.commit("churn", work, tag)
    record(event="done", tag=tag, version=v.number, seconds=time.perf_counter() - started)
    i += 1
"""


@dataclass
class Crashed:
    root: Path
    attempts: dict[str, dict[str, str]]  # tag -> path -> blake3, recorded before commit
    done: dict[str, int]  # tag -> version number, recorded after commit returned
    last_attempt: dict[int, str]  # round -> tag of its last attempt
    killed_rounds: int

    def copy_to(self, dest: Path) -> Path:
        shutil.copytree(self.root, dest, symlinks=True)
        return dest


def _read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    # A whole line is written in one write(2); tolerate a torn tail all the same.
    return [json.loads(line) for line in lines[:-1] if line]


def _spawn(root: Path, work: Path, log: Path, rnd: int, count: int) -> subprocess.Popen[bytes]:
    work.mkdir(parents=True)
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            CRASHER,
            str(root),
            str(work),
            str(log),
            str(rnd),
            str(1000 + rnd),
            str(count),
        ],
        cwd=work.parent,
        env={
            **os.environ,
            "MODELKEEP_AUTHOR": "e2e <e2e@example.org>",
            "GIT_CEILING_DIRECTORIES": str(work.parent),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_until(
    cond, proc: subprocess.Popen[bytes], what: str, poll: float = 0.001, limit: float = TIMEOUT
) -> bool:
    """Wait for ``cond``; False once ``limit`` seconds have passed."""
    deadline = time.monotonic() + limit
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(
                f"child exited ({proc.returncode}) before {what}:\n{proc.stderr.read().decode()}"
            )
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


def _listing(folder: Path) -> set[str]:
    try:
        return set(os.listdir(folder))
    except FileNotFoundError:
        return set()


def _files(store: Path, folders: tuple[str, ...]) -> set[str]:
    """Every file under the given folders of the store (a cheap walk: no stat calls)."""
    found = set()
    for folder in folders:
        for dirpath, _dirs, names in os.walk(store / folder):
            found.update(os.path.join(dirpath, n) for n in names)
    return found


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Crashed:
    base = tmp_path_factory.mktemp("crash")
    root = base / "repo"
    modelkeep.Repo.init(root).close()
    log = base / "log.jsonl"
    store = root / ".modelkeep" / "store"

    # Round 0 runs to completion and measures how long a commit takes.
    child = _spawn(root, base / "work0", log, 0, 2)
    _, err = child.communicate(timeout=TIMEOUT)
    assert child.returncode == 0, err.decode()
    durations = [r["seconds"] for r in _read_log(log) if r["event"] == "done"]
    assert len(durations) == 2
    typical = statistics.median(durations)

    # Delays run from 0 to 1.5 commits: kills land anywhere in the first commit, at
    # its publication, and while the next one prepares its files.
    rng = random.Random(1729)
    plan: list[float | str] = [
        typical * 1.5 * (k + rng.random()) / DELAY_ROUNDS for k in range(DELAY_ROUNDS)
    ]
    plan += ["write"] * WRITE_ROUNDS + ["pack"] * PACK_ROUNDS
    rng.shuffle(plan)
    for rnd, when in enumerate(plan, start=1):
        watched = {"write": ("tmp", "objects"), "pack": ("packs",)}.get(str(when))
        before = _files(store, watched) if watched else set()
        child = _spawn(root, base / f"work{rnd}", log, rnd, 0)
        started = f"r{rnd}-0"
        assert _wait_until(
            lambda started=started: any(r["tag"] == started for r in _read_log(log)),
            child,
            "its first commit started",
        ), "the child never started committing"
        if watched is None:
            assert isinstance(when, float)
            time.sleep(when)
        else:
            # Should the store stop writing there, kill at some point all the same.
            _wait_until(
                lambda watched=watched, before=before: bool(_files(store, watched) - before),
                child,
                f"its first {when}",
                poll=0.0002,
                limit=max(2.0, 10 * typical),
            )
        child.send_signal(signal.SIGKILL)
        _, err = child.communicate(timeout=TIMEOUT)
        assert child.returncode == -signal.SIGKILL, err.decode()

    records = _read_log(log)
    attempts = {r["tag"]: r["files"] for r in records if r["event"] == "attempt"}
    done = {r["tag"]: r["version"] for r in records if r["event"] == "done"}
    last_attempt: dict[int, str] = {}
    for r in records:
        if r["event"] == "attempt":
            last_attempt[int(r["tag"][1:].split("-")[0])] = r["tag"]
    return Crashed(root, attempts, done, last_attempt, len(plan))


def _hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): blake3.blake3(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _check_every_version(repo: modelkeep.Repo, crashed: Crashed, out: Path) -> list[int]:
    """Each version checks out as its attempt recorded; returns the unrecorded ones."""
    log = repo.log("churn")
    numbers = sorted(v.number for v in log)
    assert numbers == list(range(1, len(numbers) + 1))
    tags = [v.message for v in log]
    assert len(set(tags)) == len(tags), "one attempt was published twice"
    by_tag = {v.message: v for v in log}
    for tag, number in crashed.done.items():
        assert tag in by_tag, f"{tag} was committed as version {number} but is gone"
        assert by_tag[tag].number == number
    unrecorded = []
    for v in log:
        assert v.message in crashed.attempts, f"{v.rev} has no recorded attempt: {v.message}"
        if v.message not in crashed.done:
            # Published, then killed before the child could record it: only the
            # last attempt of a killed round can be in that state.
            rnd = int(v.message[1:].split("-")[0])
            assert crashed.last_attempt[rnd] == v.message, v.rev
            unrecorded.append(v.number)
        dest = out / str(v.number)
        repo.checkout(v.rev, dest)
        assert _hashes(dest) == crashed.attempts[v.message], v.rev
    return unrecorded


def _commit_more(repo: modelkeep.Repo, work: Path) -> None:
    files = {"a.bin": os.urandom(3 << 20), "after.txt": b"committed after the crashes\n"}
    work.mkdir()
    for name, data in files.items():
        (work / name).write_bytes(data)
    latest = max(v.number for v in repo.log("churn"))
    v = repo.commit("churn", work, "after the crashes")
    assert v.number == latest + 1
    assert v.parents == (latest,)
    repo.checkout(v.rev, work.parent / "after-out")
    assert _hashes(work.parent / "after-out") == _hashes(work)


def test_killed_commits_leave_a_consistent_repository(
    crashed: Crashed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    root = crashed.copy_to(tmp_path / "repo")
    with modelkeep.Repo(root) as repo:
        report = repo.fsck()
        assert report.ok, report.problems
        unrecorded = _check_every_version(repo, crashed, tmp_path / "out")
        assert len(unrecorded) <= crashed.killed_rounds
        assert len(repo.log("churn")) == len(crashed.done) + len(unrecorded)

        # A further commit needs no repair.
        _commit_more(repo, tmp_path / "work")
        report = repo.fsck()
        assert report.ok, report.problems


def test_gc_after_crashes_removes_leftovers(
    crashed: Crashed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    root = crashed.copy_to(tmp_path / "repo")
    store = root / ".modelkeep" / "store"
    temp_before = len(_listing(store / "tmp"))
    with modelkeep.Repo(root) as repo:
        before = repo.fsck()
        assert before.ok, before.problems
        # Kills during object writes leave temp files or objects no version names.
        assert temp_before + before.unreferenced > 0

        report = repo.gc()
        assert report.temp_files_removed == temp_before
        assert report.objects_removed >= before.unreferenced

        assert _listing(store / "tmp") == set()
        after = repo.fsck()
        assert after.ok, after.problems
        assert after.unreferenced == 0
        assert after.versions_checked == before.versions_checked
        _check_every_version(repo, crashed, tmp_path / "out")
        _commit_more(repo, tmp_path / "work")
        assert repo.fsck().ok
