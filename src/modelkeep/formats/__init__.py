"""Model formats (flavors): detect, save, load, predict. Heavy libraries load lazily.

Each flavor lives in its own module; this one only knows their order.
"""

from __future__ import annotations

import platform
import warnings
from typing import TYPE_CHECKING, Any

from modelkeep.errors import ModelkeepWarning, UnsupportedModelError
from modelkeep.formats.base import Flavor, Saved, versions
from modelkeep.formats.boosters import LightGBM, XGBoost
from modelkeep.formats.onnxfmt import Onnx
from modelkeep.formats.plain import Pickle, Tensors
from modelkeep.formats.pytorch import PyTorch
from modelkeep.formats.scikit import ScikitLearn

if TYPE_CHECKING:
    from pathlib import Path

# Order matters: XGBoost and LightGBM models are scikit-learn estimators too.
OBJECT_FLAVORS: tuple[Flavor, ...] = (XGBoost(), LightGBM(), ScikitLearn(), PyTorch(), Onnx())
FILE_FLAVORS: tuple[Flavor, ...] = (ScikitLearn(), Onnx(), Tensors(), Pickle())
BY_NAME: dict[str, Flavor] = {f.name: f for f in (*OBJECT_FLAVORS, *FILE_FLAVORS)}

__all__ = ["BY_NAME", "Flavor", "Saved", "describe", "detect", "flavor", "warn_versions"]


def detect(obj: object) -> Flavor:
    for f in OBJECT_FLAVORS:
        if f.matches(obj):
            return f
    names = ", ".join(f.name for f in OBJECT_FLAVORS)
    raise UnsupportedModelError(
        f"no model format recognises {type(obj).__module__}.{type(obj).__qualname__} "
        f"(supported: {names}); save it to files yourself and commit the files "
        "(`repo.commit(name, path)`)"
    )


def flavor(name: str) -> Flavor:
    try:
        return BY_NAME[name]
    except KeyError:
        raise UnsupportedModelError(
            f"this version has format {name!r}, unknown to this modelkeep; "
            "upgrade with `pip install -U modelkeep`"
        ) from None


def describe(files: dict[str, Path]) -> Saved | None:
    """The format of committed files: the one model file among them, if exactly one."""
    found = []
    for rel, real in files.items():
        for f in FILE_FLAVORS:
            saved = f.describe_file(real)
            if saved is not None:
                found.append(
                    Saved(saved.format, rel, saved.model_class, saved.libraries, saved.options)
                )
                break
    return found[0] if len(found) == 1 else None


def record(saved: Saved) -> dict[str, Any]:
    """What a version remembers of its format."""
    return {
        "format": saved.format,
        "main": saved.main,
        "class": saved.model_class,
        "libraries": saved.libraries,
        "python": platform.python_version(),
        "options": saved.options,
    }


_warned: set[tuple[str, str, str]] = set()


def warn_versions(recorded: dict[str, str], what: str) -> None:
    """Warn once per library when its major version differs from the one that saved."""
    now = versions(*recorded)
    for lib, then in recorded.items():
        cur = now.get(lib)
        if cur is None or cur.split(".")[0] == then.split(".")[0]:
            continue
        key = (lib, then, cur)
        if key not in _warned:
            _warned.add(key)
            warnings.warn(
                f"{what} was saved with {lib} {then}; {cur} is installed (major version "
                "differs): check its predictions before trusting them",
                ModelkeepWarning,
                stacklevel=3,
            )
