"""What every model format (flavor) provides, and the metadata it leaves on a version."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pathlib import Path

    from modelkeep.store.inplace import StoredFile


@dataclass(frozen=True, slots=True)
class Saved:
    """What a flavor wrote into a folder, to be committed and recorded."""

    format: str
    main: str  # the file (relative path) that holds the model
    model_class: str
    libraries: dict[str, str]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Buffer:
    """A saved file kept in memory rather than written out: its bytes as consecutive
    parts, never joined (tensors stay where they are).

    ``segmented``: the parts are a safetensors file's own segments — the header, then
    each tensor in file order — and are cut into chunks where they meet; otherwise
    there is one part, chunked as any file.
    """

    parts: tuple[memoryview, ...]
    segmented: bool = False

    @property
    def size(self) -> int:
        return sum(len(p) for p in self.parts)


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


@runtime_checkable
class LoadsInPlace(Protocol):
    """A flavor that can also load a model from the stored bytes where they lie, with
    no checked-out file (see ``modelkeep.store.inplace``)."""

    def load_in_place(self, file: StoredFile, saved: dict[str, Any], trusted: Any) -> Any:
        """The model, or None when this one must be loaded from a file."""
        ...


@runtime_checkable
class SavesToMemory(Protocol):
    """A flavor that can also save a model as buffers in memory, so a commit stores it
    without writing a temporary file and reading it back."""

    def save_to_memory(
        self, obj: Any, options: dict[str, Any]
    ) -> tuple[Saved, dict[str, Buffer]] | None:
        """The saved record and each file's bytes (relative path → buffer), or None
        when this object needs the file route (``save``)."""
        ...


def qualname(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def module_roots(obj: object) -> set[str]:
    """Top-level packages of the classes ``obj`` is an instance of (no imports needed)."""
    return {c.__module__.split(".", 1)[0] for c in type(obj).__mro__}


# Builds of a library published under another distribution name.
_ALIASES = {"xgboost": ("xgboost-cpu",), "onnxruntime": ("onnxruntime-gpu",)}

# Installed versions already looked up (None: not installed), valid while _STAMP holds.
# A lookup scans every sys.path folder (~2 ms a package), and a commit asks for ~20.
_FOUND: dict[str, str | None] = {}
_STAMP: list[object] = [None]


def _installs_stamp() -> tuple[object, ...]:
    """Changes whenever a package is installed, upgraded or removed: installers add
    and remove a ``*.dist-info`` folder in a sys.path folder, changing its mtime."""
    stamp: list[object] = []
    for entry in sys.path:
        try:
            stamp.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            stamp.append((entry, None))
    return tuple(stamp)


def _installed(dist: str) -> str | None:
    from importlib import metadata

    if dist not in _FOUND:
        try:
            _FOUND[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            _FOUND[dist] = None
    return _FOUND[dist]


def versions(*packages: str) -> dict[str, str]:
    """Installed versions by the library's canonical name (aliases folded in)."""
    stamp = _installs_stamp()
    if stamp != _STAMP[0]:
        _FOUND.clear()
        _STAMP[0] = stamp
    out = {}
    for name in packages:
        for dist in (name, *_ALIASES.get(name, ())):
            found = _installed(dist)
            if found is not None:
                out[name] = found
                break
    return out
