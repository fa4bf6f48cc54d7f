"""What endpoints taking tokens share (``modelkeep.access.guard``): the bearer header, the
limit on failed attempts per address, and ``TokenCheck`` — verified tokens remembered
for a bounded time, on a real repository."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

import modelkeep
from modelkeep._engine import Engine
from modelkeep.access import guard
from modelkeep.access.guard import FailureLimiter, TokenCheck, TooManyFailures, bearer
from modelkeep.errors import AuthenticationError, ModelkeepError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[modelkeep.Repo]:
    with modelkeep.Repo.init(tmp_path / "repo") as r:
        yield r


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counted:
    """An engine factory counting the registry reads of ``Tokens.verify``."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.opened = 0
        self.verified = 0
        real = guard.Tokens.verify

        def counting(tokens: guard.Tokens, plaintext: str) -> object:
            self.verified += 1
            return real(tokens, plaintext)

        monkeypatch.setattr(guard.Tokens, "verify", counting)

    def __call__(self) -> Engine:
        self.opened += 1
        return Engine.open(self.root)


def test_bearer_takes_the_token_of_a_bearer_header_only() -> None:
    assert bearer("Bearer abc") == "abc"
    assert bearer("bearer  abc ") == "abc"  # the scheme is case-insensitive
    for header in (None, "", "Bearer", "Bearer  ", "Token abc", "abc", "Basic abc"):
        with pytest.raises(AuthenticationError, match="Authorization: Bearer"):
            bearer(header)


def test_the_limiter_refuses_an_address_after_its_failures_until_the_window_passes() -> None:
    limiter = FailureLimiter(limit=3, window=60)
    for t in range(3):
        limiter.check("10.0.0.1", now=t)
        limiter.failed("10.0.0.1", "wrong", now=t)
    with pytest.raises(TooManyFailures) as info:
        limiter.check("10.0.0.1", now=10)
    assert info.value.retry_after == pytest.approx(50)
    limiter.check("10.0.0.2", now=10)  # another address is not held
    limiter.check("10.0.0.1", now=60.5)  # the first failure left the window


def test_the_team_server_takes_the_same_limiter() -> None:
    from modelkeep.server import auth

    assert auth.FailureLimiter is FailureLimiter
    assert auth.TooManyFailures is TooManyFailures
    assert auth.bearer is bearer


def test_a_verified_token_is_remembered_and_the_registry_asked_once(
    repo: modelkeep.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, plaintext = repo.tokens.create("alice", "write", "churn*")
    engines = Counted(repo.root, monkeypatch)
    check = TokenCheck(engines)
    assert check.cached(plaintext) is None
    for _ in range(50):
        token = check.cached(plaintext) or check.verify(plaintext)
        assert (token.user, token.scope) == ("alice", "write")
    assert (engines.opened, engines.verified) == (1, 1)
    # Keyed by a hash of what the client sent, never by the token itself.
    assert all(plaintext not in key for key in check._cache)
    check.close()


def test_a_revoked_token_works_at_most_the_bound_longer(
    repo: modelkeep.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, plaintext = repo.tokens.create("alice", "write", "churn*")
    clock = Clock()
    check = TokenCheck(lambda: Engine.open(repo.root), seconds=30, clock=clock)
    check.verify(plaintext)
    repo.tokens.revoke(token.id, "left the team")
    clock.now += 29.9
    assert check.cached(plaintext) is not None  # the documented bound
    assert check.verify(plaintext).id == token.id
    clock.now += 0.2
    assert check.cached(plaintext) is None
    with pytest.raises(AuthenticationError, match="revoked"):
        check.verify(plaintext)
    check.close()


def test_forget_asks_the_registry_again_at_once(repo: modelkeep.Repo) -> None:
    token, plaintext = repo.tokens.create("alice", "write")
    check = TokenCheck(lambda: Engine.open(repo.root))
    check.verify(plaintext)
    repo.tokens.revoke(token.id)
    check.forget()
    with pytest.raises(AuthenticationError, match="revoked"):
        check.verify(plaintext)
    check.close()


def test_failures_are_not_remembered(repo: modelkeep.Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    token, plaintext = repo.tokens.create("alice", "write")
    wrong = plaintext[:-4] + ("AAAA" if not plaintext.endswith("AAAA") else "BBBB")
    engines = Counted(repo.root, monkeypatch)
    check = TokenCheck(engines)
    for _ in range(3):
        with pytest.raises(AuthenticationError, match="unknown token, or a wrong secret"):
            check.verify(wrong)
    assert engines.verified == 3
    assert check.verify(plaintext).id == token.id
    check.close()


def test_the_memory_is_bounded(repo: modelkeep.Repo) -> None:
    plaintexts = [repo.tokens.create(f"user{i}", "read")[1] for i in range(5)]
    check = TokenCheck(lambda: Engine.open(repo.root), size=3)
    for p in plaintexts:
        check.verify(p)
    assert len(check._cache) == 3
    assert check.cached(plaintexts[0]) is None
    assert check.cached(plaintexts[-1]) is not None
    check.close()


def test_tokens_arriving_together_ask_the_registry_once(
    repo: modelkeep.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, plaintext = repo.tokens.create("alice", "write")
    engines = Counted(repo.root, monkeypatch)
    check = TokenCheck(engines)
    barrier = threading.Barrier(8)
    users: list[str] = []

    def one() -> None:
        barrier.wait()
        users.append(check.verify(plaintext).user)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert users == ["alice"] * 8
    assert engines.verified == 1
    check.close()


def test_a_registry_out_of_reach_is_not_an_authentication_failure(repo: modelkeep.Repo) -> None:
    _, plaintext = repo.tokens.create("alice", "write")
    calls = 0

    def flaky() -> Engine:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ModelkeepError("the registry is out of reach")
        return Engine.open(repo.root)

    check = TokenCheck(flaky)
    with pytest.raises(ModelkeepError, match="out of reach") as info:
        check.verify(plaintext)
    assert not isinstance(info.value, AuthenticationError)
    assert check.verify(plaintext).user == "alice"  # opened again
    check.close()
