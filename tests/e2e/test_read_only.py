"""A user who may read the repository but not write it: every read command works, every
write is refused in one line up front, and the repository is left byte for byte as it
was.

The reader is this test's own user with the repository made read-only (chmod a-w).
Root ignores permissions, so under root the commands run through `setpriv` without the
capabilities that let root write anything (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH,
CAP_FOWNER): the kernel then checks the permission bits as for any other user.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest

import modelkeep

READER = (
    ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]
    if os.geteuid() == 0
    else []
)


def _tree_digest(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[str(path.relative_to(root))] = "dir" if path.is_dir() else "other"
    return out


def _chmod_tree(root: Path, writable: bool) -> None:
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~0o222)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    base = tmp_path_factory.mktemp("readonly")
    root = base / "repo"
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(200, 2)), columns=["a", "b"])
    x.assign(label=(x["a"] > 0).astype(int)).to_csv(base / "train.csv", index=False)
    with modelkeep.Repo.init(root) as repo:
        model = LogisticRegression().fit(x, x["a"] > 0)
        repo.commit(
            "churn",
            model,
            "one",
            data=[str(base / "train.csv")],
            target="label",
            input_example=x.head(),
            metrics={"f1": 0.9},
        )
        repo.commit("churn", model, "two", metrics={"f1": 0.91})
        repo.promote("churn:1", "production")
        repo.tag("churn:2", "validated")
        repo.set_policy("churn", '[[rule]]\nmetric = "f1"\nbelow = 0.5\n')
        repo.schedule("churn@production", "1d", str(base / "{date}.csv"))
        repo.monitor("churn:1", base / "train.csv", target="label")
    return root


@pytest.fixture
def reader(template: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    root = tmp_path / "repo"
    shutil.copytree(template, root)
    _chmod_tree(root, writable=False)
    out = tmp_path / "out"
    out.mkdir()

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELKEEP_")}
        return subprocess.run(
            [*READER, "modelkeep", "--repo", str(root), *map(str, args)],
            capture_output=True,
            text=True,
            env=env,
            cwd=out,
            timeout=120,
        )

    run.root = root  # type: ignore[attr-defined]
    run.out = out  # type: ignore[attr-defined]
    yield run
    _chmod_tree(root, writable=True)


def test_the_reader_really_cannot_write(reader) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.run(
        [*READER, "touch", str(reader.root / ".modelkeep" / "probe")], capture_output=True
    )
    assert proc.returncode != 0


READS = [
    ["log", "churn"],
    ["log", "churn", "--json"],
    ["show", "churn:1"],
    ["show", "churn@production", "--json"],
    ["models"],
    ["events"],
    ["history", "churn@production"],
    ["diff", "churn:1", "churn:2"],
    ["branch", "churn", "--list"],
    ["alias", "list", "churn"],
    ["deployments"],
    ["data", "list"],
    ["monitor", "schedules"],
    ["monitor", "report", "churn:1"],
    ["monitor", "policy", "churn"],
    ["fsck"],
    ["checkout", "churn:1", "c1"],
]


@pytest.mark.parametrize("args", READS, ids=" ".join)
def test_every_read_command_works_and_changes_nothing(reader, args: list[str]) -> None:  # type: ignore[no-untyped-def]
    before = _tree_digest(reader.root)
    proc = reader(*args)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert _tree_digest(reader.root) == before


def test_checkout_status_and_load_work_from_a_read_only_repository(reader) -> None:  # type: ignore[no-untyped-def]
    assert reader("checkout", "churn:2", "c2").returncode == 0
    status = reader("status", "churn:2", "c2")
    assert status.returncode == 0, status.stderr
    # load caches the files where the reader may write (not in .modelkeep/cache).
    code = (
        "import modelkeep, sys; r = modelkeep.Repo(sys.argv[1]); "
        "print(type(r.load('churn:1')).__name__)"
    )
    before = _tree_digest(reader.root)
    proc = subprocess.run(
        [*READER, "python3", "-c", code, str(reader.root)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "LogisticRegression"
    assert _tree_digest(reader.root) == before


WRITES = [
    ["commit", "churn", "model.bin", "-m", "x"],
    ["tag", "churn:1", "t2"],
    ["promote", "churn:2", "production"],
    ["alias", "delete", "churn@production"],
    ["branch", "churn", "exp"],
    ["alias", "set", "churn@staging", "churn:1"],
    ["monitor", "policy", "churn", "policy.toml"],
    ["monitor", "unschedule", "1"],
    ["gc"],
    ["upgrade"],
    ["fsck", "--repair"],
]


@pytest.mark.parametrize("args", WRITES, ids=" ".join)
def test_every_write_is_refused_up_front_in_one_line(reader, args: list[str]) -> None:  # type: ignore[no-untyped-def]
    (reader.out / "model.bin").write_bytes(b"weights")
    (reader.out / "policy.toml").write_text('[[rule]]\nmetric = "f1"\nbelow = 0.4\n')
    before = _tree_digest(reader.root)
    proc = reader(*args)
    message = proc.stderr.strip()
    assert proc.returncode == 1, proc.stderr
    assert "\n" not in message
    assert message.startswith("error: ")
    assert "you may only read it" in message
    assert "init" not in message
    assert _tree_digest(reader.root) == before


def test_reads_work_while_a_writer_has_the_registry_open(reader) -> None:  # type: ignore[no-untyped-def]
    """A writer's open connection leaves -wal and -shm beside the registry: the reader
    reads through them without writing."""
    db = reader.root / ".modelkeep" / "registry.db"
    _chmod_tree(reader.root, writable=True)
    writer = sqlite3.connect(db)
    try:
        writer.execute("SELECT count(*) FROM versions").fetchone()
        assert Path(f"{db}-shm").exists()
        _chmod_tree(reader.root, writable=False)
        proc = reader("log", "churn", "--json")
        assert proc.returncode == 0, proc.stderr
        assert [v["number"] for v in json.loads(proc.stdout)] == [2, 1]
    finally:
        writer.close()
