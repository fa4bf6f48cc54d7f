"""``--param`` and ``--metric`` values fuzzed on `commit`: KEY=VALUE where both sides
are arbitrary text, JSON of every type, huge numbers, NaN and Infinity, nested
structures (deep enough to reach the parser's recursion limit, yet short enough for
one argument of a real command line: 128 KiB on Linux).

The README: values are JSON when they parse, text otherwise; metrics must be numbers
(finite ones: a NaN cannot be compared by a gate). So: an item without ``=`` or with
an empty key, or a metric that is not a finite number, is bad input (2); anything else
is stored, and ``show --json`` gives back exactly the values given.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from fuzzkit import BAD_INPUT, OPEN, fuzz_settings, is_json_finite_number, junk, run_checked
from hypothesis import given
from hypothesis import strategies as st

if TYPE_CHECKING:
    from collections.abc import Callable

    from fuzzkit import Cli, Example

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()  # NaN and ±Infinity: json.dumps writes them as NaN, Infinity
    | st.text(max_size=10)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)


class Long(str):
    """A long input that hypothesis shows as the expression that makes it (a 200 kB
    repr of a falsifying example is a warning, hence an error, of its own)."""

    def __new__(cls, value: str, expression: str) -> Long:
        made = super().__new__(cls, value)
        made.expression = expression
        return made

    expression: str

    def __repr__(self) -> str:
        return self.expression


specials = st.sampled_from(
    [
        "",
        "NaN",
        "-Infinity",
        "1e999",
        "-1e999",
        "1E400",
        "-0",
        "0.1",
        Long("1" * 4301, "'1' * 4301"),  # past int()'s digit limit: not JSON
        Long("9" * 400, "'9' * 400"),  # a finite int too big for a float
        "[1, 2",
        "true",
        "null",
        '"quoted"',
        "0x10",
        "١٢",  # Arabic-Indic digits
        "1_000",
    ]
)
deep = st.sampled_from(
    [
        # Past the parser's recursion limit:
        Long("[" * 5000 + "]" * 5000, "'[' * 5000 + ']' * 5000"),
        Long('{"a":' * 2000 + "1" + "}" * 2000, """'{"a":' * 2000 + '1' + '}' * 2000"""),
        # Within it, but past what showing the version can recurse through:
        Long("[" * 500 + "]" * 500, "'[' * 500 + ']' * 500"),
    ]
)
raw_values = (
    specials
    | json_values.map(lambda v: json.dumps(v, allow_nan=True))
    | st.text()
    | junk
    | (st.nothing() if "deep-json-value" in OPEN else deep)
)
keys = st.text(max_size=20) | st.sampled_from(["", "lr", "f1", "x" * 1000, "a b", "\x00", "k\n"])
if "pair-key-unquoted" in OPEN:
    keys = keys.filter(lambda key: "\n" not in key)
# (key, value), or (text, None): an item that may have no '=' at all.
items = st.tuples(keys, raw_values) | st.tuples(st.text(max_size=20), st.none())


def item(pair: tuple[str, str | None]) -> str:
    key, raw = pair
    return key if raw is None else f"{key}={raw}"


def value_of(raw: str) -> Any:
    """What README says a value is: JSON when it parses, else the text itself."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw


def storable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        return False
    return True


def finite(value: Any) -> bool:
    try:
        return is_json_finite_number(value)
    except OverflowError:  # an int too big for a float
        return False


@fuzz_settings(3)
@given(params=st.lists(items, max_size=3), metrics=st.lists(items, max_size=3))
def test_params_and_metrics(
    fresh: Callable[[], Example],
    cli: Cli,
    params: list[tuple[str, str | None]],
    metrics: list[tuple[str, str | None]],
) -> None:
    ex = fresh()
    blob = ex.scratch / "weights.bin"
    blob.write_bytes(b"fuzz")
    args = ["commit", "churn", str(blob), "-m", "fuzz"]
    for pair in params:
        args += ["--param", item(pair)]
    for pair in metrics:
        args += ["--metric", item(pair)]
    split = [(k, s, value_of(raw)) for k, s, raw in (item(p).partition("=") for p in params)]
    msplit = [(k, s, value_of(raw)) for k, s, raw in (item(p).partition("=") for p in metrics)]
    # A key given twice: the last value counts (as in a dict), and only it is judged.
    want_params = {k: v for k, _, v in split}
    want_metrics = {k: v for k, _, v in msplit}
    bad = (
        any(not sep or not k for k, sep, _ in split + msplit)
        or not all(finite(v) for v in want_metrics.values())
        or not all(storable(v) for v in want_params.values())
    )
    res = run_checked(cli, ex, *args, codes={BAD_INPUT}, succeeds=not bad)
    if res.code != 0:
        return
    shown = run_checked(cli, ex, "show", "churn", "--json", changes=False, succeeds=True)
    version = json.loads(shown.out, parse_constant=_no_constant)  # strict JSON out
    assert version["params"] == want_params
    got = version["metrics"]
    assert got.keys() == want_metrics.keys()
    for key, value in want_metrics.items():
        assert math.isclose(got[key], value, rel_tol=1e-15), (key, got[key], value)


def _no_constant(name: str) -> Any:
    raise AssertionError(f"show --json printed {name}, which is not JSON")
