"""A model version loaded for serving: inputs decoded and checked once per request,
everything else worked out at load time."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelkeep.artifact import example_frame
from modelkeep.errors import SignatureError
from modelkeep.formats.predict import predictor

if TYPE_CHECKING:
    from modelkeep.registry.records import Version
    from modelkeep.repo import Repo


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

    @classmethod
    def load(cls, repo: Repo, version: Version) -> Loaded:
        start = time.perf_counter()
        model = repo.load(version)
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
            repo.profile(version),
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

    def rows(self, data: Any) -> Any:
        """A 2-D numeric batch from nested lists, checked against the signature."""
        import numpy as np

        try:
            arr = np.asarray(data, dtype=np.float64)
        except (TypeError, ValueError):
            raise SignatureError(
                "inputs must be numbers in equal-length rows (a list of lists)"
            ) from None
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        expected = len(self.columns) if self.columns is not None else self.width
        if arr.ndim != 2 or (expected is not None and arr.shape[1] != expected):
            what = f"columns {', '.join(self.columns)}" if self.columns else "values"
            raise SignatureError(
                f"inputs have shape {list(arr.shape)}; {self.rev} expects rows of {expected} {what}"
            )
        if self.wants_frame:
            import pandas as pd

            return pd.DataFrame(arr, columns=self.columns)
        return arr

    def rows_from_records(self, records: Any) -> Any:
        """Records ({column: value}) in signature order; missing or unknown columns are
        named in the error."""
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise SignatureError('records must be a list of objects: [{"col": value, ...}]')
        if self.columns is None:
            raise SignatureError(f"{self.rev} has no column signature: send inputs as rows")
        wanted = self.columns
        for i, rec in enumerate(records):
            if rec.keys() != set(wanted):
                missing = [c for c in wanted if c not in rec]
                extra = sorted(set(rec) - set(wanted))
                parts = []
                if missing:
                    parts.append(f"missing {', '.join(missing)}")
                if extra:
                    parts.append(f"unknown {', '.join(extra)}")
                raise SignatureError(
                    f"record {i}: {'; '.join(parts)} (expected {', '.join(wanted)})"
                )
        table = [[rec[c] for c in wanted] for rec in records]
        for row_i, row in enumerate(table):
            for col, value in zip(wanted, row, strict=True):
                if not isinstance(value, int | float) or isinstance(value, bool):
                    if value is None:
                        continue
                    raise SignatureError(
                        f"record {row_i}: column {col!r} is {type(value).__name__} "
                        f"{value!r}, expected {self.dtypes.get(col, 'a number')}"
                    )
        return self.rows(table)

    def predict(self, x: Any) -> Any:
        return self._predict(x)
