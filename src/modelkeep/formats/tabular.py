"""Reading example and dataset files (CSV, Parquet, NumPy) with errors that say where."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelkeep.errors import DataFormatError
from modelkeep.formats._deps import need

if TYPE_CHECKING:
    from pathlib import Path

SUFFIXES = (".csv", ".parquet", ".pq", ".npy")


def read(path: Path) -> Any:
    """A DataFrame (CSV, Parquet) or an ndarray (.npy)."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        np = need("numpy", "data")
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataFormatError(f"{path}: not a readable .npy array: {exc}") from None
    pd = need("pandas", "data")
    if suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises its own hierarchy
            raise DataFormatError(f"{path}: not a readable Parquet file: {exc}") from None
    if suffix == ".csv":
        try:
            return pd.read_csv(path)
        except pd.errors.ParserError as exc:
            # pandas says "Error tokenizing data. C error: Expected 3 fields in line 5, saw 4"
            raise DataFormatError(f"{path}: cannot parse CSV: {_tidy(exc)}") from None
        except (pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DataFormatError(f"{path}: cannot parse CSV: {_tidy(exc)}") from None
    raise DataFormatError(
        f"{path}: unknown data file type {suffix!r}; use one of {', '.join(SUFFIXES)}"
    )


def _tidy(exc: Exception) -> str:
    return " ".join(str(exc).split()).replace("Error tokenizing data. C error: ", "")


def as_example(value: Any) -> Any:
    """An input example given as a path is read; anything else is used as is."""
    from pathlib import Path

    if isinstance(value, str | Path):
        return read(Path(value))
    return value
