"""A team server killed with SIGKILL in the middle of a push: the push fails in one
line (unreachable, exit 7), the server's repository shows no part of the version and
checks clean, and once the server is back the same push completes without sending
again any object that had arrived."""

from __future__ import annotations

from pathlib import Path

from remote_team import (
    MIB,
    Client,
    Team,
    files_of,
    kill_server_mid_transfer,
    snapshot,
    write_random,
)

SIZE = 80 * MIB  # three upload batches of at most 32 MiB, sent at once


def test_kill_9_of_the_server_mid_push_then_the_push_again_sends_only_the_rest(
    team: Team, client: Client, tmp_path: Path
) -> None:
    a = client("a")
    version = a.commit("big", write_random(tmp_path / "m", SIZE, seed=7), "big")
    objects = a.exchange.objects_of(version)
    assert len(objects) > 40  # many chunks
    with team.repo() as server:
        before = snapshot(server)
        assert not any(server.store.has(oid) for oid in objects)

    # Kill the server as soon as the first of the version's objects is stored there
    # (large chunks land one by one while a batch is received; its pack of small
    # objects, last). A batch whose pack had landed too would be asked for again:
    # see test_a_restarted_server_does_not_ask_again_for_objects_it_has.
    with team.repo() as server:
        push = kill_server_mid_transfer(
            team, a.root, team.tokens["alice"], ["push", "big"], objects, server.store
        )
    out, err = push.stdout, push.stderr
    assert push.returncode == 7, (out, err)
    assert out == ""
    message = err.strip()
    assert "\n" not in message, err
    assert message.startswith("error: "), err
    assert "cannot be reached" in message, err

    # Nothing half-visible: no version, no ref, no event; what did arrive is intact.
    with team.repo() as server:
        arrived = {oid for oid in objects if server.store.has(oid)}
        assert 0 < len(arrived) < len(objects), "the kill was not in the middle of the push"
        after = snapshot(server)
        assert (after.versions, after.refs, after.events) == (
            before.versions,
            before.refs,
            before.events,
        )
        assert server.models() == []
        report = server.fsck()
        assert report.ok, report.problems
    assert a.remotes.mapping("origin", "big") == {}

    # Back on the same repository and port: the push completes, sending only the rest.
    team.restart()
    done = a.remotes.push("big", token=team.tokens["alice"])
    assert done.new_versions == 1
    assert done.objects_skipped == len(arrived)
    assert done.objects_sent == len(objects) - len(arrived)
    rest = sum(size for oid, size in objects.items() if oid not in arrived)  # chunk bytes
    assert rest <= done.bytes_sent <= rest + 64 * 1024  # + its manifest and tree
    with team.repo() as server:
        assert server.resolve("big:1") == version
        assert server.fsck().ok
        assert files_of(server, "big:1", tmp_path / "co-s") == files_of(
            a, "big:1", tmp_path / "co-a"
        )
