"""One table from modelkeep errors to HTTP statuses, shared by every HTTP face."""

from __future__ import annotations

import inspect

import pytest

from modelkeep import errors as e
from modelkeep.httpstatus import TABLE, status_of


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (e.SignatureError("bad column"), 400),
        (e.RevisionSyntaxError("bad revision"), 400),
        (e.VersionNotFoundError("no version"), 404),
        (e.ModelNotFoundError("no model"), 404),
        (e.RefMovedError("lost the race"), 409),
        (e.RefExistsError("exists"), 409),
        (e.RegistryBusyError("locked"), 503),
        (e.ReadOnlyRepositoryError("read only"), 403),
        (e.UntrustedModelError("untrusted"), 403),
        (e.MissingDependencyError("no torch"), 501),
        (e.CorruptObjectError("damaged"), 500),
        (e.RegistryDamagedError("damaged"), 500),
        (e.ModelkeepError("anything else"), 500),
    ],
)
def test_each_error_has_its_status(error: e.ModelkeepError, status: int) -> None:
    assert status_of(error) == status


def test_a_class_is_listed_before_the_classes_it_inherits_from() -> None:
    """Looked up first match wins: a subclass after its base would never be reached."""
    classes = [cls for cls, _ in TABLE]
    for i, cls in enumerate(classes):
        for base in classes[:i]:
            assert not issubclass(cls, base), f"{cls.__name__} is shadowed by {base.__name__}"


def test_every_error_class_has_a_4xx_or_5xx() -> None:
    for _, cls in inspect.getmembers(e, inspect.isclass):
        if issubclass(cls, e.ModelkeepError):
            args = ("x", "trace") if cls is e.TrainerError else ("x",)
            extras: dict[type, tuple[object, ...]] = {
                e.WorkingTreeConflictError: ([],),
                e.VersionExistsError: (1,),
            }
            extra = extras.get(cls, ())
            assert 400 <= status_of(cls(*args, *extra)) < 600
