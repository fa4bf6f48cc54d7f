"""ONNX models, run with onnxruntime."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelkeep.formats._deps import need
from modelkeep.formats.base import Saved, module_roots, qualname, versions

if TYPE_CHECKING:
    from pathlib import Path

LIBS = ("onnx", "onnxruntime", "numpy")


class Onnx:
    name: str = "onnx"
    extra: str = "onnx"
    suffixes: tuple[str, ...] = (".onnx",)

    def matches(self, obj: object) -> bool:
        return "onnx" in module_roots(obj) and hasattr(obj, "graph")

    def save(self, obj: Any, folder: Path, options: dict[str, Any]) -> Saved:
        onnx = need("onnx", "onnx")
        target = folder / "model.onnx"
        onnx.save_model(obj, str(target))
        return Saved(self.name, target.name, qualname(obj), versions(*LIBS))

    def load(self, path: Path, saved: dict[str, Any], trusted: Any) -> Any:
        ort = need("onnxruntime", "onnx")
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def describe_file(self, path: Path) -> Saved | None:
        if path.suffix != ".onnx":
            return None
        return Saved(self.name, path.name, "onnx.ModelProto", versions(*LIBS))
