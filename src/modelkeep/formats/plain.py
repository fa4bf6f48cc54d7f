"""Files that are not a model object modelkeep can rebuild: plain files, pickles, tensors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelkeep.errors import DataFormatError, UntrustedModelError
from modelkeep.formats._deps import need
from modelkeep.formats.base import Saved, versions

if TYPE_CHECKING:
    from pathlib import Path


class Pickle:
    """pickle/joblib files: loading runs arbitrary code, so only when trusted."""

    name: str = "pickle"
    extra: str = "sklearn"
    suffixes: tuple[str, ...] = (".pkl", ".pickle", ".joblib")

    def matches(self, obj: object) -> bool:
        return False  # modelkeep never writes pickles

    def save(self, obj: Any, folder: Path, options: dict[str, Any]) -> Saved:
        raise NotImplementedError

    def load(self, path: Path, saved: dict[str, Any], trusted: Any) -> Any:
        if trusted is not True:
            raise UntrustedModelError(
                f"{path.name} is a pickle: loading it can run any code it contains. If you "
                "trust where this version came from, load it with repo.load(rev, trusted=True) "
                "(the CLI never unpickles); better, re-commit the model object so it is "
                "stored with skops"
            )
        joblib = need("joblib", "sklearn")
        return joblib.load(path)

    def describe_file(self, path: Path) -> Saved | None:
        if path.suffix not in self.suffixes:
            return None
        return Saved(self.name, path.name, "", versions("joblib"))


class Tensors:
    """A bare safetensors file: loads as a dict of tensors (torch if installed, else numpy)."""

    name: str = "safetensors"
    extra: str = "torch"
    suffixes: tuple[str, ...] = (".safetensors",)

    def matches(self, obj: object) -> bool:
        return False

    def save(self, obj: Any, folder: Path, options: dict[str, Any]) -> Saved:
        raise NotImplementedError

    def load(self, path: Path, saved: dict[str, Any], trusted: Any) -> Any:
        try:
            import safetensors.torch as st
        except ImportError:
            st = need("safetensors.numpy", "torch")
        return st.load_file(str(path))

    def describe_file(self, path: Path) -> Saved | None:
        if path.suffix != ".safetensors":
            return None
        import mmap

        from modelkeep.store.chunking import safetensors_spans

        with open(path, "rb") as f:
            size = f.seek(0, 2)
            spans = None
            if size:
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                    view = memoryview(mm)
                    try:
                        spans = safetensors_spans(view)
                    finally:
                        view.release()
        if spans is None:
            raise DataFormatError(
                f"{path.name} claims to be safetensors but its header or tensor offsets do "
                "not fit the file (truncated or damaged?); re-export it, or rename it to "
                "commit it as a plain file"
            )
        return Saved(self.name, path.name, "dict", versions("safetensors", "torch", "numpy"))
