"""Who is acting, when it is not the process's own user: a team server runs each
request's engine calls as the user of the request's token (``lineage.acting_as``), and
every event written meanwhile records that user, the token's id and the client's
address.

A context variable, so that concurrent requests (threads, asyncio tasks) each see their
own. It lives here, in the ground layer, because the registry reads it when it writes an
event; ``modelkeep.lineage`` sets it.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Acting:
    """The user a change is made for, and through which token, from which address."""

    user: str
    token_id: str | None = None
    address: str | None = None


ACTING: ContextVar[Acting | None] = ContextVar("modelkeep_acting", default=None)


def acting() -> Acting | None:
    """Who is acting in this context (None: the process's own user)."""
    return ACTING.get()
