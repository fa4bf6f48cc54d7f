"""XGBoost and LightGBM, in their own JSON/text formats (never pickled)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelkeep.formats._deps import import_path, need
from modelkeep.formats.base import Saved, module_roots, qualname, versions

if TYPE_CHECKING:
    from pathlib import Path


class XGBoost:
    name: str = "xgboost"
    extra: str = "xgboost"
    suffixes: tuple[str, ...] = (".ubj",)

    def matches(self, obj: object) -> bool:
        return "xgboost" in module_roots(obj) and hasattr(obj, "save_model")

    def save(self, obj: Any, folder: Path, options: dict[str, Any]) -> Saved:
        target = folder / "model.json"
        obj.save_model(str(target))
        return Saved(self.name, target.name, qualname(obj), versions("xgboost", "numpy"))

    def load(self, path: Path, saved: dict[str, Any], trusted: Any) -> Any:
        xgb = need("xgboost", "xgboost")
        cls_name = saved.get("class", "")
        # Only xgboost's own classes are rebuilt; anything else loads as a Booster.
        cls = import_path(cls_name) if cls_name.startswith("xgboost.") else xgb.Booster
        model = cls()  # type: ignore[operator]
        model.load_model(str(path))
        return model

    def describe_file(self, path: Path) -> Saved | None:
        return None  # a .json file is too ambiguous to claim


class LightGBM:
    name: str = "lightgbm"
    extra: str = "lightgbm"
    suffixes: tuple[str, ...] = ()

    def matches(self, obj: object) -> bool:
        return "lightgbm" in module_roots(obj) and (
            hasattr(obj, "save_model") or hasattr(obj, "booster_")
        )

    def save(self, obj: Any, folder: Path, options: dict[str, Any]) -> Saved:
        target = folder / "model.txt"
        booster = obj.booster_ if hasattr(obj, "booster_") else obj
        booster.save_model(str(target))
        opts: dict[str, Any] = {}
        if hasattr(obj, "classes_"):
            opts["classes"] = [c.item() if hasattr(c, "item") else c for c in obj.classes_]
        return Saved(self.name, target.name, qualname(obj), versions("lightgbm", "numpy"), opts)

    def load(self, path: Path, saved: dict[str, Any], trusted: Any) -> Any:
        lgb = need("lightgbm", "lightgbm")
        # The scikit-learn wrappers cannot be rebuilt from the text format: a Booster
        # comes back (its predict gives probabilities for classifiers).
        return lgb.Booster(model_file=str(path))

    def describe_file(self, path: Path) -> Saved | None:
        return None
