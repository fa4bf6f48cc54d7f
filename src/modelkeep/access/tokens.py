"""Access tokens: made once, kept as a hash, checked on every request.

A token reads ``mkt_<id>_<secret>``: the id is public (lists, events and error messages
name it), the secret is 256 random bits (``secrets.token_urlsafe(32)``) shown once, when
the token is made, and never stored — the registry keeps its SHA-256. A fast hash is
right for a random secret of that size (nothing to guess; GitHub and PyPI do the same),
and it costs a request nothing. The prefix lets secret scanners recognise a leaked one.

Scopes nest: ``admin`` ⊇ ``write`` ⊇ ``read``. A token's ``models`` pattern (fnmatch,
case-sensitive: ``churn*``, ``fraud-?``, ``*``) limits which models it reaches; an
operation on the whole repository (managing tokens, gc) names no model and needs a
token whose pattern is ``*``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from modelkeep import lineage, quantities
from modelkeep._engine.engine import Service
from modelkeep.errors import (
    AuthenticationError,
    ModelNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    ReadOnlyRepositoryError,
    RegistryBusyError,
    UsageError,
)
from modelkeep.registry.records import TOKEN_SCOPES

if TYPE_CHECKING:
    import builtins

    from modelkeep.registry.records import Token

PREFIX = "mkt_"
# The id: hex (no "_", so the plaintext splits unambiguously); made 20 digits long
# (80 bits), read 8 to 32. The secret: URL-safe base64, 43 characters made.
_PLAINTEXT = re.compile(r"mkt_([0-9a-f]{8,32})_([A-Za-z0-9_-]{32,128})")
_ID_BYTES = 10
_SECRET_BYTES = 32
_RANK = {scope: rank for rank, scope in enumerate(TOKEN_SCOPES)}
# last_used_at is written at most this often per token: a request costs no write.
TOUCH_EVERY = timedelta(minutes=1)
MAX_USER = 256
MAX_PATTERN = 256
# What a model name may hold (revision.check_name), and glob characters around it.
_NAME_CHARS = re.compile(r"[A-Za-z0-9._-]")
# Compared against when the id is unknown, so that an unknown id and a wrong secret
# take the same time and get the same answer.
_NO_HASH = hashlib.sha256(b"no such token").hexdigest()


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def check_user(user: object) -> str:
    """A token's user: printable text, 1 to 256 characters, no surrounding blanks."""
    if not isinstance(user, str) or not user or not user.strip():
        raise UsageError("a token needs a user (who it acts for), e.g. alice")
    if len(user) > MAX_USER:
        raise UsageError(f"a token's user is at most {MAX_USER} characters")
    if not user.isprintable() or user != user.strip():
        raise UsageError(
            f"user {quantities.shown(user)}: printable characters only, no blanks around them"
        )
    return user


def check_scope(scope: object, what: str = "scope") -> str:
    if scope not in TOKEN_SCOPES:
        raise UsageError(
            f"{what} {quantities.shown(scope)} is not a scope; use {', '.join(TOKEN_SCOPES)}"
        )
    return str(scope)


def check_pattern(models: object) -> str:
    """A model pattern: model-name characters, ``*``, ``?`` and ``[...]`` sets (``[!...]``
    excludes), at most 256 characters."""
    if not isinstance(models, str) or not models:
        raise UsageError("a token's models pattern is empty; use * for every model")
    if len(models) > MAX_PATTERN:
        raise UsageError(f"a token's models pattern is at most {MAX_PATTERN} characters")
    shown = quantities.shown(models)
    i = 0
    while i < len(models):
        c = models[i]
        if c == "[":
            start = i + 2 if models[i + 1 : i + 2] == "!" else i + 1
            end = models.find("]", start)
            if end == -1:
                raise UsageError(f"models pattern {shown}: a [ is not closed by a ]")
            inside = models[start:end]
            if not inside or not all(_NAME_CHARS.fullmatch(x) for x in inside):
                raise UsageError(
                    f"models pattern {shown}: a [set] holds model-name characters "
                    "(letters, digits, . _ -), e.g. churn-[ab]"
                )
            i = end + 1
        elif c in "*?" or _NAME_CHARS.fullmatch(c):
            i += 1
        else:
            raise UsageError(
                f"models pattern {shown}: {quantities.shown(c)} cannot be in a model name "
                "nor a pattern; use letters, digits, . _ - and * ? [set], e.g. churn*"
            )
    return models


def check_expiry(expires: timedelta | str | float | None) -> timedelta | None:
    """How long a token lasts: None (until revoked), or 1 s to 366 days (``90d``)."""
    if expires is None:
        return None
    return timedelta(seconds=quantities.duration(expires, "expires", low=1))


