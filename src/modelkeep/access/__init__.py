"""Access to a repository through a team server: tokens with scopes and model patterns.

A job: it takes the engine (``modelkeep._engine``), never ``Repo`` or a face. The server
(a face) calls ``Tokens.verify`` on every request, ``Tokens.allows`` per operation, and
runs the request's engine calls inside ``lineage.acting_as(token.user, token.id,
address)``, so that every event records who, with which token, from where.
``modelkeep.access.guard`` holds what every endpoint taking tokens shares: the bearer
header, the limit on failed attempts per address, and ``TokenCheck`` (verified tokens
remembered for a short time), which the inference server's feedback endpoint uses.
"""

from modelkeep.access.tokens import PREFIX, Tokens

__all__ = ["PREFIX", "Tokens"]
