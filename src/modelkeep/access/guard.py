"""Guarding an HTTP endpoint with the repository's tokens, for every face that takes
them (the team server, the inference server's feedback): the bearer of a request, a
limit on failed attempts per client address (so a token cannot be guessed online), and
a short memory of verified tokens (so a busy endpoint does not read the registry per
request).

A failure is logged with the address and the reason, never with what was sent.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelkeep.access.tokens import Tokens
from modelkeep.errors import AuthenticationError, ModelkeepError

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

    from modelkeep._engine import Engine
    from modelkeep.registry.changes import ChangeMark, CountMark
    from modelkeep.registry.records import Token

log = logging.getLogger("modelkeep.access")

# Failed authentications an address may make within WINDOW seconds before it waits.
MAX_FAILURES = 10
WINDOW = 60.0
# Addresses remembered (the oldest forgotten first): bounded under a scan of many.
MAX_ADDRESSES = 10_000
# How long a verified token is taken without asking the registry again: the longest a
# token revoked elsewhere keeps working on an endpoint that has just seen it.
CACHE_SECONDS = 30.0
# Verified tokens remembered (the oldest forgotten first).
MAX_CACHED = 1024


class TooManyFailures(ModelkeepError):
    """Answered 429 with Retry-After."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            f"too many failed authentications from this address: retry in {retry_after:.0f} s"
        )
        self.retry_after = retry_after


@dataclass
class FailureLimiter:
    """At most ``limit`` failed authentications per address per ``window`` seconds."""

    limit: int = MAX_FAILURES
    window: float = WINDOW

    def __post_init__(self) -> None:
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, address: str, now: float | None = None) -> None:
        """Refuse an address that failed too often lately (TooManyFailures)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = self._recent(address, now)
            if recent is not None and len(recent) >= self.limit:
                raise TooManyFailures(recent[0] + self.window - now)

    def failed(self, address: str, reason: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = self._recent(address, now)
            if recent is None:
                recent = self._failures[address] = deque()
                while len(self._failures) > MAX_ADDRESSES:
                    self._failures.pop(next(iter(self._failures)))
            recent.append(now)
        log.warning("authentication failed from %s: %s", address, reason)

    def _recent(self, address: str, now: float) -> deque[float] | None:
        recent = self._failures.get(address)
        if recent is not None:
            while recent and recent[0] <= now - self.window:
                recent.popleft()
        return recent


def bearer(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer …`` header (AuthenticationError if none)."""
    if not authorization:
        raise AuthenticationError("this server needs a token: send Authorization: Bearer <token>")
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthenticationError("send the token as Authorization: Bearer <token>")
    return value.strip()


def _no_engine() -> Engine:
    raise AssertionError("a TokenCheck over given tokens opens no engine")


def _key(plaintext: str) -> str:
    # What a client sent is not kept as a key: its SHA-256 is (and a lookup's timing
    # then tells a guesser nothing about a real token).
    return hashlib.sha256(plaintext.encode("utf-8", "surrogatepass")).hexdigest()


