"""gc on the team server's repository between a push's upload and its publishing: the
uploaded objects are referenced by nothing yet, so gc takes them; the server refuses
to publish a version without its objects (409, ObjectsNotHereError); the client sends
them again and publishes once more, so an admin's gc never fails a push or a commit
over HTTP. The gc is real, on the server's store while it runs; only its moment is
forced (it runs right after the upload), by wrapping the client's upload."""

from __future__ import annotations

from pathlib import Path

import pytest
from remote_team import MIB, Client, Team, files_of, write_random

import modelkeep
from modelkeep.remote import transfer
from modelkeep.results import GcReport


def _gc_after_first_upload(team: Team, monkeypatch: pytest.MonkeyPatch) -> list[GcReport]:
    real = transfer.upload
    collected: list[GcReport] = []

    def upload_then_gc(*args: object, **kw: object) -> transfer.Moved:
        moved = real(*args, **kw)  # type: ignore[arg-type]
        if not collected:
            with team.repo() as server:
                collected.append(server.gc())
        return moved

    monkeypatch.setattr(transfer, "upload", upload_then_gc)
    return collected


def test_a_push_whose_objects_gc_took_before_publishing_sends_them_again(
    team: Team, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = client("a")
    version = a.commit("big", write_random(tmp_path / "m", 4 * MIB, seed=21), "big")
    objects = a.exchange.objects_of(version)
    collected = _gc_after_first_upload(team, monkeypatch)

    done = a.remotes.push("big", token=team.tokens["alice"])

    assert collected[0].objects_removed >= len(objects) - 1  # small ones share a pack
    assert [m.new for m in done.versions] == [True]
    with team.repo() as server:
        assert server.resolve("big:1") == version
        assert server.fsck().ok
        assert files_of(server, "big:1", tmp_path / "co-s") == files_of(
            a, "big:1", tmp_path / "co-a"
        )


def test_a_commit_over_http_whose_objects_gc_took_is_sent_again(
    team: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collected = _gc_after_first_upload(team, monkeypatch)
    folder = write_random(tmp_path / "m", 2 * MIB, seed=22)
    with modelkeep.Repo.open(team.url, token=team.tokens["alice"]) as remote:
        version = remote.commit("over", folder, "over http")
    assert collected[0].objects_removed > 0
    with team.repo() as server:
        assert server.resolve("over:1").tree_id == version.tree_id
        assert server.fsck().ok
