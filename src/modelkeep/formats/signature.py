"""Signatures: the schema of a model's inputs and outputs, inferred from an example.

{"type": "tabular", "columns": [{"name": "age", "dtype": "int64"}, ...]}
{"type": "tensor", "dtype": "float32", "shape": [-1, 20]}       (-1: the batch)
{"type": "tensors", "tensors": {"input_ids": {...tensor...}, ...}}
"""

from __future__ import annotations

from typing import Any

from modelkeep.errors import SignatureError


def _tensor(value: Any) -> dict[str, Any]:
    dtype = str(getattr(value, "dtype", "object")).removeprefix("torch.")
    shape = list(getattr(value, "shape", ()))
    return {"type": "tensor", "dtype": dtype, "shape": [-1, *shape[1:]] if shape else []}


def infer(value: Any) -> dict[str, Any]:
    """The schema of one input or output value."""
    if hasattr(value, "columns") and hasattr(value, "dtypes"):  # a DataFrame
        return {
            "type": "tabular",
            "columns": [{"name": str(c), "dtype": str(t)} for c, t in value.dtypes.items()],
        }
    if hasattr(value, "name") and hasattr(value, "dtype") and hasattr(value, "to_numpy"):
        return _tensor(value.to_numpy())  # a Series
    if isinstance(value, dict):
        return {"type": "tensors", "tensors": {str(k): _tensor(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        import numpy as np

        return _tensor(np.asarray(value))
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return _tensor(value)
    raise SignatureError(
        f"cannot infer a signature from a {type(value).__name__}: give a DataFrame, "
        "a NumPy array, a tensor, or a dict of those"
    )


def check(sig: dict[str, Any], value: Any) -> list[str]:
    """Problems with ``value`` as an input of signature ``sig`` (empty: it fits)."""
    got = infer(value)
    if sig["type"] == "tabular":
        if got["type"] != "tabular":
            return [f"expected a table with columns {[c['name'] for c in sig['columns']]}"]
        have = {c["name"]: c["dtype"] for c in got["columns"]}
        problems = []
        for col in sig["columns"]:
            if col["name"] not in have:
                problems.append(f"missing column {col['name']!r} ({col['dtype']})")
            elif _kind(have[col["name"]]) != _kind(col["dtype"]):
                problems.append(
                    f"column {col['name']!r} is {have[col['name']]}, expected {col['dtype']}"
                )
        return problems
    if sig["type"] == "tensor":
        if got["type"] != "tensor":
            return [f"expected one {sig['dtype']} tensor of shape {sig['shape']}"]
        problems = []
        if _kind(got["dtype"]) != _kind(sig["dtype"]):
            problems.append(f"dtype is {got['dtype']}, expected {sig['dtype']}")
        if got["shape"][1:] != sig["shape"][1:]:
            problems.append(f"shape is {got['shape']}, expected {sig['shape']} (-1: any)")
        return problems
    return []


def _kind(dtype: str) -> str:
    """Numeric kinds that convert safely are one kind: int64 data fits a float model."""
    if dtype.startswith(("int", "uint", "float", "bfloat", "bool")):
        return "number"
    return dtype


def changes(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[tuple[str, bool]]:
    """Differences between two signatures as (text, breaking)."""
    if not a or not b:
        if a or b:
            return [("signature " + ("added" if b else "removed"), False)]
        return []
    out: list[tuple[str, bool]] = []
    ai, bi = a.get("inputs"), b.get("inputs")
    if ai and bi and ai.get("type") == bi.get("type") == "tabular":
        acol = {c["name"]: c["dtype"] for c in ai["columns"]}
        bcol = {c["name"]: c["dtype"] for c in bi["columns"]}
        for name in acol.keys() - bcol.keys():
            out.append((f"input column {name!r} removed", True))
        for name in bcol.keys() - acol.keys():
            out.append((f"input column {name!r} added", False))
        for name in acol.keys() & bcol.keys():
            if acol[name] != bcol[name]:
                out.append((f"input column {name!r}: {acol[name]} → {bcol[name]}", True))
    elif ai != bi:
        out.append((f"inputs: {_brief(ai)} → {_brief(bi)}", True))
    ao, bo = a.get("outputs"), b.get("outputs")
    if ao != bo:
        breaking = _brief_shape(ao) != _brief_shape(bo)
        out.append((f"outputs: {_brief(ao)} → {_brief(bo)}", breaking))
    return sorted(out)


def _brief(s: dict[str, Any] | None) -> str:
    if not s:
        return "none"
    if s["type"] == "tensor":
        return f"{s['dtype']}{s['shape']}"
    if s["type"] == "tabular":
        return f"{len(s['columns'])} columns"
    return f"{len(s.get('tensors', {}))} tensors"


def _brief_shape(s: dict[str, Any] | None) -> Any:
    return None if not s else (s.get("shape"), s.get("type"), _kind(s.get("dtype", "")))
