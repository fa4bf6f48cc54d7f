"""Request inputs checked against a served version's signature, before the model runs.

One path for POST /predict ("inputs" rows or "records") and OIP /infer tensors. Every
value is checked against the dtype of its column (or of the tensor signature):

- a number column takes JSON numbers, integers and decimals alike (the model is given
  float64), within the range of the column's dtype; never a string, however numeric,
  never true/false; null only when the model takes missing values (scikit-learn's
  ``allow_nan`` tag), as NaN;
- a bool column takes true or false, nothing else;
- rows are lists of the signature's width; an OIP tensor's datatype must be one of the
  OIP v2 datatypes, fit the column's dtype, and its data must fill its shape.

Anything else is a ``SignatureError`` naming the column (or input) and the row. The usual
request (numbers only) costs one C-level pass over the values (the set of their types)
beside NumPy's own conversion and a vectorised range check; only a request that holds
something else is looked at value by value, to say what is wrong.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from modelkeep import quantities
from modelkeep.errors import SignatureError

if TYPE_CHECKING:
    from collections.abc import Sequence

_F64_MAX = float(np.finfo(np.float64).max)
_NUMBERS: frozenset[type] = frozenset({int, float})
_NUMBERS_OR_NULL: frozenset[type] = frozenset({int, float, type(None)})
_BOOLS: frozenset[type] = frozenset({bool})
# Longest client request id kept (ids are remembered for late labels).
MAX_ID = 256

# OIP v2 tensor datatypes → the NumPy dtype of their values (BYTES: none we can take).
OIP_DATATYPES: dict[str, str | None] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": None,
}
_OIP_OF_DTYPE = {v: k for k, v in OIP_DATATYPES.items() if v is not None} | {"object": "BYTES"}


def oip_type(dtype: str) -> str:
    """The OIP datatype of a NumPy/pandas dtype name (BYTES for anything else)."""
    return _OIP_OF_DTYPE.get(dtype.lower(), "BYTES")


@dataclass(frozen=True)
class Spec:
    """What the values of one column (or of a whole tensor) may be."""

    dtype: str  # as the signature (or the OIP datatype) names it
    boolean: bool = False
    lo: float = -_F64_MAX
    hi: float = _F64_MAX
    integral: bool = False  # integers only: an OIP INT/UINT datatype
    nullable: bool = False  # null is a missing value (NaN): the model takes those

    @property
    def what(self) -> str:
        if self.boolean:
            return f"true or false ({self.dtype})"
        return f"{'an integer' if self.integral else 'a number'} ({self.dtype})"

    @property
    def types(self) -> frozenset[type]:
        """The JSON value types this column takes as they are."""
        if self.boolean:
            return _BOOLS
        return _NUMBERS_OR_NULL if self.nullable else _NUMBERS


def spec_of(dtype: str, nullable: bool = False) -> Spec:
    """The spec of a signature dtype. Dtypes that are no number (object, category,
    datetime) are checked as numbers: the server gives the model float64 either way."""
    if dtype.lower() in ("bool", "boolean"):
        return Spec(dtype, boolean=True)
    try:
        np_dtype = np.dtype(dtype.lower())
    except TypeError:
        return Spec(dtype, nullable=nullable)
    if np_dtype.kind in "iu":
        info = np.iinfo(np_dtype)
        return Spec(dtype, lo=int(info.min), hi=int(info.max), nullable=nullable)
    if np_dtype.kind == "f":
        top = float(np.finfo(np_dtype).max)
        return Spec(dtype, lo=-top, hi=top, nullable=nullable)
    if np_dtype.kind == "b":
        return Spec(dtype, boolean=True)
    return Spec(dtype, nullable=nullable)


@functools.lru_cache(maxsize=256)
def _with_datatype(datatype: str, column: Spec) -> Spec | None:
    """The values a tensor of OIP ``datatype`` may hold for ``column``, or None when the
    datatype does not fit the column (BOOL for numbers, numbers for bool, BYTES)."""
    np_name = OIP_DATATYPES[datatype]
    if np_name is None or (np_name == "bool") != column.boolean:
        return None
    if column.boolean:
        return Spec(datatype, boolean=True)
    sent = spec_of(np_name)
    integral = np.dtype(np_name).kind in "iu"
    return Spec(
        datatype if oip_type(column.dtype) == datatype else f"{datatype} into {column.dtype}",
        lo=max(sent.lo, column.lo),
        hi=min(sent.hi, column.hi),
        integral=integral,
        nullable=column.nullable and not integral,
    )


def _names(names: list[Any], limit: int = 10) -> str:
    """Names a client sent, as an error quotes them: each repr'd and shortened (a name
    may hold a newline), at most ``limit`` of them."""
    shown = ", ".join(quantities.named(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _show(value: Any) -> str:
    """A value as an error message names it."""
    if value is None:
        return "null"
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"a string {value[:24]!r}" + ("…" if len(value) > 24 else "")
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return repr(value)[:40]


def _problem(value: Any, spec: Spec) -> str | None:
    """What is wrong with one value for ``spec`` (None: nothing)."""
    if spec.boolean:
        ok = isinstance(value, bool | np.bool_)
        return None if ok else f"expected {spec.what}, got {_show(value)}"
    if value is None:
        return None if spec.nullable else f"expected {spec.what}, got null"
    if isinstance(value, bool | np.bool_) or not isinstance(
        value, int | float | np.integer | np.floating
    ):
        return f"expected {spec.what}, got {_show(value)}"
    try:
        number = float(value)
    except OverflowError:
        return f"{_show(value)} is out of range for {spec.dtype}"
    if math.isnan(number):
        return None if spec.nullable else f"expected {spec.what}, got NaN"
    if not spec.lo <= value <= spec.hi:
        return f"{_show(value)} is out of range for {spec.dtype}"
    if spec.integral and not number.is_integer():
        return f"expected {spec.what}, got {_show(value)}"
    return None


class _Plan:
    """Specs per column with their bounds as arrays, for checking a batch at once."""

    def __init__(self, specs: Sequence[Spec]) -> None:
        self.specs = tuple(specs)
        self.lo = np.array([s.lo for s in specs], dtype=np.float64)
        self.hi = np.array([s.hi for s in specs], dtype=np.float64)
        self.integral = np.array([s.integral for s in specs])
        self.any_integral = bool(self.integral.any())
        self.nullable = np.array([s.nullable for s in specs])
        self.any_nullable = bool(self.nullable.any())
        # Bounds every column accepts: within them, no column needs looking at.
        self.inner = (float(self.lo.max()), float(self.hi.min()))
        self.unbounded = self.inner == (-_F64_MAX, _F64_MAX)  # float64 columns
        booleans = {s.boolean for s in specs}
        # Array kinds of a batch that one np.asarray may convert (mixed: none).
        self.fast_kinds = "" if len(booleans) > 1 else ("b" if True in booleans else "iuf")

    def spec(self, j: int) -> Spec:
        return self.specs[j if len(self.specs) > 1 else 0]  # one spec: every column's

    def fits(self, arr: np.ndarray) -> bool:
        """Every value within its column's bounds (NaN only where null is allowed)."""
        if not arr.size:
            return True
        # One reduction or two first (NaN fails them; a sum that overflows only sends the
        # batch to the exact check): the check per column costs some µs more.
        if not self.any_integral:
            if self.unbounded:
                if math.isfinite(arr.sum()):
                    return True
            elif self.inner[0] <= arr.min() and arr.max() <= self.inner[1]:
                return True
        ok = (arr >= self.lo) & (arr <= self.hi)  # NaN fails both
        if self.any_integral:
            ok &= ~self.integral | (arr == np.trunc(arr))
        if ok.all():
            return True
        if self.any_nullable:
            ok |= self.nullable & np.isnan(arr)
        return bool(ok.all())


