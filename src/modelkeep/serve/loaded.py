"""A model version loaded for serving: inputs decoded and checked once per request,
everything else worked out at load time."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelkeep.artifact import example_frame
from modelkeep.formats.predict import predictor
from modelkeep.serve.inputs import Schema

if TYPE_CHECKING:
    from modelkeep._engine import Engine
    from modelkeep.registry.records import Version


@dataclass
class Loaded:
    version: Version
    model: Any
    columns: list[str] | None  # tabular inputs, in signature order
    dtypes: dict[str, str]
    width: int | None  # tensor inputs: values per row
    wants_frame: bool  # the model checks feature names: give it a DataFrame
    load_seconds: float = 0.0
    reference: Any = None  # the version's reference profile, for live windows

    def __post_init__(self) -> None:
        # Worked out once: requests only call them.
        self.rev = self.version.rev
        self._predict = predictor(self.model)
        tensor = (self.version.artifact.get("signature") or {}).get("inputs") or {}
        self.schema = Schema(
            self.rev,
            self.columns,
            self.dtypes,
            self.width,
            tensor.get("dtype") if tensor.get("type") == "tensor" else None,
            nullable=_takes_missing(self.model)
            or _holds_missing((self.version.artifact.get("example") or {}).get("data")),
        )

    @classmethod
    def load(cls, engine: Engine, version: Version) -> Loaded:
        start = time.perf_counter()
        model = engine.versions.load(version)
        sig = (version.artifact.get("signature") or {}).get("inputs") or {}
        columns = dtypes = None
        width = None
        if sig.get("type") == "tabular":
            columns = [c["name"] for c in sig["columns"]]
            dtypes = {c["name"]: c["dtype"] for c in sig["columns"]}
        elif sig.get("type") == "tensor" and len(sig.get("shape", [])) == 2:
            width = int(sig["shape"][1])
        wants_frame = columns is not None and hasattr(model, "feature_names_in_")
        return cls(
            version,
            model,
            columns,
            dtypes or {},
            width,
            wants_frame,
            time.perf_counter() - start,
            engine.versions.profile(version),
        )

    def warm(self) -> None:
        """Predict once on the stored input example, so a broken version is never served."""
        example = example_frame(self.version.artifact.get("example"))
        if example is None:
            return
        if self.columns is not None and hasattr(example, "columns"):
            self.predict(self.rows_from_records(example.to_dict(orient="records")))
        else:
            self.predict(self.rows(example.tolist() if hasattr(example, "tolist") else example))

    # -- inputs ---------------------------------------------------------------------
    # Checked in one place (inputs.Schema) for every endpoint, before the model runs:
    # a value that does not fit is the client's error (400), never the model's.

    def rows(self, data: Any) -> Any:
        """A 2-D batch from nested lists (or one flat row), checked against the signature."""
        return self._batch(self.schema.rows(data))

    def rows_from_records(self, records: Any) -> Any:
        """Records ({column: value}) in signature order; missing or unknown columns are
        named in the error."""
        return self._batch(self.schema.records(records))

    def rows_from_oip(self, body: Any) -> Any:
        """An OIP v2 request's input tensors as a batch."""
        return self._batch(self.schema.oip(body))

    def _batch(self, arr: Any) -> Any:
        if self.wants_frame:
            import pandas as pd

            return pd.DataFrame(arr, columns=self.columns)
        return arr

    def predict(self, x: Any) -> Any:
        return self._predict(x)


def _holds_missing(value: Any) -> bool:
    """Whether a stored input example holds a missing value (null or NaN): the version
    was committed with one, so its model takes them."""
    if isinstance(value, list):
        return any(_holds_missing(v) for v in value)
    return value is None or (isinstance(value, float) and value != value)


def _takes_missing(model: Any) -> bool:
    """Whether the model takes missing values (NaN), so that a JSON null may stand for
    one: scikit-learn's ``allow_nan`` input tag (HistGradientBoosting, say). Other
    libraries say nothing we can read: null is refused for them, unless their input
    example holds one (``_holds_missing``)."""
    if not hasattr(model, "__sklearn_tags__"):
        return False
    try:
        from sklearn.utils import get_tags

        return bool(get_tags(model).input_tags.allow_nan)
    except Exception:  # an old scikit-learn or odd tags: refuse null, as for the others
        return False
