"""What every model format (flavor) provides, and the metadata it leaves on a version."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True, slots=True)
class Saved:
    """What a flavor wrote into a folder, to be committed and recorded."""

    format: str
    main: str  # the file (relative path) that holds the model
    model_class: str
    libraries: dict[str, str]
    options: dict[str, Any] = field(default_factory=dict)


class Flavor(Protocol):
    """One model format. Heavy libraries are imported inside the methods."""

    name: str
    extra: str  # the pip extra that installs its library
    suffixes: tuple[str, ...]  # files of this format, recognised on commit

    def matches(self, obj: object) -> bool:
        """True when ``obj`` is a model of this format (checked without importing)."""
        ...

    def save(self, obj: Any, folder: Path, options: dict[str, Any]) -> Saved: ...

    def load(self, path: Path, saved: dict[str, Any], trusted: Any) -> Any:
        """The model object, ready to predict, from the main file ``path``."""
        ...

    def describe_file(self, path: Path) -> Saved | None:
        """Metadata for a committed file of this format (None if it is not one)."""
        ...


def qualname(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def module_roots(obj: object) -> set[str]:
    """Top-level packages of the classes ``obj`` is an instance of (no imports needed)."""
    return {c.__module__.split(".", 1)[0] for c in type(obj).__mro__}


# Builds of a library published under another distribution name.
_ALIASES = {"xgboost": ("xgboost-cpu",), "onnxruntime": ("onnxruntime-gpu",)}


def versions(*packages: str) -> dict[str, str]:
    """Installed versions by the library's canonical name (aliases folded in)."""
    from importlib import metadata

    out = {}
    for name in packages:
        for dist in (name, *_ALIASES.get(name, ())):
            try:
                out[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return out
