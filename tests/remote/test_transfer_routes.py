"""The transfer routes of a real server, spoken to directly (httpx, a write token) with
what a broken or hostile client may send: damaged and truncated frames, records that
lie, versions published before their objects, names that try to leave their place,
bodies over the limit. Each is a 4xx (never a 5xx) and changes nothing there."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from remote_team import MIB, Client, Team, snapshot, write_random

import modelkeep
from modelkeep.store import ObjectId
from modelkeep.store.frames import header

RAW, ZSTD = 0, 1


def _frame(oid: ObjectId, payload: bytes, codec: int = RAW) -> bytes:
    return header(oid, codec, len(payload)) + payload


def _upload(team: Team, body: bytes, model: str = "churn") -> httpx.Response:
    return team.http(
        "POST",
        f"/models/{model}/objects",
        team.tokens["alice"],
        content=body,
        headers={"Content-Type": "application/octet-stream"},
    )


def _version(client: Client, tmp_path: Path) -> tuple[modelkeep.Repo, dict[str, Any], bytes]:
    """A client's version of churn: its record (as a push sends it) and its objects as
    one body of frames."""
    a = client("a")
    v = a.commit("churn", write_random(tmp_path / "m", 3 * MIB, seed=1), "one", metrics={"f1": 1})
    record = a.exchange.record(v, a.exchange.identities("churn"))
    body = b"".join(bytes(p) for p in a.exchange.send(sorted(a.exchange.objects_of(v))))
    return a, record, body


def test_a_damaged_or_truncated_frame_is_400_and_nothing_is_stored(team: Team) -> None:
    with team.repo() as server:
        before = snapshot(server)
    data = b"the payload sent" * 4096
    oid = ObjectId.of(data)
    cases = {
        "payload not its id": _frame(oid, data[:-1] + b"!"),
        "id of other bytes": _frame(ObjectId.of(b"other"), data),
        "unknown codec": _frame(oid, data, codec=9),
        "not zstd": _frame(oid, data, codec=ZSTD),
        "header cut short": _frame(oid, data)[:20],
        "payload cut short": _frame(oid, data)[:-100],
        "a whole frame, then a cut one": _frame(oid, data) + _frame(oid, data)[:41],
    }
    for case, body in cases.items():
        answer = _upload(team, body)
        assert answer.status_code == 400, (case, answer.text)
        assert answer.json()["error"], case
    with team.repo() as server:
        assert not server.store.has(oid)
        assert snapshot(server) == before


def test_a_batch_with_a_damaged_frame_stores_none_of_its_objects(
    team: Team, tmp_path: Path
) -> None:
    data = (write_random(tmp_path / "good", MIB, seed=2) / "weights.bin").read_bytes()
    good_id = ObjectId.of(data)
    body = _frame(good_id, data) + _frame(ObjectId.of(b"x"), b"y")
    answer = _upload(team, body)
    assert answer.status_code == 400, answer.text
    with team.repo() as server:
        assert not server.store.has(good_id)


def test_frames_that_verify_are_stored_and_answered_with_their_count(
    team: Team, client: Client, tmp_path: Path
) -> None:
    a, _, body = _version(client, tmp_path)
    objects = a.exchange.objects_of(a.resolve("churn:1"))
    answer = _upload(team, body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["objects"] == len(objects)  # its chunks, manifest and tree
    assert answer.json()["bytes"] >= 3 * MIB
    with team.repo() as server:
        assert all(server.store.has(oid) for oid in objects)


def test_publish_checks_the_record_and_that_its_objects_are_there(
    team: Team, client: Client, tmp_path: Path
) -> None:
    _, record, body = _version(client, tmp_path)
    alice = team.tokens["alice"]
    with team.repo() as server:
        before = snapshot(server)

    # Before its objects are there: 409, nothing published.
    early = team.http("POST", "/models/churn/versions", alice, json=record)
    assert early.status_code == 409, early.text
    assert "send them" in early.json()["error"]
    with team.repo() as server:
        assert snapshot(server) == before

    assert _upload(team, body).status_code == 200
    with team.repo() as server:
        uploaded = snapshot(server)
    lies = {
        "message": {**record, "message": "not what was committed"},
        "metrics": {**record, "metrics": {"f1": 0.1}},
        "author": {**record, "author": "mallory"},
        "identity": {**record, "identity": "0" * 64},
        "size": {**record, "size": record["size"] + 1},
        "no tree": {k: v for k, v in record.items() if k != "tree_id"},
        "bad tree id": {**record, "tree_id": "../../etc/passwd"},
        "naive time": {**record, "created_at": "2026-01-01T00:00:00"},
        "other model": {**record, "model": "fraud"},
        "escaping branch": {**record, "branch": "../main"},
    }
    for case, doc in lies.items():
        answer = team.http("POST", "/models/churn/versions", alice, json=doc)
        assert 400 <= answer.status_code < 500, (case, answer.text)
        assert answer.status_code == 400, (case, answer.text)
    with team.repo() as server:
        assert snapshot(server) == uploaded

    made = team.http("POST", "/models/churn/versions", alice, json=record)
    assert made.status_code == 201, made.text
    assert made.json()["created"] is True
    assert made.json()["identity"] == record["identity"]
    again = team.http("POST", "/models/churn/versions", alice, json=record)
    assert again.json()["created"] is False
    with team.repo() as server:
        assert [v.number for v in server.log("churn")] == [1]
        assert server.resolve("churn:1").message == "one"


def test_names_that_try_to_escape_are_4xx_and_create_nothing(
    team: Team, client: Client, tmp_path: Path
) -> None:
    _, record, body = _version(client, tmp_path)
    alice = team.tokens["alice"]
    outside = sorted(p for p in tmp_path.parent.rglob("*") if team.root not in p.parents)
    with team.repo() as server:
        before = snapshot(server)
    names = ["../x", "a/b", "%2e%2e", "..", "..%2Fx", "%2E%2E%2F%2E%2E%2Fetc", "a%00b", "%2Fetc"]
    ids = {"ids": [record["tree_id"]]}
    for name in names:
        for method, path, kw in (
            ("GET", f"/models/{name}/identities", {}),
            ("POST", f"/models/{name}/objects/missing", {"json": ids}),
            ("POST", f"/models/{name}/objects", {"content": body}),
            ("POST", f"/models/{name}/objects/get", {"json": ids}),
            ("POST", f"/models/{name}/versions", {"json": {**record, "model": name}}),
            ("GET", f"/versions/{name}:1/record", {}),
        ):
            answer = team.http(method, path, alice, **kw)
            assert 400 <= answer.status_code < 500, (method, path, answer.status_code, answer.text)
    with team.repo() as server:
        assert snapshot(server) == before
    assert sorted(p for p in tmp_path.parent.rglob("*") if team.root not in p.parents) == outside


def test_an_upload_over_the_limit_is_413_while_it_streams(team: Team) -> None:
    from modelkeep.server.transfer import MAX_UPLOAD

    sent = 0

    def zeros() -> Iterator[bytes]:  # up to 400 MiB, no Content-Length, 1 MiB in memory
        nonlocal sent
        chunk = bytes(MIB)
        for _ in range(400):
            sent += len(chunk)
            yield chunk

    with team.repo() as server:
        before = snapshot(server)
    answer = _upload(team, zeros())  # type: ignore[arg-type]
    assert answer.status_code == 413, answer.text
    assert "larger than" in answer.json()["error"]
    # Refused once past the limit, not after reading the whole body.
    assert MAX_UPLOAD < sent < MAX_UPLOAD + 40 * MIB, sent
    assert team.http("GET", "/health", None).status_code == 200
    with team.repo() as server:
        assert snapshot(server) == before


def _fraud(tmp_path: Path) -> Callable[[modelkeep.Repo], None]:
    def setup(repo: modelkeep.Repo) -> None:
        repo.commit("fraud", write_random(tmp_path / "f", 600_000, seed=3), "f")

    return setup


def test_objects_are_given_only_if_all_are_there_and_the_model_readable(
    start: Callable[..., Team], tmp_path: Path
) -> None:
    team = start(_fraud(tmp_path))
    reader = team.tokens["reader"]
    # As a pull asks: the record (with the objects it needs), then the objects.
    record = team.http("GET", "/versions/fraud:1/record", reader)
    assert record.status_code == 200, record.text
    objects = sorted(record.json()["objects"])
    with team.repo() as server:
        assert objects == sorted(
            o.hex for o in server.exchange.objects_of(server.resolve("fraud:1"))
        )
    got = team.http("POST", "/models/fraud/objects/get", reader, json={"ids": objects})
    assert got.status_code == 200, got.text
    assert len(got.content) > 600_000
    lacking = team.http(
        "POST", "/models/fraud/objects/get", reader, json={"ids": [*objects, "ab" * 32]}
    )
    assert lacking.status_code == 404, lacking.text
    hidden = team.http(
        "POST", "/models/fraud/objects/get", team.tokens["carol"], json={"ids": objects}
    )
    assert hidden.status_code == 404, hidden.text
    assert "fraud" not in hidden.text
    bad = team.http("POST", "/models/fraud/objects/missing", reader, json={"ids": ["zz"]})
    assert 400 <= bad.status_code < 500


def test_a_just_started_server_gives_its_packed_objects(
    start: Callable[..., Team], tmp_path: Path
) -> None:
    team = start(_fraud(tmp_path))
    with team.repo() as server:
        objects = sorted(o.hex for o in server.exchange.objects_of(server.resolve("fraud:1")))
    got = team.http(
        "POST", "/models/fraud/objects/get", team.tokens["reader"], json={"ids": objects}
    )
    assert got.status_code == 200, got.text


def test_a_token_limited_to_some_models_gets_only_objects_their_versions_need(
    start: Callable[..., Team], tmp_path: Path
) -> None:
    def setup(repo: modelkeep.Repo) -> None:
        repo.commit("fraud", write_random(tmp_path / "f", 600_000, seed=3), "f")
        repo.commit("churn", write_random(tmp_path / "c", 600_000, seed=4), "c")

    team = start(setup)
    carol = team.tokens["carol"]  # write on churn* only

    def objects_of(rev: str) -> list[str]:
        with team.repo() as server:
            return sorted(o.hex for o in server.exchange.objects_of(server.resolve(rev)))

    def get(ids: list[str]) -> httpx.Response:
        return team.http("POST", "/models/churn/objects/get", carol, json={"ids": ids})

    churn, fraud = objects_of("churn:1"), objects_of("fraud:1")
    assert not set(churn) & set(fraud)
    assert get(churn).status_code == 200
    # fraud's objects asked for under churn, whose versions do not need them: answered
    # as objects the server lacks, neither their bytes nor that they are here.
    absent = get([*churn, "ab" * 32])
    assert absent.json()["error"].startswith("1 of the objects asked for are not here")
    for ids, outside in ((fraud, len(fraud)), ([*churn, fraud[0]], 1)):
        refused = get(ids)
        assert refused.status_code == absent.status_code == 404, refused.text
        assert refused.json()["error"] == absent.json()["error"].replace(
            "1 of", f"{outside} of"
        ).replace("ab" * 6, fraud[0][:12])
    # An unlimited token is not asked which model needs them.
    assert (
        team.http(
            "POST", "/models/churn/objects/get", team.tokens["reader"], json={"ids": fraud}
        ).status_code
        == 200
    )
    # Once a version of churn needs those bytes too (a copy of fraud's file), they are
    # churn's as well: the server walks the version added since it last looked.
    with team.repo() as server:
        server.commit("churn", tmp_path / "f", "fraud's weights, reused")
    shared = sorted(set(objects_of("churn:2")) & set(fraud))
    assert shared
    got = get(shared)
    assert got.status_code == 200, got.text
    assert len(got.content) > 500_000
