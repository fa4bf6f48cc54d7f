"""Who is calling the team server: the bearer token of each request, verified, and a
limit on failed attempts per client address (so a token cannot be guessed online).

A failure is logged with the address and the reason, never with what was sent."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

from modelkeep.errors import AuthenticationError, ModelkeepError

log = logging.getLogger("modelkeep.server")

# Failed authentications an address may make within WINDOW seconds before it waits.
MAX_FAILURES = 10
WINDOW = 60.0
# Addresses remembered (the oldest forgotten first): bounded under a scan of many.
MAX_ADDRESSES = 10_000


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
