"""PyTorch modules and state dicts: weights as safetensors, plus how to rebuild.

A module is stored as its state dict (safetensors) with the import path of its
class and its init arguments; a TorchScript module as TorchScript.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from modelkeep.errors import UnsupportedModelError
from modelkeep.formats import stlayout
from modelkeep.formats._deps import import_path, need
from modelkeep.formats.base import Buffer, Saved, module_roots, qualname, versions

if TYPE_CHECKING:
    from pathlib import Path

    from modelkeep.store.inplace import StoredFile

LIBS = ("torch", "safetensors", "numpy")
WEIGHTS = "model.safetensors"


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and "torch" in module_roots(v) for k, v in obj.items())
    )


class PyTorch:
    name: str = "torch"
    extra: str = "torch"
    suffixes: tuple[str, ...] = ()

    def matches(self, obj: object) -> bool:
        return ("torch" in module_roots(obj) and hasattr(obj, "state_dict")) or _is_state_dict(obj)

    def _saved(self, obj: Any, options: dict[str, Any]) -> Saved:
        """The record of a state dict or module, stored as model.safetensors."""
        libs = versions(*LIBS)
        if _is_state_dict(obj):
            return Saved(self.name, WEIGHTS, "dict", libs, {"kind": "state_dict"})
        cls = type(obj)
        if cls.__module__ == "__main__":
            raise UnsupportedModelError(
                f"{cls.__qualname__} is defined in __main__, so it could not be rebuilt when "
                "loading: move it into an importable module, or commit "
                "model.state_dict() instead"
            )
        init_args = options.get("init_args")
        if init_args is None:
            init_args = getattr(obj, "modelkeep_init_args", {})
        json.dumps(init_args)  # must be JSON: it is stored with the version
        return Saved(
            self.name,
            WEIGHTS,
            f"{cls.__module__}:{cls.__qualname__}",
            libs,
            {"kind": "module", "init_args": init_args},
        )

    def save(self, obj: Any, folder: Path, options: dict[str, Any]) -> Saved:
        torch = need("torch", "torch")
        st = need("safetensors.torch", "torch")
        if isinstance(obj, torch.jit.ScriptModule):
            target = folder / "model.pt"
            torch.jit.save(obj, str(target))
            return Saved(
                self.name, target.name, qualname(obj), versions(*LIBS), {"kind": "torchscript"}
            )
        saved = self._saved(obj, options)
        target = folder / WEIGHTS
        if _is_state_dict(obj):
            st.save_file({k: v.detach().contiguous() for k, v in obj.items()}, str(target))
        else:
            # save_model copes with shared (tied) tensors, which save_file refuses.
            st.save_model(obj, str(target))
        return saved

    def save_to_memory(
        self, obj: Any, options: dict[str, Any]
    ) -> tuple[Saved, dict[str, Buffer]] | None:
        """The safetensors file of a state dict or module as its tensors' own memory
        (see ``stlayout``); None for TorchScript and for tensors ``save`` must handle
        (shared, sparse), which then go through a file as before."""
        torch = need("torch", "torch")
        if isinstance(obj, torch.jit.ScriptModule):
            return None
        saved = self._saved(obj, options)
        # layout() detaches and makes contiguous itself, as save() does before saving
        # and save_model for a module without shared tensors.
        parts = stlayout.layout(obj if _is_state_dict(obj) else obj.state_dict())
        if parts is None:
            return None
        return saved, {WEIGHTS: Buffer(parts, segmented=True)}

    def load(self, path: Path, saved: dict[str, Any], trusted: Any) -> Any:
        torch = need("torch", "torch")
        st = need("safetensors.torch", "torch")
        kind = saved.get("options", {}).get("kind")
        if kind == "torchscript":
            return torch.jit.load(str(path), map_location="cpu")
        if kind == "module":
            cls = import_path(saved["class"])
            model = cls(**saved["options"].get("init_args", {}))  # type: ignore[operator]
            st.load_model(model, str(path), device="cpu")
            model.eval()
            return model
        return st.load_file(str(path), device="cpu")

    def load_in_place(self, file: StoredFile, saved: dict[str, Any], trusted: Any) -> Any:
        """A state dict, or a module, straight from the store: tensors backed by the
        stored bytes (see ``stlayout.tensors``), copied into a module's own parameters
        as ``load`` does. None (then ``load`` reads a checked-out file, and says what is
        wrong) for TorchScript, modules with tied weights, and weights that do not fit
        the module exactly."""
        kind = saved.get("options", {}).get("kind")
        if kind not in ("state_dict", "module"):
            return None
        tensors = stlayout.tensors(file)
        if tensors is None or kind == "state_dict":
            return tensors
        cls = import_path(saved["class"])
        model = cls(**saved["options"].get("init_args", {}))  # type: ignore[operator]
        if stlayout.shares_storage(model.state_dict()):
            # Tied weights: safetensors' load_model knows which names saving dropped,
            # and which stored tensors a tie would silently overwrite.
            return None
        try:
            missing, unexpected = model.load_state_dict(tensors, strict=False)
        except RuntimeError:
            return None  # shapes that do not fit: safetensors' own message, from the file
        if missing or unexpected:
            return None  # load_model names them
        model.eval()
        return model

    def describe_file(self, path: Path) -> Saved | None:
        return None  # .pt files are usually pickles: committed files stay plain files