class Tokens(Service):
    """The access tokens of a repository: make, list, revoke, verify, and check what a
    token allows. Changes are events (``token.create``, ``token.revoke``) that never
    carry a secret or its hash."""

    def create(
        self,
        user: str,
        scope: str,
        models: str = "*",
        expires: timedelta | str | float | None = None,
        message: str = "",
    ) -> tuple[Token, str]:
        """Make a token for ``user`` with ``scope`` (read, write, admin) on the models
        matching ``models``, lasting ``expires`` (a ``timedelta``, seconds or ``90d``;
        None: until revoked). Returns the record and the token itself — the only time
        it is given: it is not stored."""
        user = check_user(user)
        scope = check_scope(scope)
        models = check_pattern(models)
        lasts = check_expiry(expires)
        token_id = secrets.token_hex(_ID_BYTES)
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        token = self.ctx.registry.add_token(
            token_id=token_id,
            user=user,
            scope=scope,
            models=models,
            secret_hash=_hash(secret),
            expires_at=None if lasts is None else datetime.now(UTC) + lasts,
            actor=lineage.author(),
            message=message,
        )
        return token, f"{PREFIX}{token_id}_{secret}"

    def list(self, include_revoked: bool = False) -> builtins.list[Token]:
        """Tokens oldest first (expired ones too; revoked ones with ``include_revoked``)."""
        return self.ctx.registry.tokens(include_revoked)

    def get(self, token_id: str) -> Token:
        return self.ctx.registry.token(token_id)

    def revoke(self, token_id: str, message: str = "") -> Token:
        """Revoke a token for good: every request with it is refused from now on."""
        return self.ctx.registry.revoke_token(token_id, lineage.author(), message)

    def verify(self, plaintext: str) -> Token:
        """The token ``plaintext`` is, when it authenticates; else AuthenticationError
        (malformed, unknown, a wrong secret, expired, revoked), whose message never
        holds the token. Records when it was last used, at most once a minute."""
        found = (
            _PLAINTEXT.fullmatch(plaintext.strip())
            if isinstance(plaintext, str) and len(plaintext) <= 256
            else None
        )
        if found is None:
            raise AuthenticationError("not a modelkeep token (they read mkt_<id>_<secret>)")
        token_id, secret = found.groups()
        token: Token | None
        try:
            token = self.ctx.registry.token(token_id)
        except NotFoundError:
            token = None
        # Compared in constant time, and against something when the id is unknown.
        expected = _NO_HASH if token is None else token.secret_hash
        matches = hmac.compare_digest(_hash(secret), expected)
        if token is None or not matches:
            raise AuthenticationError("unknown token, or a wrong secret")
        now = datetime.now(UTC)
        state = token.state(now)
        if state == "revoked":
            raise AuthenticationError(f"token {token.id} was revoked")
        if state == "expired" and token.expires_at is not None:
            raise AuthenticationError(
                f"token {token.id} expired at {token.expires_at.isoformat(timespec='seconds')}"
            )
        if token.last_used_at is None or now - token.last_used_at >= TOUCH_EVERY:
            # Bookkeeping, not a condition: a busy or read-only registry skips it.
            with contextlib.suppress(RegistryBusyError, ReadOnlyRepositoryError):
                if self.ctx.registry.touch_token(token.id, TOUCH_EVERY, now):
                    token = dataclasses.replace(token, last_used_at=now)
        return token

    @staticmethod
    def allows(token: Token, need: str, model: str | None) -> bool:
        """Whether ``token`` may do what needs scope ``need`` (read, write, admin) on
        ``model`` (None: the whole repository, which needs the pattern ``*``). An
        expired or revoked token allows nothing."""
        check_scope(need, "need")
        if token.state() != "active" or _RANK[token.scope] < _RANK[need]:
            return False
        if model is None:
            return token.models == "*"
        return fnmatch.fnmatchcase(model, token.models)

    @classmethod
    def require(cls, token: Token, need: str, model: str | None) -> None:
        """Refuse what ``allows`` does not: a model outside the token's pattern as not
        found (ModelNotFoundError: its name is not told to a token that cannot read
        it), a scope too small as PermissionDeniedError."""
        if cls.allows(token, need, model):
            return
        if token.state() != "active":
            raise AuthenticationError(f"token {token.id} is {token.state()}")
        if model is not None and not cls.allows(token, "read", model):
            # The same whether the model exists or not.
            raise ModelNotFoundError(f"no model named {model!r} that this token can read")
        what = "this model" if model is not None else "the whole repository"
        raise PermissionDeniedError(
            f"token {token.id} ({token.scope} on {token.models}) may not do what needs "
            f"{need} on {what}; ask an admin for a {need} token"
        )
