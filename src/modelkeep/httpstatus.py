"""One table from modelkeep errors to HTTP statuses, for every face that speaks HTTP
(the inference server, the team server): the most specific class first."""

from __future__ import annotations

from modelkeep import errors as e

TABLE: tuple[tuple[type[e.ModelkeepError], int], ...] = (
    (e.AuthenticationError, 401),  # no valid token: the answer carries WWW-Authenticate
    (e.PermissionDeniedError, 403),  # a valid token that does not cover the operation
    (e.ReadOnlyRepositoryError, 403),  # the server may only read its repository
    (e.UntrustedModelError, 403),
    (e.RegistryBusyError, 503),  # retry: another process holds the registry
    (e.UnreachableError, 503),  # the repository's database or object store is away
    (e.RefMovedError, 409),
    (e.TooLargeError, 413),  # a job's data past the server's bound: send less
    (e.UsageError, 400),
    (e.NotFoundError, 404),
    (e.ConflictError, 409),
    (e.MissingDependencyError, 501),
    (e.RepositoryFormatError, 500),
    (e.RegistryError, 500),
    (e.StoreError, 500),
)


def status_of(exc: e.ModelkeepError) -> int:
    """The HTTP status a modelkeep error is answered with (500 for any other)."""
    return next((status for cls, status in TABLE if isinstance(exc, cls)), 500)
