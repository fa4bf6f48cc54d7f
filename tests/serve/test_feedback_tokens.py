"""Feedback takes the repository's tokens, on real servers: a token with write scope on
the served model posts labels; a read token, or one for other models, is refused (403);
no token, an unknown, revoked or expired one is a 401; an address failing too often
waits (429). Verified tokens are remembered for a bounded time."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from modelkeep.access.guard import CACHE_SECONDS, FailureLimiter

if TYPE_CHECKING:
    import httpx

    import modelkeep

FEEDBACK = "/v2/models/churn/feedback"


@pytest.fixture(autouse=True)
def _fresh_limits(server: Any) -> None:
    """Each test starts with no failures counted and no token remembered (they share the
    module's server)."""
    served = server.app.state.served
    served.limiter = FailureLimiter()
    served.tokens.forget()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def predicted(server: Any, data: Any, rows: int = 2) -> tuple[str, list[int]]:
    """The id of a fresh prediction and its true labels."""
    r = server.predict(data.x[:rows].tolist())
    assert r.status_code == 200, r.text
    return r.json()["id"], data.y[:rows].tolist()


def one_line_error(r: httpx.Response, status: int, *words: str) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    message = r.json()["error"]
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)
    return str(message)


def test_a_write_token_posts_labels(server: Any, churn_repo: modelkeep.Repo, data: Any) -> None:
    _, token = churn_repo.tokens.create("alice", "write", "churn*")
    rid, truth = predicted(server, data)
    r = server.http.post(FEEDBACK, json={"id": rid, "value": truth}, headers=bearer(token))
    assert (r.status_code, r.json()) == (200, {"joined": 2, "unknown_ids": 0})
    # Joined once: the same id again has nothing left to join.
    r = server.http.post(FEEDBACK, json={"id": rid, "value": truth}, headers=bearer(token))
    assert (r.status_code, r.json()) == (404, {"joined": 0, "unknown_ids": 1})
    # Admin includes write; a pattern naming the model exactly reaches it.
    for scope, models in (("admin", "*"), ("write", "churn")):
        _, other = churn_repo.tokens.create("bob", scope, models)
        rid, truth = predicted(server, data)
        r = server.http.post(FEEDBACK, json={"id": rid, "value": truth}, headers=bearer(other))
        assert r.json() == {"joined": 2, "unknown_ids": 0}, (scope, models)


def test_a_read_token_is_403_and_joins_nothing(
    server: Any, churn_repo: modelkeep.Repo, data: Any
) -> None:
    read, plaintext = churn_repo.tokens.create("carol", "read", "churn*")
    rid, truth = predicted(server, data)
    r = server.http.post(FEEDBACK, json={"id": rid, "value": truth}, headers=bearer(plaintext))
    message = one_line_error(r, 403, read.id, "may only read churn", "write scope on churn")
    assert plaintext not in message
    assert "WWW-Authenticate" not in r.headers  # authenticated, not allowed
    # Nothing was joined: the labels still join, with a write token.
    _, write = churn_repo.tokens.create("alice", "write", "churn")
    r = server.http.post(FEEDBACK, json={"id": rid, "value": truth}, headers=bearer(write))
    assert r.json() == {"joined": 2, "unknown_ids": 0}


def test_a_token_for_other_models_is_403(
    server: Any, churn_repo: modelkeep.Repo, data: Any
) -> None:
    """The client predicts with this server's model, so it knows its name: a token that
    does not reach it is refused as such (403), not answered as a missing model."""
    rid, truth = predicted(server, data)
    for scope, models in (("write", "fraud*"), ("admin", "churn-?"), ("write", "CHURN")):
        other, plaintext = churn_repo.tokens.create("dave", scope, models)
        r = server.http.post(FEEDBACK, json={"id": rid, "value": truth}, headers=bearer(plaintext))
        one_line_error(r, 403, other.id, "does not reach model churn", f"for {models}")
    # A 403 is no failed authentication: the address is not held.
    _, write = churn_repo.tokens.create("alice", "write", "churn")
    r = server.http.post(FEEDBACK, json={"id": rid, "value": truth}, headers=bearer(write))
    assert r.json() == {"joined": 2, "unknown_ids": 0}


def test_no_token_or_one_that_does_not_verify_is_401(
    server: Any, churn_repo: modelkeep.Repo, data: Any
) -> None:
    token, plaintext = churn_repo.tokens.create("alice", "write", "churn")
    wrong_secret = f"mkt_{token.id}_{'A' * 43}"
    unknown_id = f"mkt_{'0' * 20}_{plaintext.split('_', 2)[2]}"
    rid, truth = predicted(server, data)
    for headers, says in (
        ({}, "feedback needs a token with write scope on churn"),
        ({"Authorization": "Bearer"}, "Authorization: Bearer <token>"),
        ({"Authorization": plaintext}, "Authorization: Bearer <token>"),  # no scheme
        ({"Authorization": f"Basic {plaintext}"}, "Authorization: Bearer <token>"),
        ({"X-Feedback-Token": plaintext}, "Authorization: Bearer <token>"),
        (bearer("not-a-token"), "not a modelkeep token"),
        (bearer(wrong_secret), "unknown token, or a wrong secret"),
        (bearer(unknown_id), "unknown token, or a wrong secret"),
    ):
        r = server.http.post(FEEDBACK, json={"id": rid, "value": truth}, headers=headers)
        message = one_line_error(r, 401, says, "Authorization: Bearer <token>")
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert plaintext.split("_", 2)[2] not in message
    r = server.http.post(FEEDBACK, json={"id": rid, "value": truth}, headers=bearer(plaintext))
    assert r.json() == {"joined": 2, "unknown_ids": 0}, "a refused label was joined"


