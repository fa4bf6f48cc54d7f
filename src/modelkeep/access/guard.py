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
    from collections.abc import Callable

    from modelkeep._engine import Engine
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
    (``forget`` ends that at once). Expiry is exact: ``Tokens.allows`` reads the clock.
    Failures are never remembered: each one asks the registry (the ``FailureLimiter``
    bounds them per address)."""

    def __init__(
        self,
        open_engine: Callable[[], Engine],
        seconds: float = CACHE_SECONDS,
        size: int = MAX_CACHED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open = open_engine
        self.seconds = seconds
        self.size = size
        self._clock = clock
        self._engine: Engine | None = None
        # One verification at a time: requests arriving together with a new token ask
        # the registry once, and Tokens.verify may write last_used_at.
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Token]] = {}

    def cached(self, plaintext: str) -> Token | None:
        """The token ``plaintext`` was verified as less than ``seconds`` ago, or None.
        Never blocks: an async handler calls it on its event loop."""
        hit = self._cache.get(_key(plaintext))
        if hit is None or self._clock() >= hit[0]:
            return None
        return hit[1]

    def verify(self, plaintext: str) -> Token:
        """The token ``plaintext`` is (AuthenticationError if none), remembered or asked
        of the registry — blocking: call it from a thread, not an event loop. Any other
        ModelkeepError means the registry could not answer (tried again next time)."""
        key = _key(plaintext)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and self._clock() < hit[0]:
                return hit[1]
            try:
                if self._engine is None:
                    self._engine = self._open()
                token = Tokens(self._engine).verify(plaintext)
            except AuthenticationError:
                raise
            except ModelkeepError:
                self._drop_engine()  # unreachable, or a connection gone bad: reopen
                raise
            self._cache.pop(key, None)  # re-inserted last: the oldest go first
            self._cache[key] = (self._clock() + self.seconds, token)
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
            self._drop_engine()

    def _drop_engine(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            try:
                engine.close()
            except Exception:  # closing a broken connection: nothing more to do
                log.debug("closing the token check's engine failed", exc_info=True)