def _bools_among(arr: np.ndarray, data: list[Any], flat: bool) -> bool:
    """Whether JSON true/false hide among numbers: np.asarray made them 1 and 0. A large
    batch with no 0 or 1 in it has none; else the types are looked at (a C-level pass)."""
    if arr.size > 64 and not ((arr == 0) | (arr == 1)).any():
        return False
    return bool in set(map(type, data if flat else chain.from_iterable(data)))


def _column(values: list[Any], spec: Spec, plan: _Plan) -> np.ndarray | None:
    """One column's values as float64, or None when one of them does not fit."""
    if not set(map(type, values)) <= spec.types:
        return None
    try:
        arr = np.asarray(values, dtype=np.float64)  # null → NaN
    except (TypeError, ValueError, OverflowError):
        return None
    return arr if plan.fits(arr) else None


def _explain(values: list[Any], spec: Spec, label: str, noun: str) -> NoReturn:
    """Raise the first problem of a column ``_column`` refused."""
    for i, value in enumerate(values):
        problem = _problem(value, spec)
        if problem is not None:
            raise SignatureError(f"{label}: {problem} at {noun} {i}")
    raise SignatureError(f"{label}: values that do not fit {spec.dtype}")


class Schema:
    """What a served version takes, worked out once at load time."""

    def __init__(
        self,
        rev: str,
        columns: list[str] | None,
        dtypes: dict[str, str],
        width: int | None,
        tensor_dtype: str | None = None,
        nullable: bool = False,
    ) -> None:
        self.rev = rev
        self.columns = columns
        if columns is not None:
            self.width: int | None = len(columns)
            specs = [spec_of(dtypes.get(c, "float64"), nullable) for c in columns]
        else:
            # A tensor (or no signature): one spec for every value.
            self.width = width
            specs = [spec_of(tensor_dtype or "float64", nullable)]
        self._plan = _Plan(specs)
        self._oip_plans: dict[str, _Plan] = {}

    # -- helpers --------------------------------------------------------------------------

    def _label(self, j: int, prefix: str = "") -> str:
        name = f"column {self.columns[j]!r}" if self.columns is not None else f"column {j}"
        return f"{prefix}{name}"

    def _expects(self) -> str:
        if self.columns is not None:
            return f"rows of {self.width} values ({', '.join(self.columns)})"
        return f"rows of {self.width} values"

    def _matrix(
        self, data: list[Any], flat: bool, width: int, plan: _Plan, prefix: str, noun: str
    ) -> np.ndarray:
        """Rows (a list of ``width``-long lists, or one flat row-major list) as a checked
        float64 (rows, width) array."""
        try:
            # Inferred, not float64: strings, null, lists or objects give another kind.
            arr = np.asarray(data)
        except (TypeError, ValueError, OverflowError):
            arr = None
        if (
            arr is not None
            and arr.ndim == (1 if flat else 2)  # a value that is a list makes one more
            and arr.dtype.kind in plan.fast_kinds
            and (plan.fast_kinds == "b" or not _bools_among(arr, data, flat))
        ):
            arr = arr.astype(np.float64, copy=False).reshape(-1, width)
            if plan.fits(arr):
                return arr
        # Something else than plain numbers: column by column, to convert what a column
        # takes (true/false, null) and to name the first value it does not.
        cols = []
        for j in range(width):
            col = data[j::width] if flat else [row[j] for row in data]
            spec = plan.spec(j)
            checked = _column(col, spec, plan if len(plan.specs) == 1 else _Plan([spec]))
            if checked is None:
                _explain(col, spec, self._label(j, prefix), noun)
            cols.append(checked)
        return np.column_stack(cols)

    # -- /predict ------------------------------------------------------------------------

    def rows(self, data: Any, noun: str = "row") -> np.ndarray:
        """{"inputs": [[...], ...]} (or one flat row) as a checked 2-D float64 batch."""
        if not isinstance(data, list):
            raise SignatureError(
                f"inputs must be a list of rows (lists of values), got {_show(data)}"
            )
        if not data:
            raise SignatureError("inputs are empty: send at least one row")
        if not isinstance(data[0], list):
            data = [data]  # one row
        if set(map(type, data)) != {list}:
            i, row = next((i, r) for i, r in enumerate(data) if not isinstance(r, list))
            raise SignatureError(f"{noun} {i} is {_show(row)}, expected a list of values")
        width = self.width if self.width is not None else len(data[0])
        widths = set(map(len, data))
        if widths != {width}:
            i, row = next((i, r) for i, r in enumerate(data) if len(r) != width)
            raise SignatureError(
                f"{noun} {i} has {len(row)} values; {self.rev} expects {self._expects()}"
                if self.width is not None
                else f"{noun} {i} has {len(row)} values, {noun} 0 has {width}: rows must "
                "be of one length"
            )
        if width == 0:
            raise SignatureError(f"{noun}s are empty: send at least one value per {noun}")
        return self._matrix(data, False, width, self._plan, "", noun)

    def records(self, records: Any) -> np.ndarray:
        """{"records": [{column: value}, ...]} in signature order; missing or unknown
        columns are named in the error."""
        if (
            not isinstance(records, list)
            or not records
            or not all(isinstance(r, dict) for r in records)
        ):
            raise SignatureError(
                'records must be a non-empty list of objects: [{"col": value, ...}]'
            )
        if self.columns is None:
            raise SignatureError(f"{self.rev} has no column signature: send inputs as rows")
        wanted = self.columns
        keys = set(wanted)
        for i, rec in enumerate(records):
            if rec.keys() != keys:
                missing = [c for c in wanted if c not in rec]
                extra = sorted(set(rec) - keys)
                parts = []
                if missing:
                    parts.append(f"missing {', '.join(missing)}")
                if extra:
                    parts.append(f"unknown {_names(extra)}")
                raise SignatureError(
                    f"record {i}: {'; '.join(parts)} (expected {', '.join(wanted)})"
                )
        table = [[rec[c] for c in wanted] for rec in records]
        return self.rows(table, noun="record")

    # -- Open Inference Protocol v2 ------------------------------------------------------

    def oip(self, body: Any) -> np.ndarray:
        """OIP inputs: one tensor of rows, or one 1-D tensor per signature column."""
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("inputs"), list)
            or not body["inputs"]
        ):
            raise SignatureError(
                'an OIP request has "inputs": [{"name", "shape", "datatype", "data"}, ...]'
            )
        tensors = [_tensor(k, t) for k, t in enumerate(body["inputs"])]
        names = [t.name for t in tensors]
        if len(set(names)) != len(names):
            twice = next(n for n in names if names.count(n) > 1)
            raise SignatureError(f"input {twice!r} is given twice: send each input once")
        if len(tensors) == 1 and (self.columns is None or len(tensors[0].shape) == 2):
            return self._oip_rows(tensors[0])
        if self.columns is None:
            raise SignatureError(
                f"{self.rev} takes one tensor of rows; got {len(tensors)} input tensors"
            )
        by_name = {t.name: t for t in tensors}
        missing = [c for c in self.columns if c not in by_name]
        unknown = sorted(set(by_name) - set(self.columns))
        if missing or unknown:
            raise SignatureError(
                f"inputs: missing {', '.join(missing) or '-'}; unknown {_names(unknown) or '-'} "
                f"(expected one tensor per column: {', '.join(self.columns)})"
            )
        cols = []
        for j, c in enumerate(self.columns):
            t = by_name[c]
            if len(t.shape) != 1 and t.shape[1:] != [1]:
                raise SignatureError(
                    f"input {c!r}: shape {t.shape}; a column tensor has shape [rows] or [rows, 1]"
                )
            spec = self._oip_spec(t, self._plan.spec(j), f"column {c!r}")
            arr = _column(t.data, spec, _Plan([spec]))
            if arr is None:
                _explain(t.data, spec, f"input {c!r}", "element")
            cols.append(arr)
        lengths = {len(c) for c in cols}
        if len(lengths) != 1:
            raise SignatureError(
                "inputs: every column tensor must have the same length "
                f"(got {', '.join(str(len(c)) for c in cols)})"
            )
        if lengths == {0}:
            raise SignatureError("inputs are empty: send at least one row")
        return np.column_stack(cols)

    def _oip_spec(self, t: _Tensor, column: Spec, what: str) -> Spec:
        spec = _with_datatype(t.datatype, column)
        if spec is None:
            raise SignatureError(
                f"input {t.name!r}: datatype {t.datatype} does not fit {what} ({column.dtype}); "
                f"send {oip_type(column.dtype) if not column.boolean else 'BOOL'}"
            )
        return spec

    def _oip_rows(self, t: _Tensor) -> np.ndarray:
        """One tensor of rows: shape [rows, width], or [width] for one row."""
        shape = t.shape
        if len(shape) == 1:
            shape = [1, shape[0]]
        if len(shape) != 2:
            raise SignatureError(
                f"input {t.name!r}: shape {t.shape}; {self.rev} takes rows: shape "
                f"[rows, {self.width if self.width is not None else 'values'}]"
            )
        n, width = shape
        if self.width is not None and width != self.width:
            raise SignatureError(
                f"input {t.name!r}: shape {t.shape}; {self.rev} expects {self._expects()}"
            )
        if n == 0 or width == 0:
            raise SignatureError(f"input {t.name!r}: shape {t.shape} holds no values")
        plan = self._oip_plans.get(t.datatype)
        if plan is None:
            # _oip_spec refuses a datatype that does not fit a column: only fits are kept.
            plan = _Plan(
                [
                    self._oip_spec(t, spec, self._label(j) if self.columns else "the signature")
                    for j, spec in enumerate(self._plan.specs)
                ]
            )
            self._oip_plans[t.datatype] = plan
        return self._matrix(t.data, True, width, plan, f"input {t.name!r}, ", "row")