def test_a_revoked_token_is_401_at_once_or_within_the_bound(
    server: Any, churn_repo: modelkeep.Repo, data: Any
) -> None:
    tokens = server.app.state.served.tokens
    assert tokens.seconds == CACHE_SECONDS == 30  # what README promises
    # Revoked before this server ever saw it: refused at once.
    early, early_plain = churn_repo.tokens.create("erin", "write", "churn")
    churn_repo.tokens.revoke(early.id, "lost")
    rid, truth = predicted(server, data)
    r = server.http.post(FEEDBACK, json={"id": rid, "value": truth}, headers=bearer(early_plain))
    one_line_error(r, 401, f"token {early.id} was revoked")
    token, plaintext = churn_repo.tokens.create("alice", "write", "churn")
    r = server.http.post(FEEDBACK, json={"id": rid, "value": truth}, headers=bearer(plaintext))
    assert r.status_code == 200
    churn_repo.tokens.revoke(token.id, "left the team")
    rid, truth = predicted(server, data)
    r = server.http.post(FEEDBACK, json={"id": rid, "value": truth}, headers=bearer(plaintext))
    if churn_repo.registry.file is not None:
        # Seen, then revoked by another process: a SQLite registry's change mark moved,
        # so the next request asks again and is refused.
        one_line_error(r, 401, f"token {token.id} was revoked")
        return
    # Without a mark (PostgreSQL), taken while remembered (at most CACHE_SECONDS)...
    assert r.status_code == 200
    # ...and refused once the memory of it ends (moved forward here, not waited for).
    now = time.monotonic()
    tokens._clock = lambda: now + CACHE_SECONDS
    try:
        rid, truth = predicted(server, data)
        r = server.http.post(FEEDBACK, json={"id": rid, "value": truth}, headers=bearer(plaintext))
        one_line_error(r, 401, f"token {token.id} was revoked")
    finally:
        tokens._clock = time.monotonic


def test_an_expired_token_is_401_even_while_remembered(
    server: Any, churn_repo: modelkeep.Repo, data: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Remembered by time alone: on SQLite the serving process's own writes (its first
    # use recorded, heartbeats) would move the change mark and make it ask again.
    monkeypatch.setattr(server.app.state.served.tokens, "_changes", None)
    token, plaintext = churn_repo.tokens.create("alice", "write", "churn", expires=1)
    rid, truth = predicted(server, data)
    r = server.http.post(FEEDBACK, json={"id": rid, "value": [truth[0]]}, headers=bearer(plaintext))
    assert r.status_code == 400  # authenticated: the body was read (one label for two rows)
    time.sleep(1.1)
    assert server.app.state.served.tokens.cached(plaintext) is not None
    r = server.http.post(FEEDBACK, json={"id": rid, "value": truth}, headers=bearer(plaintext))
    one_line_error(r, 401, f"token {token.id} is expired")


def test_failed_authentications_are_limited_per_address(
    server: Any, churn_repo: modelkeep.Repo, data: Any
) -> None:
    _, plaintext = churn_repo.tokens.create("alice", "write", "churn")
    rid, truth = predicted(server, data)
    body = {"id": rid, "value": truth}
    codes = [
        server.http.post(FEEDBACK, json=body, headers=bearer("mkt_0_nope")).status_code
        for _ in range(11)
    ]
    assert codes == [401] * 10 + [429]
    # The address waits, right token or not, until the window passes.
    r = server.http.post(FEEDBACK, json=body, headers=bearer(plaintext))
    one_line_error(r, 429, "too many failed authentications", "retry in")
    assert 0 < int(r.headers["Retry-After"]) <= 60
    # Predictions are not held.
    assert server.predict(data.x[:1].tolist()).status_code == 200
    server.app.state.served.limiter = FailureLimiter()
    r = server.http.post(FEEDBACK, json=body, headers=bearer(plaintext))
    assert r.json() == {"joined": 2, "unknown_ids": 0}


def test_a_busy_feedback_endpoint_asks_the_registry_once_per_token(
    server: Any, churn_repo: modelkeep.Repo, data: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelkeep.access import guard

    _, plaintext = churn_repo.tokens.create("alice", "write", "churn")
    asked = 0
    real = guard.Tokens.verify

    def counting(self: guard.Tokens, text: str) -> Any:
        nonlocal asked
        asked += 1
        return real(self, text)

    monkeypatch.setattr(guard.Tokens, "verify", counting)
    for _ in range(30):
        rid, truth = predicted(server, data, rows=1)
        r = server.http.post(FEEDBACK, json={"id": rid, "value": truth}, headers=bearer(plaintext))
        assert r.status_code == 200, r.text
    if churn_repo.registry.file is None:
        assert asked == 1
    else:
        # Asked again after each change of the registry (SQLite's change mark): the
        # token's first use recorded, a heartbeat of the serving process — not per request.
        assert 1 <= asked <= 3
