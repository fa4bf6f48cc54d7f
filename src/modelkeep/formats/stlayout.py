"""A safetensors file laid out in memory: its header, then each tensor's own bytes —
written from tensors where they lie (``layout``), read into tensors where it lies
(``tensors``).

``safetensors.torch.save_file`` writes every tensor into a file that a commit would
then read back to hash and store; here the header is built alone and the tensors are
handed over where they lie, so a commit hashes and stores them straight from memory.

The bytes are those ``save_file`` writes: tensors in safetensors' order (descending
dtype, then name), offsets without gaps, the JSON header compact and padded with spaces
to a multiple of 8. The dtype order and names are learnt from the installed library by
saving one element of each dtype, not copied from it. Anything out of the ordinary
(shared storage, sparse or conjugated tensors, a dtype safetensors does not write, a
big-endian machine) returns None, and the caller saves a file as before.
"""

from __future__ import annotations

import json
import math
import struct
import sys
import warnings
from functools import cache
from typing import TYPE_CHECKING, Any

from modelkeep.formats._deps import need

if TYPE_CHECKING:
    from collections.abc import Mapping

    import torch

    from modelkeep.store.inplace import StoredFile

# As safetensors itself refuses headers larger than this.
_MAX_HEADER = 100 << 20


@cache
def _dtypes() -> dict[Any, tuple[int, str]]:
    """torch dtype → (its place in a safetensors file, its header name), for every dtype
    the installed safetensors writes."""
    torch = need("torch", "torch")
    st = need("safetensors.torch", "torch")
    names: dict[Any, str] = {}
    ones: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about its experimental dtypes
        for dtype in {v for v in vars(torch).values() if isinstance(v, torch.dtype)}:
            try:
                one = torch.zeros(1, dtype=dtype)
                header = _read_header(st.save({"x": one}))
            except Exception:  # noqa: S112 - a dtype torch or safetensors cannot write
                continue
            if header["x"]["shape"] != [1]:
                continue  # sub-byte dtypes (float4 pairs) count elements their own way
            names[dtype] = header["x"]["dtype"]
            ones[f"{len(ones):03d}"] = one
    # One element of each, saved together: the file order is safetensors' dtype order.
    header = _read_header(st.save(ones))
    in_file = sorted(ones, key=lambda k: header[k]["data_offsets"])
    rank = {names[ones[k].dtype]: i for i, k in enumerate(in_file)}
    return {dtype: (rank[name], name) for dtype, name in names.items()}


def _read_header(blob: bytes) -> dict[str, Any]:
    (length,) = struct.unpack_from("<Q", blob, 0)
    header: dict[str, Any] = json.loads(blob[8 : 8 + length])
    return header


def shares_storage(tensors: Mapping[str, torch.Tensor]) -> bool:
    seen: set[tuple[str, int]] = set()
    for t in tensors.values():
        storage = t.untyped_storage()
        if storage.data_ptr() == 0 or storage.nbytes() == 0:
            continue
        key = (str(t.device), storage.data_ptr())
        if key in seen:
            return True
        seen.add(key)
    return False


def layout(
    tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> tuple[memoryview, ...] | None:
    """The safetensors file of ``tensors`` as parts (header, then each tensor's bytes
    in file order, empty tensors left out), or None when ``save_file`` must do it."""
    torch = need("torch", "torch")
    if sys.byteorder != "little":
        return None  # safetensors swaps bytes there; leave that to it
    table = _dtypes()
    for t in tensors.values():
        if (
            not isinstance(t, torch.Tensor)
            or t.layout != torch.strided
            or t.dtype not in table
            or t.is_conj()
            or t.is_neg()
            or t.device.type == "meta"
        ):
            return None
    if shares_storage(tensors):
        return None  # save_file refuses it, save_model removes duplicates: let them
    order = sorted(tensors, key=lambda k: (table[tensors[k].dtype][0], k))
    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = dict(sorted(metadata.items()))
    parts: list[memoryview] = []
    offset = 0
    for name in order:
        t = tensors[name].detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous()
        size = t.numel() * t.element_size()
        header[name] = {
            "dtype": table[t.dtype][1],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
        if size:
            # A view of the tensor's own memory; the array keeps the tensor alive.
            parts.append(t.reshape(-1).view(torch.uint8).numpy().data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return (memoryview(struct.pack("<Q", len(text)) + text), *parts)


def tensors(file: StoredFile) -> dict[str, torch.Tensor] | None:
    """The tensors of a stored safetensors file, each backed by the store's bytes where
    they lie (mapped copy-on-write, as ``load_file`` maps its file), in ``load_file``'s
    order; None when the file needs safetensors itself: a dtype this torch cannot name,
    a big-endian machine, or a header that does not add up (safetensors then reads the
    checked-out file and says what is wrong with it)."""
    torch = need("torch", "torch")
    if sys.byteorder != "little" or file.size < 8:
        return None
    (length,) = struct.unpack("<Q", file.read(0, 8))
    if length > _MAX_HEADER or 8 + length > file.size:
        return None
    try:
        header = json.loads(file.read(8, 8 + length))
        by_name = {name: dtype for dtype, (_rank, name) in _dtypes().items()}
        start = 8 + length
        entries = []
        for key, info in header.items():
            if key == "__metadata__":
                continue
            dtype = by_name[info["dtype"]]
            shape = [int(n) for n in info["shape"]]
            begin, end = (start + int(x) for x in info["data_offsets"])
            if (
                math.prod(shape) * dtype.itemsize != end - begin
                or not start <= begin <= end <= file.size
            ):
                return None
            entries.append((begin, end, key, dtype, shape))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    out = {}
    for begin, end, key, dtype, shape in sorted(entries, key=lambda e: (e[0], e[1])):
        if begin == end:
            out[key] = torch.empty(shape, dtype=dtype)
        else:
            out[key] = torch.frombuffer(file.view(begin, end), dtype=dtype).view(shape)
    return out
