"""The one exception tree of modelkeep.

    ModelkeepError
    ├── UsageError (ValueError)              bad input from the caller
    │   ├── InvalidNameError                 a model/branch/alias name with bad characters
    │   ├── RevisionSyntaxError              a revision that does not parse
    │   ├── EmptyCommitError                 nothing to commit
    │   ├── UnsafePathError                  a path that escapes its destination
    │   ├── UnsupportedModelError            no format recognises the object
    │   ├── SignatureError                   data that does not fit a model's signature
    │   ├── DataFormatError                  a data file that cannot be parsed
    │   ├── GateRuleError                    a gate rule that does not parse
    │   ├── NotIncrementalError              a model that cannot continue training
    │   └── TooLargeError                    an input larger than the receiver takes (413)
    ├── TrainerError                         a user trainer raised (its traceback kept)
    ├── NotFoundError (LookupError)          something named does not exist
    │   ├── RepositoryNotFoundError
    │   ├── ModelNotFoundError
    │   ├── VersionNotFoundError
    │   ├── RefNotFoundError                 branch, alias or tag
    │   └── PathNotFoundError                an input path that is not there
    ├── ConflictError                        the state is not what the operation needs
    │   ├── RefExistsError
    │   ├── RefMovedError                    a compare-and-swap lost the race
    │   ├── ObjectsNotHereError              a version published before all its objects
    │   ├── WorkingTreeConflictError         checkout would overwrite changed files
    │   ├── RepositoryExistsError
    │   └── RegistryBusyError                the database stayed locked too long
    ├── RegistryError                        the registry database failed (disk, permissions)
    │   ├── RegistryDamagedError             its file is damaged: restore or salvage it
    │   └── ReadOnlyRepositoryError          a write where the user may only read
    ├── AuthenticationError                  a token that is malformed, unknown, wrong,
    │                                        expired or revoked (HTTP 401)
    ├── PermissionDeniedError                a valid token whose scope or models do not
    │                                        cover the operation (HTTP 403)
    ├── RepositoryFormatError                the repository needs a newer modelkeep
    ├── UnreachableError                     a database or object store cannot be reached,
    │                                        refuses the credentials, or is missing
    ├── UntrustedModelError                  loading would run code nobody vouched for
    ├── MissingDependencyError (ImportError) a format's library is not installed
    └── StoreError
        ├── ObjectMissingError (LookupError) a referenced object is not in the store
        └── CorruptObjectError (ValueError)  stored bytes do not match their hash

Every message says what was wrong; what to do is said in it, or — when it depends on
the face (a command-line flag, a keyword of the API) — in its ``hint``, which each face
renders its own way (``str(exc)`` is the API's). Faces print it on one line.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Hint:
    """What to do about an error, said for each face: ``cli`` on the command line
    (flags, commands), ``api`` for Python and HTTP callers (keywords, methods)."""

    cli: str
    api: str


class ModelkeepError(Exception):
    """Root of every error modelkeep raises on purpose."""

    def __init__(self, message: str, *args: object, hint: Hint | None = None) -> None:
        super().__init__(message, *args)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.said("api")

    def said(self, face: str) -> str:
        """The message with the hint as ``face`` ("cli" or "api") puts it."""
        if self.hint is None:
            return self.message
        return f"{self.message}; {self.hint.cli if face == 'cli' else self.hint.api}"


class UsageError(ModelkeepError, ValueError):
    """The caller asked for something malformed."""


class InvalidNameError(UsageError):
    """A model, branch, alias or tag name uses characters that are not allowed."""


class RevisionSyntaxError(UsageError):
    """A revision string does not follow the revision syntax."""


class EmptyCommitError(UsageError):
    """A commit was asked for with no files in it."""


class UnsafePathError(UsageError):
    """A path would escape the folder it must stay in."""


class UnsupportedModelError(UsageError):
    """No model format recognises the object given."""


class SignatureError(UsageError):
    """Data does not fit the model's signature (or an input example the model)."""


class DataFormatError(UsageError):
    """A data file cannot be parsed."""


class GateRuleError(UsageError):
    """A gate rule that does not parse or names an unknown metric."""


class NotIncrementalError(UsageError):
    """The model cannot be updated incrementally (no partial_fit / learn_one / step)."""


class TooLargeError(UsageError):
    """An input (a request, a batch of data) is larger than the receiver takes."""


class TrainerError(ModelkeepError):
    """A user-supplied trainer, step or metric function raised."""

    def __init__(self, message: str, trace: str, *, hint: Hint | None = None) -> None:
        super().__init__(message, hint=hint)
        self.trace = trace


class NotFoundError(ModelkeepError, LookupError):
    """Something named by the caller does not exist."""


class RepositoryNotFoundError(NotFoundError):
    """No modelkeep repository at or above the given folder."""


class ModelNotFoundError(NotFoundError):
    """No model of that name."""


class VersionNotFoundError(NotFoundError):
    """The model has no such version."""


class RefNotFoundError(NotFoundError):
    """No branch, alias or tag of that name."""


class PathNotFoundError(NotFoundError):
    """An input path does not exist."""


class ConflictError(ModelkeepError):
    """The repository is not in the state the operation requires."""


class RefExistsError(ConflictError):
    """A branch, alias or tag of that name already exists."""


class RefMovedError(ConflictError):
    """A ref moved under us: another process changed it first."""


class VersionExistsError(ConflictError):
    """A version received from another repository is here already (``number``): another
    process published it first."""

    def __init__(self, message: str, number: int) -> None:
        super().__init__(message)
        self.number = number


class ObjectsNotHereError(ConflictError):
    """A version sent for publishing needs objects the receiving store lacks: they were
    never sent, or its gc collected them between their upload and the publishing."""


class WorkingTreeConflictError(ConflictError):
    """Checkout would overwrite files that differ from the version."""

    def __init__(self, message: str, paths: list[str], *, hint: Hint | None = None) -> None:
        super().__init__(message, hint=hint)
        self.paths = paths


class RepositoryExistsError(ConflictError):
    """A repository already exists there."""


class RegistryBusyError(ConflictError):
    """The registry database stayed locked by another process for too long."""


class RegistryError(ModelkeepError):
    """The registry database failed: disk full, read-only, damaged."""


class RegistryDamagedError(RegistryError):
    """The registry database is damaged (truncated, overwritten, malformed)."""


class ReadOnlyRepositoryError(RegistryError):
    """The operation writes, and this user may only read the repository."""


class AuthenticationError(ModelkeepError):
    """A token that does not authenticate: malformed, unknown, with a wrong secret,
    expired or revoked. Messages never contain the token."""


class PermissionDeniedError(ModelkeepError):
    """The token is valid, but its scope or model pattern does not cover the operation."""


class RepositoryFormatError(ModelkeepError):
    """The repository was written by a newer modelkeep, or is not one."""


class UnreachableError(ModelkeepError):
    """A shared engine (a PostgreSQL database, an object store) cannot be reached,
    refuses the credentials, or is not there. Messages name its URL without password."""


class UntrustedModelError(ModelkeepError):
    """Loading would execute or instantiate types nobody said they trust."""


class MissingDependencyError(ModelkeepError, ImportError):
    """The library a model format needs is not installed."""


class ModelkeepWarning(UserWarning):
    """Something works but deserves attention (e.g. a library major version changed)."""


class StoreError(ModelkeepError):
    """The object store cannot give back what was asked."""


class ObjectMissingError(StoreError, LookupError):
    """A referenced object is not in the store."""


class CorruptObjectError(StoreError, ValueError):
    """Stored bytes do not hash to their id: the object is corrupted."""