@dataclass(frozen=True)
class _Tensor:
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]  # flat, row-major


def _tensor(k: int, t: Any) -> _Tensor:
    """One OIP input tensor, its form checked and its data flattened."""
    if not isinstance(t, dict):
        raise SignatureError(
            f"input {k} is {_show(t)}; each OIP input is {{name, shape, datatype, data}}"
        )
    name = t.get("name")
    if not isinstance(name, str) or not name:
        raise SignatureError(f"input {k}: name must be a non-empty string")
    absent = [key for key in ("shape", "datatype", "data") if key not in t]
    if absent:
        raise SignatureError(
            f"input {name!r}: missing {', '.join(absent)} (each OIP input needs name, shape, "
            "datatype and data)"
        )
    shape = t["shape"]
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise SignatureError(
            f"input {name!r}: shape must be a list of sizes (integers >= 0), got {_show(shape)}"
        )
    datatype = t["datatype"]
    if not isinstance(datatype, str) or datatype not in OIP_DATATYPES:
        shown = repr(datatype) if isinstance(datatype, str) else _show(datatype)
        raise SignatureError(
            f"input {name!r}: datatype {shown} is not an OIP datatype "
            f"(one of {', '.join(OIP_DATATYPES)})"
        )
    data = t["data"]
    if not isinstance(data, list):
        raise SignatureError(f"input {name!r}: data must be a list, got {_show(data)}")
    # Data may be nested as the shape (row-major); only regular nesting is flattened.
    while data and set(map(type, data)) == {list}:
        if len(set(map(len, data))) != 1:
            raise SignatureError(f"input {name!r}: nested data with lists of different lengths")
        data = list(chain.from_iterable(data))
    size = math.prod(shape)
    if len(data) != size:
        raise SignatureError(
            f"input {name!r}: shape {shape} holds {size} values, data has {len(data)}"
        )
    return _Tensor(name, shape, datatype, data)


def request_id(body: Any) -> str | None:
    """The client's request id ("id"), if it gave one: a string or an integer."""
    rid = body.get("id") if isinstance(body, dict) else None
    if rid is None:
        return None
    if isinstance(rid, bool) or not isinstance(rid, str | int):
        raise SignatureError(f'"id" must be a string, got {_show(rid)}')
    rid = str(rid)
    if not rid or len(rid) > MAX_ID:
        raise SignatureError(f'"id" must be 1 to {MAX_ID} characters long')
    return rid
