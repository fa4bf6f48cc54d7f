"""The board Ray replicas share (peers.Board) and a replica's side of it, without Ray:
the leader lease, labels reaching the other replicas, /metrics adding up."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from modelkeep.serve.peers import Board, BoardPeers, families


def test_one_leader_at_a_time_and_another_takes_over_when_it_goes_silent() -> None:
    board = Board(lease_seconds=10)
    assert board.sync("a", [], [], now=0)["leader"]
    assert not board.sync("b", [], [], now=1)["leader"]
    assert board.sync("a", [], [], now=9)["leader"]  # renewed by asking
    assert not board.sync("b", [], [], now=18)["leader"]
    assert board.sync("b", [], [], now=19.5)["leader"]  # a went silent for 10 s
    assert not board.sync("a", [], [], now=20)["leader"]


def test_a_leader_leaving_hands_over_at_once() -> None:
    board = Board(lease_seconds=10)
    board.sync("a", [], [], now=0)
    board.sync("a", [], [], now=1, leaving=True)
    assert board.sync("b", [], [], now=1.5)["leader"]


def test_labels_reach_every_other_replica_once_and_never_their_sender() -> None:
    board = Board()
    board.sync("a", [], [], now=0)
    board.sync("b", [], [], now=0)
    board.sync("a", [("b-1", 1), ("b-2", 0)], [], now=1)
    got = board.sync("b", [], [], now=2)["labels"]
    assert got == [("b-1", 1), ("b-2", 0)]
    assert board.sync("b", [], [], now=3)["labels"] == []
    assert board.sync("a", [], [], now=3)["labels"] == []  # its own, not sent back


def test_labels_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("modelkeep.serve.peers.MAX_BOARD_LABELS", 5)
    board = Board()
    board.sync("b", [], [], now=0)
    board.sync("a", [(f"x-{i}", i) for i in range(8)], [], now=1)
    assert [rid for rid, _ in board.sync("b", [], [], now=2)["labels"]] == [
        f"x-{i}" for i in range(3, 8)
    ]


def _worker(requests: float, window_rows: float) -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("reqs", "requests", ["version"], registry=registry).labels("churn:1").inc(requests)
    Gauge("rows", "rows", ["version"], registry=registry).labels("churn:1").set(window_rows)
    return registry


def test_metrics_add_up_counters_and_take_the_newest_gauge() -> None:
    board = Board()
    calls: list[Any] = []

    def call(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(args)
        return board.sync(*args, **kwargs)

    peers = {w: BoardPeers(call, w) for w in ("a", "b")}
    registries = {"a": _worker(3, 10), "b": _worker(4, 20)}
    for w, p in peers.items():
        p.attach(registries[w])
    peers["a"].sync()
    peers["b"].sync()  # b's figures are the newest on the board
    peers["a"].sync()
    text = peers["a"].exposition(registries["a"]).decode()
    assert 'reqs_total{version="churn:1"} 7.0' in text
    # a's own gauge is read now: the newest.
    assert 'rows{version="churn:1"} 10.0' in text
    assert families(registries["b"])[0][0] == "reqs"


def test_a_failed_call_keeps_the_labels_for_the_next_poll() -> None:
    board = Board()
    board.sync("b", [], [], now=0)
    failing = True

    def call(*args: Any, **kwargs: Any) -> dict[str, Any]:
        if failing:
            raise TimeoutError("coordinator away")
        return board.sync(*args, **kwargs)

    peers = BoardPeers(call, "a")
    peers.forward_label("b-1", 1)
    with pytest.raises(TimeoutError):
        peers.sync()
    assert not peers.lead()
    failing = False
    peers.sync()
    assert board.sync("b", [], [])["labels"] == [("b-1", 1)]


def test_a_follower_serves_on_when_the_coordinator_is_away(tmp_path: Any) -> None:
    """The board unreachable: the poll goes on (windows, swaps), this worker does not
    lead, and its labels wait for the next poll."""
    from modelkeep.serve.follower import Follower

    def away(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise TimeoutError("coordinator away")

    peers = BoardPeers(away, "a")
    follower = Follower(lambda: None, "churn", "production", peers=peers)  # type: ignore[arg-type, return-value]
    peers.forward_label("b-1", 1)
    follower._exchange()
    follower._exchange()
    assert not peers.lead()
    assert peers._outbox == [("b-1", 1)]