class TokenCheck:
    """The tokens of one repository as an endpoint checks them: verified against its
    registry (``Tokens.verify``), and a verified token remembered for ``seconds``, keyed
    by the SHA-256 of what the client sent.

    The memory is the price of not reading the registry per request: a token revoked
    elsewhere keeps working here for up to ``seconds`` after this endpoint last asked
    (``forget`` ends that at once). With ``changes`` (a ``ChangeMark`` of the registry,
    which moves on any commit by anyone), a token is remembered only while the registry
    is unchanged since it was verified, so a revocation from any process is seen at the
    next request. Expiry is exact: ``Tokens.allows`` reads the clock (a caller checks
    ``Token.state()`` of what it gets).
    Failures are never remembered: each one asks the registry (the ``FailureLimiter``
    bounds them per address)."""

    def __init__(
        self,
        open_engine: Callable[[], Engine],
        seconds: float = CACHE_SECONDS,
        size: int = MAX_CACHED,
        clock: Callable[[], float] = time.monotonic,
        changes: Callable[[], Hashable | None] | None = None,
    ) -> None:
        self._open = open_engine
        self.seconds = seconds
        self.size = size
        self._clock = clock
        self._changes = changes
        self._engine: Engine | None = None
        self._tokens: Tokens | None = None
        self._owns_engine = True
        self._owned_mark: ChangeMark | CountMark | None = None
        # One verification at a time: requests arriving together with a new token ask
        # the registry once, and Tokens.verify may write last_used_at.
        self._lock = threading.Lock()
        # key → (remembered until, the registry's mark when verified, the token)
        self._cache: dict[str, tuple[float, Hashable | None, Token]] = {}

    @classmethod
    def watching(cls, open_engine: Callable[[], Engine]) -> TokenCheck:
        """A check over the repository ``open_engine`` opens, with the registry's change
        mark (``registry.changes.mark_of``): a token revoked by any process is refused
        at the next request. In memory, the time bound."""
        from modelkeep.registry.changes import mark_of

        probe = open_engine()
        try:
            mark = mark_of(probe.ctx.registry)
        finally:
            probe.close()
        check = cls(open_engine, changes=mark)
        check._owned_mark = mark  # closed with the check: its connection is the check's
        return check

    @classmethod
    def over(
        cls,
        tokens: Tokens,
        seconds: float = CACHE_SECONDS,
        changes: Callable[[], Hashable | None] | None = None,
    ) -> TokenCheck:
        """A check over an open repository's ``tokens`` (its engine is the caller's:
        never closed here), as the team server has one."""
        check = cls(_no_engine, seconds, changes=changes)
        check._tokens, check._owns_engine = tokens, False
        return check

    def cached(self, plaintext: str, mark: Hashable | None = None) -> Token | None:
        """The token ``plaintext`` was verified as, if that still holds, or None.
        Never waits long (a change mark is read in microseconds on SQLite, one round
        trip on PostgreSQL): an async handler calls it on its event loop. ``mark``: the
        check's change mark as the caller has just read it, not read again here."""
        return self._fresh(self._cache.get(_key(plaintext)), mark)

    def verify(self, plaintext: str) -> Token:
        """The token ``plaintext`` is (AuthenticationError if none), remembered or asked
        of the registry — blocking: call it from a thread, not an event loop. Any other
        ModelkeepError means the registry could not answer (tried again next time)."""
        key = _key(plaintext)
        with self._lock:
            token = self._fresh(self._cache.get(key))
            if token is not None:
                return token
            # Read before asking: a change committed meanwhile makes the entry stale
            # at once, never the other way round.
            mark = self._mark()
            try:
                token = self._verifier().verify(plaintext)
            except AuthenticationError:
                raise
            except ModelkeepError:
                if self._owns_engine:
                    self._drop_engine()  # unreachable, or a connection gone bad: reopen
                raise
            self._cache.pop(key, None)  # re-inserted last: the oldest go first
            self._cache[key] = (self._clock() + self.seconds, mark, token)
            while len(self._cache) > self.size:
                self._cache.pop(next(iter(self._cache)))
            return token

    def forget(self) -> None:
        """Ask the registry again for every token (e.g. after revoking one here)."""
        with self._lock:
            self._cache.clear()

    def close(self) -> None:
        with self._lock:
            self._cache.clear()
            if self._owns_engine:
                self._drop_engine()
            if self._owned_mark is not None:
                self._owned_mark.close()

    def _mark(self) -> Hashable | None:
        return None if self._changes is None else self._changes()

    def _fresh(
        self, hit: tuple[float, Hashable | None, Token] | None, now: Hashable | None = None
    ) -> Token | None:
        if hit is None or self._clock() >= hit[0]:
            return None
        _, mark, token = hit
        if self._changes is not None:
            if now is None:
                now = self._changes()
            if mark is None or now != mark:
                return None
        return token

    def _verifier(self) -> Tokens:
        if self._tokens is None:
            if self._engine is None:
                self._engine = self._open()
            self._tokens = Tokens(self._engine)
        return self._tokens

    def _drop_engine(self) -> None:
        engine, self._engine, self._tokens = self._engine, None, None
        if engine is not None:
            try:
                engine.close()
            except Exception:  # closing a broken connection: nothing more to do
                log.debug("closing the token check's engine failed", exc_info=True)
