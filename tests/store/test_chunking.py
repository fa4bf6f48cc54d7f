"""Where files are cut: safetensors tensor boundaries first, content-defined chunking otherwise."""

from __future__ import annotations

import json
import struct

import blake3
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save

from modelkeep.store.chunking import Chunker, ChunkParams, safetensors_spans

SMALL = ChunkParams(
    min_size=1 << 10, avg_size=4 << 10, max_size=16 << 10, max_tensor_chunk=64 << 10
)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- helpers ----------------------------------------------------------------------


def _random_bytes(seed: int, size: int) -> bytes:
    return np.random.default_rng(seed).bytes(size)


def _raw_safetensors(header: object | bytes, data: bytes = b"") -> bytes:
    """A file laid out like safetensors: u64 header length, header, data."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _header_of(buf: bytes) -> tuple[int, dict[str, object]]:
    (n,) = struct.unpack_from("<Q", buf, 0)
    return 8 + n, json.loads(buf[8 : 8 + n])


def _assert_covers(spans: list[tuple[int, int]], size: int) -> None:
    """Ordered, contiguous, non-empty spans covering exactly ``size`` bytes."""
    cursor = 0
    for offset, length in spans:
        assert offset == cursor, f"gap or overlap at {offset} (expected {cursor})"
        assert length > 0, f"empty span at {offset}"
        cursor += length
    assert cursor == size


def _chunk_ids(buf: bytes, spans: list[tuple[int, int]]) -> list[bytes]:
    return [blake3.blake3(buf[o : o + n]).digest() for o, n in spans]


def _tensors(seed: int, count: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    dtypes = [np.float32, np.float16, np.int64, np.uint8, np.float64, np.int32]
    for i in range(count):
        shape = (int(rng.integers(1, 20)), int(rng.integers(1, 20)))
        dtype = dtypes[i % len(dtypes)]
        out[f"layer{i}.weight"] = (rng.standard_normal(shape) * 100).astype(dtype)
    return out


# -- safetensors_spans ------------------------------------------------------------


def test_safetensors_spans_are_the_header_then_one_span_per_tensor() -> None:
    tensors = _tensors(1)
    buf = save(tensors, metadata={"format": "np"})
    spans = safetensors_spans(memoryview(buf))
    assert spans is not None
    data_start, header = _header_of(buf)
    assert spans[0] == (0, data_start)
    _assert_covers(spans, len(buf))

    expected = sorted(
        (data_start + info["data_offsets"][0], info["data_offsets"][1] - info["data_offsets"][0])
        for name, info in header.items()
        if name != "__metadata__"
    )
    assert spans[1:] == expected
    # Each span after the header holds exactly one tensor's bytes.
    contents = {buf[o : o + n] for o, n in spans[1:]}
    assert contents == {arr.tobytes() for arr in tensors.values()}


def test_safetensors_empty_tensor_gives_no_empty_span() -> None:
    tensors = {
        "a": np.arange(10, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "b": np.arange(7, dtype=np.int64),
    }
    buf = save(tensors)
    spans = safetensors_spans(memoryview(buf))
    assert spans is not None
    _assert_covers(spans, len(buf))
    assert len(spans) == 3  # header, a, b
    assert sorted(n for _, n in spans[1:]) == [10 * 4, 7 * 8]


def test_safetensors_gaps_and_trailing_bytes_are_kept_as_spans() -> None:
    header = {
        "x": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
        "y": {"dtype": "U8", "shape": [4], "data_offsets": [10, 14]},
    }
    buf = _raw_safetensors(header, b"A" * 4 + b"-" * 6 + b"B" * 4 + b"tail")
    spans = safetensors_spans(memoryview(buf))
    assert spans is not None
    _assert_covers(spans, len(buf))
    start = spans[0][1]
    assert spans[1:] == [(start, 4), (start + 4, 6), (start + 10, 4), (start + 14, 4)]


def _truncated_in_header() -> bytes:
    buf = save({"w": np.ones(100, dtype=np.float32)})
    return buf[:20]


def _truncated_in_data() -> bytes:
    buf = save({"w": np.ones(100, dtype=np.float32)})
    return buf[:-1]


@pytest.mark.parametrize(
    "buf",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"123456789", id="shorter-than-a-header"),
        pytest.param(_random_bytes(7, 4096), id="random-garbage"),
        pytest.param(b"PK\x03\x04" + b"\x00" * 100, id="zip"),
        pytest.param(_truncated_in_header(), id="truncated-in-header"),
        pytest.param(_truncated_in_data(), id="truncated-in-data"),
        pytest.param(struct.pack("<Q", 200 << 20) + b"{" + b" " * 100, id="huge-header-length"),
        pytest.param(_raw_safetensors(b"[1, 2, 3]"), id="header-is-a-list"),
        pytest.param(_raw_safetensors(b" {}"), id="header-not-starting-with-brace"),
        pytest.param(_raw_safetensors(b"{not json}"), id="header-not-json"),
        pytest.param(_raw_safetensors(b'{"a": "\xff\xfe"}'), id="header-not-utf8"),
        pytest.param(_raw_safetensors({"w": {"dtype": "F32"}}, b"x" * 8), id="no-offsets"),
        pytest.param(_raw_safetensors({"w": 5}, b"x" * 8), id="tensor-info-not-a-dict"),
        pytest.param(_raw_safetensors({"w": {"data_offsets": [0]}}, b"x" * 8), id="one-offset"),
        pytest.param(
            _raw_safetensors({"w": {"data_offsets": ["a", "b"]}}, b"x" * 8),
            id="offsets-not-numbers",
        ),
        pytest.param(
            _raw_safetensors({"w": {"data_offsets": [-1, 4]}}, b"x" * 8), id="negative-offset"
        ),
        pytest.param(
            _raw_safetensors({"w": {"data_offsets": [6, 2]}}, b"x" * 8), id="end-before-begin"
        ),
        pytest.param(
            _raw_safetensors({"w": {"data_offsets": [0, 9]}}, b"x" * 8), id="past-the-end"
        ),
        pytest.param(
            _raw_safetensors(
                {"a": {"data_offsets": [0, 6]}, "b": {"data_offsets": [4, 8]}}, b"x" * 8
            ),
            id="overlapping-tensors",
        ),
    ],
)
def test_not_safetensors_returns_none(buf: bytes) -> None:
    assert safetensors_spans(memoryview(buf)) is None


def test_deeply_nested_header_returns_none() -> None:
    header = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert safetensors_spans(memoryview(_raw_safetensors(header))) is None


@FAST
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(buf: bytes) -> None:
    spans = safetensors_spans(memoryview(buf))
    if spans is not None:
        _assert_covers(spans, len(buf))


@FAST
@given(
    seed=st.integers(0, 2**16),
    cut=st.integers(0, 10_000),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=3),
)
def test_damaged_safetensors_is_none_or_covered(
    seed: int, cut: int, flips: list[tuple[int, int]]
) -> None:
    buf = bytearray(save(_tensors(seed, count=4)))
    for pos, mask in flips:
        buf[pos % len(buf)] ^= mask
    buf = buf[: cut % (len(buf) + 1)]
    spans = safetensors_spans(memoryview(bytes(buf)))
    if spans is not None:
        _assert_covers(spans, len(buf))
        assert spans[0][0] == 0


# -- Chunker ----------------------------------------------------------------------


def test_chunker_empty_buffer_has_no_spans() -> None:
    assert Chunker(SMALL).spans(memoryview(b"")) == []


@FAST
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(1, 200_000))
def test_chunker_spans_are_contiguous_and_cover_the_buffer(seed: int, size: int) -> None:
    buf = _random_bytes(seed, size)
    spans = Chunker(SMALL).spans(memoryview(buf))
    _assert_covers(spans, size)
    assert all(n <= SMALL.max_size for _, n in spans)
    assert all(n >= SMALL.min_size for _, n in spans[:-1])
    # Deterministic: a copy of the same bytes is cut in the same places.
    assert Chunker(SMALL).spans(memoryview(bytearray(buf))) == spans


@FAST
@given(size=st.integers(1, 100_000), byte=st.integers(0, 255))
def test_chunker_cuts_uniform_data_at_max_size(size: int, byte: int) -> None:
    buf = bytes([byte]) * size
    spans = Chunker(SMALL).spans(memoryview(buf))
    _assert_covers(spans, size)
    assert all(n <= SMALL.max_size for _, n in spans)


def test_small_buffer_is_one_chunk() -> None:
    buf = _random_bytes(3, SMALL.max_size)
    assert Chunker(SMALL).spans(memoryview(buf)) == [(0, SMALL.max_size)]


@FAST
@given(
    sizes=st.lists(st.integers(0, 150_000), min_size=1, max_size=6),
    seed=st.integers(0, 2**32 - 1),
)
def test_chunker_never_cuts_across_a_tensor(sizes: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    tensors = {f"t{i}": rng.integers(0, 256, n, dtype=np.uint8) for i, n in enumerate(sizes)}
    buf = save(tensors)
    spans = Chunker(SMALL).spans(memoryview(buf))
    _assert_covers(spans, len(buf))
    data_start, header = _header_of(buf)
    boundaries = {0, data_start, len(buf)}
    small_tensors = set()
    for info in header.values():
        begin, end = (data_start + x for x in info["data_offsets"])
        boundaries |= {begin, end}
        if 0 < end - begin <= SMALL.max_tensor_chunk:
            small_tensors.add((begin, end - begin))
    # Every tensor boundary is a cut, so no span holds bytes of two tensors.
    for offset, length in spans:
        assert not any(offset < b < offset + length for b in boundaries)
    # A tensor that fits in one chunk is exactly one span, whatever its size.
    assert small_tensors <= set(spans)
    # A larger tensor is cut by content-defined chunking, within its bounds.
    for offset, length in spans:
        if offset >= data_start and (offset, length) not in small_tensors:
            assert length <= SMALL.max_size


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("inserted", [1, 100, 5000])
def test_insertion_leaves_later_chunks_unchanged(seed: int, inserted: int) -> None:
    buf = _random_bytes(seed, 1 << 20)
    mid = len(buf) // 2 + 12345
    edited = buf[:mid] + _random_bytes(seed + 1000, inserted) + buf[mid:]
    chunker = Chunker(SMALL)
    old_spans = chunker.spans(memoryview(buf))
    old = _chunk_ids(buf, old_spans)
    new = set(_chunk_ids(edited, chunker.spans(memoryview(edited))))
    assert len(old) > 100
    lost = [i for i, cid in enumerate(old) if cid not in new]
    # Only the chunk(s) around the insertion point change...
    assert len(lost) <= 3, f"{len(lost)} of {len(old)} chunks changed"
    # ...and they are near it, not every later chunk (as fixed-size cutting would do).
    for i in lost:
        offset, length = old_spans[i]
        assert offset + length >= mid - SMALL.max_size
        assert offset <= mid + 3 * SMALL.max_size


def test_deletion_leaves_later_chunks_unchanged() -> None:
    buf = _random_bytes(5, 1 << 20)
    edited = buf[:300_000] + buf[300_050:]
    chunker = Chunker(SMALL)
    old = _chunk_ids(buf, chunker.spans(memoryview(buf)))
    new = set(_chunk_ids(edited, chunker.spans(memoryview(edited))))
    assert sum(cid not in new for cid in old) <= 3


def test_fixed_offsets_would_not_survive_an_insertion() -> None:
    # A control for the tests above: shifting by one byte changes every fixed-size block,
    # so the shared-chunk measure does tell content-defined cutting apart.
    buf = _random_bytes(9, 1 << 18)
    edited = b"x" + buf
    fixed = [(o, 4096) for o in range(0, len(buf), 4096)]
    old = _chunk_ids(buf, fixed)
    new = set(_chunk_ids(edited, fixed))
    assert sum(cid in new for cid in old) == 0
    cdc_old = _chunk_ids(buf, Chunker(SMALL).spans(memoryview(buf)))
    cdc_new = set(_chunk_ids(edited, Chunker(SMALL).spans(memoryview(edited))))
    assert sum(cid in cdc_new for cid in cdc_old) >= len(cdc_old) - 2


def test_changing_one_tensor_changes_only_its_chunk() -> None:
    rng = np.random.default_rng(11)
    tensors = {f"t{i:02d}": rng.standard_normal((32, 32)).astype(np.float32) for i in range(16)}
    before = save(tensors)
    tensors["t07"] = rng.standard_normal((32, 32)).astype(np.float32)
    after = save(tensors)
    chunker = Chunker(SMALL)
    old = _chunk_ids(before, chunker.spans(memoryview(before)))
    new = _chunk_ids(after, chunker.spans(memoryview(after)))
    assert len(old) == len(new) == 17
    changed = [i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b]
    assert len(changed) == 1
    _, header = _header_of(after)
    data_start = chunker.spans(memoryview(after))[0][1]
    begin, end = header["t07"]["data_offsets"]
    assert chunker.spans(memoryview(after))[changed[0]] == (data_start + begin, end - begin)


def test_chunk_params_json_round_trip() -> None:
    assert ChunkParams.from_json(SMALL.to_json()) == SMALL
    assert ChunkParams.from_json(ChunkParams().to_json()) == ChunkParams()
