"""``TokenCheck`` with a change mark (the team server's, on either engine): a verified token is
remembered only while the registry is unchanged, so a revocation by any process is seen
at the next request; a registry that changed for another reason only costs one more
verification. Without a mark, the time bound is the only one (test_guard.py)."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

import modelkeep
from modelkeep.access.guard import TokenCheck
from modelkeep.errors import AuthenticationError
from modelkeep.registry.changes import ChangeMark, CountMark, mark_of

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[modelkeep.Repo]:
    with modelkeep.Repo.init(tmp_path / "repo") as r:
        yield r


def checked(repo: modelkeep.Repo) -> tuple[TokenCheck, ChangeMark | CountMark]:
    mark = mark_of(repo.registry)  # SQLite's data_version, PostgreSQL's count of writes
    assert mark is not None
    return TokenCheck.over(repo.tokens, changes=mark), mark


def test_a_token_revoked_by_another_process_is_not_remembered(repo: modelkeep.Repo) -> None:
    token, plaintext = repo.tokens.create("alice", "read")
    check, mark = checked(repo)
    check.verify(plaintext)
    check.verify(plaintext)  # the first may have written last_used_at: asked again once
    assert check.cached(plaintext) is not None
    assert check.cached(plaintext) is not None
    script = "import modelkeep, sys; r = modelkeep.Repo(sys.argv[1]); r.tokens.revoke(sys.argv[2])"
    subprocess.run([sys.executable, "-c", script, str(repo.root), token.id], check=True)
    assert check.cached(plaintext) is None
    with pytest.raises(AuthenticationError, match="revoked"):
        check.verify(plaintext)
    check.close()
    mark.close()
    assert repo.tokens.get(token.id).revoked_at is not None  # the engine is the caller's


def test_any_other_change_costs_one_verification(
    repo: modelkeep.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, plaintext = repo.tokens.create("alice", "read")
    check, mark = checked(repo)
    check.verify(plaintext)
    check.verify(plaintext)
    asked = []
    verify = repo.tokens.verify
    monkeypatch.setattr(repo.tokens, "verify", lambda p: asked.append(p) or verify(p))
    for _ in range(5):
        assert (check.cached(plaintext) or check.verify(plaintext)).user == "alice"
    assert asked == []
    repo.tokens.create("bob", "read")  # another token: the registry changed
    for _ in range(5):
        assert (check.cached(plaintext) or check.verify(plaintext)).user == "alice"
    assert len(asked) == 1
    check.close()
    mark.close()
