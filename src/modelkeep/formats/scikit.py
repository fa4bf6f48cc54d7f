"""scikit-learn estimators and pipelines, stored with skops (no pickle)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelkeep.errors import Hint, UntrustedModelError
from modelkeep.formats._deps import need
from modelkeep.formats.base import Buffer, Saved, module_roots, qualname, versions

if TYPE_CHECKING:
    from pathlib import Path

LIBS = ("scikit-learn", "skops", "numpy", "scipy")
FILE = "model.skops"


def untrusted_types(path: Path) -> list[str]:
    sio = need("skops.io", "sklearn")
    try:
        found: list[str] = sio.get_untrusted_types(file=path)
    except Exception as exc:  # skops raises several kinds on damaged files
        from modelkeep.errors import DataFormatError

        raise DataFormatError(f"{path.name} is not a readable skops file: {exc}") from None
    return found


def check_trust(path: Path, trusted: Any, vouched: list[str] | None = None) -> list[str]:
    """The types to pass to skops, or an error naming the ones nobody trusted.

    ``vouched``: types recorded at commit, where the author vouched for them (by
    committing the live object, or by trusting a file explicitly). The file is
    verified against its hash on checkout, so it still holds exactly those types.
    """
    found = untrusted_types(path)
    if trusted is True:
        return found
    allowed = set(trusted or ()) | set(vouched or ())
    missing = [t for t in found if t not in allowed]
    if missing:
        raise UntrustedModelError(
            f"{path.name} holds types skops does not trust by default: {', '.join(missing)}; "
            "if you trust where this version came from, trust them explicitly",
            hint=Hint(
                cli=f"give {' '.join(f'--trust {t}' for t in missing)}",
                api=f"load it with trusted={missing!r}",
            ),
        )
    return found


class ScikitLearn:
    name: str = "sklearn"
    extra: str = "sklearn"
    suffixes: tuple[str, ...] = (".skops",)

    def matches(self, obj: object) -> bool:
        roots = module_roots(obj)
        return "sklearn" in roots and not roots & {"xgboost", "lightgbm"}

    def _saved(self, obj: Any) -> Saved:
        # The author committed the live object: every type in it is theirs. (Listing
        # them would parse the whole file again; load lists them anyway.)
        return Saved(self.name, FILE, qualname(obj), versions(*LIBS), {"vouched": "all"})

    def save(self, obj: Any, folder: Path, options: dict[str, Any]) -> Saved:
        sio = need("skops.io", "sklearn")
        sio.dump(obj, folder / FILE)
        return self._saved(obj)

    def save_to_memory(
        self, obj: Any, options: dict[str, Any]
    ) -> tuple[Saved, dict[str, Buffer]] | None:
        sio = need("skops.io", "sklearn")
        return self._saved(obj), {FILE: Buffer((memoryview(sio.dumps(obj)),))}

    def load(self, path: Path, saved: dict[str, Any], trusted: Any) -> Any:
        sio = need("skops.io", "sklearn")
        options = saved.get("options", {})
        if options.get("vouched") == "all":
            trusted = True  # the file is the verified one its author committed
        vouched = options.get("untrusted_types", [])
        return sio.load(path, trusted=check_trust(path, trusted, vouched))

    def describe_file(self, path: Path) -> Saved | None:
        if path.suffix != ".skops":
            return None
        found = untrusted_types(path)
        return Saved(self.name, path.name, "", versions(*LIBS), {"untrusted_types": found})
