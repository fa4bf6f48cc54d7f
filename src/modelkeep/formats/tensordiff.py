"""Tensor-level comparison of two safetensors files, reading only what differs."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

_NUMPY = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "U16": "uint16",
    "U32": "uint32",
    "U64": "uint64",
    "BOOL": "bool",
}


@dataclass(frozen=True, slots=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    begin: int  # absolute offsets in the file
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def header(head: bytes) -> dict[str, TensorInfo]:
    """Tensors of a safetensors file from its first bytes (8-byte length + JSON)."""
    (length,) = struct.unpack_from("<Q", head, 0)
    meta = json.loads(head[8 : 8 + length])
    start = 8 + length
    return {
        name: TensorInfo(
            info["dtype"],
            tuple(info["shape"]),
            start + info["data_offsets"][0],
            start + info["data_offsets"][1],
        )
        for name, info in meta.items()
        if name != "__metadata__"
    }


def as_float(raw: bytes, dtype: str) -> Any:
    import numpy as np

    if dtype == "BF16":  # bfloat16 is the top half of a float32
        return (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
    name = _NUMPY.get(dtype)
    if name is None:
        return None
    return np.frombuffer(raw, dtype=name).astype(np.float64)


@dataclass
class TensorDiff:
    """Tensors added, removed, reshaped and changed (with relative L2 change)."""

    path: str
    total: int
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reshaped: list[tuple[str, list[int], list[int]]] = field(default_factory=list)
    changed: dict[str, float | None] = field(default_factory=dict)
    params_total: int = 0
    params_changed: int = 0

    @property
    def summary(self) -> str:
        touched = len(self.changed) + len(self.reshaped) + len(self.added)
        share = 100 * self.params_changed / self.params_total if self.params_total else 0.0
        text = f"{touched} of {self.total} tensors changed, {share:.1f} % of parameters"
        if self.removed:
            text += f", {len(self.removed)} removed"
        return text

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["summary"] = self.summary
        return out


def compare(
    path: str,
    head_a: bytes,
    head_b: bytes,
    read_a: Callable[[int, int], bytes],
    read_b: Callable[[int, int], bytes],
    same: Callable[[TensorInfo, TensorInfo], bool],
) -> TensorDiff:
    """``same(a, b)`` says, without reading, whether two tensors' bytes are identical
    (equal stored chunks); only tensors that are not get read and measured."""
    import numpy as np

    ta, tb = header(head_a), header(head_b)
    diff = TensorDiff(path, total=len(tb), params_total=sum(t.numel for t in tb.values()))
    diff.removed = sorted(ta.keys() - tb.keys())
    diff.added = sorted(tb.keys() - ta.keys())
    diff.params_changed = sum(tb[n].numel for n in diff.added)
    for name in sorted(ta.keys() & tb.keys()):
        a, b = ta[name], tb[name]
        if a.shape != b.shape or a.dtype != b.dtype:
            diff.reshaped.append((name, list(a.shape), list(b.shape)))
            diff.params_changed += b.numel
            continue
        if same(a, b):
            continue
        va = as_float(read_a(a.begin, a.end), a.dtype)
        vb = as_float(read_b(b.begin, b.end), b.dtype)
        if va is None or vb is None:
            rel = None
        else:
            base = float(np.linalg.norm(va))
            delta = float(np.linalg.norm(vb - va))
            if delta == 0.0:
                continue  # same values, different bytes (e.g. -0.0): unchanged
            rel = delta / base if base else math.inf
        diff.changed[name] = rel
        diff.params_changed += b.numel
    return diff
