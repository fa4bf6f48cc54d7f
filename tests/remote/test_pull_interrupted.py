"""A pull that breaks off: the team server killed with SIGKILL in the middle of the
download, or an object damaged on its way. The pull fails in one line and publishes
nothing; every object that arrived whole is kept, verified, and the next pull asks
only for the rest; no temp file is left behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from remote_team import MIB, Client, Team, files_of, kill_server_mid_transfer, write_random

import modelkeep
from modelkeep.errors import UsageError

SIZE = 120 * MIB  # four download batches of at most 32 MiB, fetched at once


def _temp_files(repo: modelkeep.Repo) -> list[Path]:
    tmp = repo.root / ".modelkeep" / "store" / "tmp"
    return sorted(tmp.iterdir()) if tmp.is_dir() else []


def test_kill_9_of_the_server_mid_pull_then_the_pull_again_fetches_only_the_rest(
    team: Team, client: Client, tmp_path: Path
) -> None:
    a = client("a")
    version = a.commit("big", write_random(tmp_path / "m", SIZE, seed=11), "big")
    objects = a.exchange.objects_of(version)
    a.remotes.push("big", token=team.tokens["alice"])
    b = client("b")

    # Kill the server as soon as the first of the version's large chunks is stored
    # here: each lands, renamed into place, the moment it is whole and verified.
    pull = kill_server_mid_transfer(
        team, b.root, team.tokens["reader"], ["pull", "big"], objects, b.store
    )
    out, err = pull.stdout, pull.stderr
    assert pull.returncode == 7, (out, err)
    message = err.strip()
    assert "\n" not in message, err
    assert message.startswith("error: "), err
    assert "broke off" in message, err

    # Nothing half-visible here, what arrived is intact, and no temp file is left.
    with modelkeep.Repo(b.root) as fresh:
        arrived = {oid for oid in objects if fresh.store.has(oid)}
        assert 0 < len(arrived) < len(objects), "the kill was not in the middle of the pull"
        assert fresh.models() == []
        report = fresh.fsck()
        assert report.ok, report.problems
        assert _temp_files(fresh) == []

    # Back on the same repository and port: the pull completes, fetching only the rest.
    team.restart()
    done = b.remotes.pull("big", token=team.tokens["reader"])
    assert [m.local for m in done.versions] == [1]
    assert done.objects_skipped == len(arrived)
    assert done.objects_sent == len(objects) - len(arrived)
    assert b.fsck().ok
    assert files_of(b, "big:1", tmp_path / "co-b") == files_of(a, "big:1", tmp_path / "co-a")


def test_an_object_damaged_on_the_server_is_refused_and_nothing_is_published(
    team: Team, client: Client, tmp_path: Path
) -> None:
    a = client("a")
    version = a.commit("big", write_random(tmp_path / "m", 8 * MIB, seed=12), "big")
    a.remotes.push("big", token=team.tokens["alice"])
    # The server sends objects as stored, unverified: flip the last byte of one of its
    # large chunks in its store (a folder, or S3 under MODELKEEP_TEST_ENGINE=pg-s3),
    # and the puller is the one to notice.
    sizes = a.exchange.objects_of(version)
    damaged = max(sizes, key=lambda oid: sizes[oid])
    with team.repo() as server:
        backend = server.store.backend
        key = f"objects/{damaged.fanout()}"
        data = bytearray(backend.get(key))
        data[-1] ^= 0x01
        backend.delete(key)
        backend.put(key, bytes(data))

    b = client("b")
    with pytest.raises(UsageError, match=rf"object {damaged.short}.*damaged on the way"):
        b.remotes.pull("big", token=team.tokens["reader"])
    assert b.models() == []
    assert not b.store.has(damaged)
    assert _temp_files(b) == []
    assert b.fsck().ok
