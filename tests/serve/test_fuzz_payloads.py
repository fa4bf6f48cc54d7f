"""Serving payloads fuzzed with hypothesis against real servers of models with signatures
(a tabular one with named columns, a tensor one): JSON of every shape and type, and valid
payloads with one part replaced or removed, posted to /predict and /v2/models/churn/infer.

The contract: never a 5xx; a 4xx is JSON with a one-line "error"; a 200 has predictions,
and was asked for with numbers only where values go; and no request counts as a model
error (bad input is the client's, never the model's).

Each test runs about ``EXAMPLES`` examples and records how many it ran as the property
``hypothesis_examples`` (in --junitxml); it prints nothing.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from collections.abc import Iterator

EXAMPLES = 200
PREDICT = "/predict"
INFER = "/v2/models/churn/infer"
COLUMNS = ["tenure", "monthly_spend", "support_calls", "age"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and ±Infinity too: not JSON, the server must say so
    | st.text(max_size=12)
    | st.sampled_from(["1.5", "3", "", "FP64", "BOOL", "INT8", "input", "tenure"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=24,
)
odd = scalars | st.just([]) | st.just({}) | st.lists(scalars, max_size=5) | json_values


def valid_payloads(rows: list[list[float]], tabular: bool, path: str) -> list[Any]:
    """Payloads the server answers with 200, for ``rows`` (width 4)."""
    flat = [v for r in rows for v in r]
    if path == PREDICT:
        out: list[Any] = [{"inputs": rows}, {"inputs": rows[0]}, {"inputs": rows, "id": "r-1"}]
        if tabular:
            out.append({"records": [dict(zip(COLUMNS, r, strict=True)) for r in rows]})
        return out
    tensor = {"name": "input", "shape": [len(rows), 4], "datatype": "FP64", "data": flat}
    out = [
        {"inputs": [tensor]},
        {"inputs": [{**tensor, "data": rows, "datatype": "FP32"}], "id": "r-2"},
    ]
    if tabular:
        columns = [
            {"name": c, "shape": [len(rows)], "datatype": "FP64", "data": [r[j] for r in rows]}
            for j, c in enumerate(COLUMNS)
        ]
        out.append({"inputs": columns})
    return out


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, (*prefix, i))


def changed(value: Any, path: tuple[Any, ...], new: Any, delete: bool = False) -> Any:
    """``value`` with the part at ``path`` replaced by ``new`` (or removed)."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy = dict(value) if isinstance(value, dict) else list(value)
    if delete and not rest:
        del copy[head]
    else:
        copy[head] = changed(value[head], rest, new, delete)
    return copy


@st.composite
def mutated(draw: st.DrawFn, bases: list[Any]) -> Any:
    """A valid payload with one part replaced by another JSON value, or removed."""
    base = draw(st.sampled_from(bases))
    path = draw(st.sampled_from(list(paths(base))))
    if path and draw(st.booleans()) and draw(st.booleans()):
        return changed(base, path, None, delete=True)
    return changed(base, path, draw(odd))


def numbers_only(value: Any, depth: int) -> bool:
    """Whether ``value`` is a number, or lists (``depth`` deep at most) of numbers only:
    what the two models here take (no bool column, no missing values)."""
    if isinstance(value, list):
        return depth > 0 and all(numbers_only(v, depth - 1) for v in value)
    return isinstance(value, int | float) and not isinstance(value, bool)


def served_only_numbers(body: Any, path: str) -> bool:
    """A 200's request gave the model numbers, and nothing else, where values go."""
    if path == PREDICT:
        if "inputs" in body:
            return numbers_only(body["inputs"], 2)
        return all(numbers_only(v, 0) for r in body["records"] for v in r.values())
    return all(
        t["datatype"] not in ("BOOL", "BYTES") and numbers_only(t["data"], 8)
        for t in body["inputs"]
    )


def model_errors(url_client: Any) -> float:
    total = 0.0
    for family in text_string_to_metric_families(url_client.get("/metrics").text):
        total += sum(s.value for s in family.samples if s.name == "modelkeep_model_errors_total")
    return total


@pytest.fixture(params=["tabular", "tensor"])
def target(request) -> Iterator[tuple[Any, bool]]:
    """(served, tabular) with a hook that sees every model error of a window."""
    name = "tabular_server" if request.param == "tabular" else "server"
    served = request.getfixturevalue(name)
    errors: list[int] = []
    original = served.follower.windows.error
    served.follower.windows.error = errors.append
    try:
        yield served, request.param == "tabular", errors
    finally:
        served.follower.windows.error = original


@pytest.mark.parametrize("path", [PREDICT, INFER])
def test_payloads_never_get_a_5xx(target, path, data, request):
    served, tabular, errors = target
    rows = [[float(v) for v in r] for r in data.x[:3]]
    bases = valid_payloads(rows, tabular, path)
    for body in bases:  # the bases are valid: the mutations are of real requests
        r = served.http.post(path, json=body)
        assert r.status_code == 200, (body, r.text)
    before = model_errors(served.http)
    tried = 0

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,  # as tests/fuzz: CI must not find a new example on every run
        database=None,  # nothing written into the working tree
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body=json_values | mutated(bases) | st.sampled_from(bases))
    def check(body: Any) -> None:
        nonlocal tried
        tried += 1
        raw = json.dumps(body, allow_nan=True).encode()
        r = served.http.post(path, content=raw, headers={"content-type": "application/json"})
        assert r.status_code < 500, (body, r.status_code, r.text)
        answer = r.json()
        if r.status_code == 200:
            assert isinstance(answer, dict)
            assert served_only_numbers(body, path), body
            if path == PREDICT:
                assert isinstance(answer["predictions"], list)
            else:
                assert isinstance(answer["outputs"][0]["data"], list)
        else:
            assert 400 <= r.status_code < 500
            assert isinstance(answer.get("error"), str), answer
            assert answer["error"], answer
            assert "\n" not in answer["error"], answer
        assert errors == [], (body, r.text)

    check()
    # As record_property does, without its warning under junit_family xunit2.
    request.node.user_properties.append(("hypothesis_examples", tried))
    assert tried >= EXAMPLES // 2  # hypothesis ran the examples asked for, not a handful
    assert model_errors(served.http) == before
