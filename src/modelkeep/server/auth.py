"""Who is calling the team server: the bearer token of each request, verified, and a
limit on failed attempts per client address (so a token cannot be guessed online).

Both live in ``modelkeep.access.guard``, which the inference server's feedback endpoint
(a job, which may not import a face) uses too; named here for the team server's code.
"""

from __future__ import annotations

from modelkeep.access.guard import FailureLimiter, TooManyFailures, bearer

__all__ = ["FailureLimiter", "TooManyFailures", "bearer"]
