"""Processes receiving the same version at the same moment (two server workers given
one push, a push and a pull crossing) make one version of it: the registry checks the
identity in the transaction that would add it. Each publisher is a process of its own,
as server workers are. Both engines."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from remote_team import MIB, write_random

import modelkeep
from children import finish, spawn
from modelkeep.store.frames import split

PROCESSES = 4

# Between its first look for the identity and adding the version, a publish checks the
# store for every object: made slow here (by a delay each child is given), so that the
# children interleave as a race needs. All start at one moment.
PUBLISH = """
import json, pathlib, sys, time
import modelkeep
from modelkeep._engine.exchange import Exchange

needs = Exchange._needs
delay = float(sys.argv[4])
Exchange._needs = lambda self, *args: (time.sleep(delay), needs(self, *args))[1]
root, record = sys.argv[1], json.loads(pathlib.Path(sys.argv[2]).read_text())
at = float(sys.argv[3])
with modelkeep.Repo(root) as repo:
    time.sleep(max(0.0, at - time.time()))
    version, new = repo.exchange.publish(record)
print(json.dumps([version.number, new]))
"""


def _publish_at_once(
    root: Path, record_file: Path, cwd: Path, delays: list[float]
) -> list[tuple[int, bool]]:
    at = time.time() + 3.0  # after every child has started and opened the repository
    children = [
        spawn(PUBLISH, root, record_file, at, delay, cwd=cwd, author="receiver") for delay in delays
    ]
    results, failures = [], []
    for child in children:  # every one waited for, so none is left running (or its pipes)
        try:
            results.append(tuple(json.loads(finish(child, 60))))
        except AssertionError as exc:
            failures.append(exc)
    if failures:
        raise failures[0]
    return results  # type: ignore[return-value]


@pytest.mark.parametrize(
    "delays",
    [
        # All slow alike: each finds the branch as it was, and the transaction that
        # adds the version finds it there already.
        [0.3] * PROCESSES,
        # One fast: the others find the branch moved, by the very version they bring.
        [0.0] + [0.6] * (PROCESSES - 1),
    ],
    ids=["together", "one-first"],
)
def test_one_version_however_many_processes_publish_it_at_once(
    tmp_path: Path, delays: list[float]
) -> None:
    source = modelkeep.Repo.init(tmp_path / "source")
    target = modelkeep.Repo.init(tmp_path / "target")
    try:
        first = source.commit("churn", write_random(tmp_path / "a", MIB, seed=1), "one")
        second = source.commit("churn", write_random(tmp_path / "b", MIB, seed=2), "two")
        for version in (first, second):
            objects = sorted(source.exchange.objects_of(version))
            body = b"".join(bytes(p) for p in source.exchange.send(objects))
            target.exchange.receive(split(body))
        identities = source.exchange.identities("churn")
        # The model's first version (the model made at once too), then one on it.
        for number, version in ((1, first), (2, second)):
            record_file = tmp_path / f"record-{number}.json"
            record_file.write_text(json.dumps(source.exchange.record(version, identities)))
            results = _publish_at_once(target.root, record_file, tmp_path, delays)
            assert sorted(results) == [(number, False)] * (PROCESSES - 1) + [(number, True)]
            assert [v.number for v in target.log("churn")] == list(range(number, 0, -1))
        assert target.exchange.identities("churn") == identities
        assert [tuple(v.parents) for v in target.log("churn")] == [(1,), ()]
        # One commit event per version, whoever won.
        assert len(target.events("churn", action="commit")) == 2
        assert target.fsck().ok
    finally:
        source.close()
        target.close()
