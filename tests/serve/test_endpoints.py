"""The HTTP face of a served revision, against a real server: OIP v2, /predict, /metrics,
and bad input (4xx with a message that says what is wrong, never a 500)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import flaky
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.linear_model import LogisticRegression

import modelkeep

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

VERSION_HEADER = "X-Model-Version"
MAX_BODY = 1000


@pytest.fixture(scope="module")
def limited_server(churn_repo, server, serving_factory) -> Iterator[Any]:
    """A second server of the same revision, with a 1000-byte body limit."""
    with serving_factory(churn_repo.root, max_body=MAX_BODY) as served:
        yield served


def oip(rows: Any, name: str = "input", **extra: Any) -> dict[str, Any]:
    arr = np.asarray(rows, dtype=np.float64)
    tensor = {
        "name": name,
        "shape": list(arr.shape),
        "datatype": "FP64",
        "data": arr.ravel().tolist(),
    }
    return {"inputs": [tensor], **extra}


def own(repo: modelkeep.Repo, rev: str, x: Any) -> list[Any]:
    """What the stored model itself predicts."""
    return np.asarray(repo.load(rev).predict(x)).tolist()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text → {(sample name, sorted labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def requests_count(text: str, version: str, endpoint: str, code: str) -> float:
    labels = (("code", code), ("endpoint", endpoint), ("version", version))
    return samples(text).get(("modelkeep_requests_total", labels), 0.0)


# -- health and metadata ------------------------------------------------------------------


def test_health_live_and_ready(server):
    live = server.http.get("/v2/health/live")
    assert live.status_code == 200
    assert live.json() == {"live": True}
    ready = server.http.get("/v2/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True}


def test_model_ready_and_unknown_model(server):
    r = server.http.get("/v2/models/churn/ready")
    assert (r.status_code, r.json()) == (200, {"ready": True})
    assert server.http.get("/v2/models/fraud/ready").status_code == 404


def test_model_metadata(server):
    r = server.http.get("/v2/models/churn")
    assert r.status_code == 200
    assert r.headers[VERSION_HEADER] == "churn:2"
    meta = r.json()
    assert meta["name"] == "churn"
    assert meta["platform"] == "sklearn"
    # churn:1 is the previous target of the alias: kept loaded for an instant rollback.
    assert meta["versions"] == ["1", "2"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [-1]}]
    missing = server.http.get("/v2/models/fraud")
    assert missing.status_code == 404
    assert "churn" in missing.json()["error"]


def test_version_metadata_and_ready(server):
    r = server.http.get("/v2/models/churn/versions/1")
    assert r.status_code == 200
    assert r.headers[VERSION_HEADER] == "churn:1"
    assert r.json()["name"] == "churn"
    ready = server.http.get("/v2/models/churn/versions/1/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    ready = server.http.get("/v2/models/churn/versions/2/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})


def test_version_not_loaded_is_404(server):
    r = server.http.get("/v2/models/churn/versions/3")
    assert r.status_code == 404
    assert "3" in r.json()["error"]
    ready = server.http.get("/v2/models/churn/versions/3/ready")
    assert (ready.status_code, ready.json()) == (404, {"ready": False})
    infer = server.http.post("/v2/models/churn/versions/3/infer", json=oip([[0.0] * 4]))
    assert infer.status_code == 404
    assert "not loaded" in infer.json()["error"]
    assert server.http.get("/v2/models/churn/versions/99").status_code == 404


# -- predictions --------------------------------------------------------------------------


def test_infer_matches_the_model(server, churn_repo, data):
    x = data.x[10:17]
    r = server.http.post("/v2/models/churn/infer", json=oip(x, id="req-1"))
    assert r.status_code == 200, r.text
    assert r.headers[VERSION_HEADER] == "churn:2"
    body = r.json()
    assert body["model_name"] == "churn"
    assert body["model_version"] == "churn:2"
    assert body["id"] == "req-1"
    [out] = body["outputs"]
    assert out["name"] == "predict"
    assert out["shape"] == [7]
    assert out["datatype"] == "INT64"
    assert out["data"] == own(churn_repo, "churn:2", x)


def test_infer_pinned_version_matches_that_version(server, churn_repo, data):
    x = data.x[:40]
    expected = own(churn_repo, "churn:1", x)
    assert expected != own(churn_repo, "churn:2", x), "versions 1 and 2 should differ here"
    r = server.http.post("/v2/models/churn/versions/1/infer", json=oip(x))
    assert r.status_code == 200, r.text
    assert r.headers[VERSION_HEADER] == "churn:1"
    assert r.json()["model_version"] == "churn:1"
    assert r.json()["outputs"][0]["data"] == expected


def test_infer_unknown_model_is_404(server):
    r = server.http.post("/v2/models/fraud/infer", json=oip([[0.0] * 4]))
    assert r.status_code == 404


def test_predict_with_inputs_matches_the_model(server, churn_repo, data):
    x = data.x[20:30]
    r = server.http.post("/predict", json={"inputs": x.tolist()})
    assert r.status_code == 200, r.text
    assert r.headers[VERSION_HEADER] == "churn:2"
    assert _no_id(r.json()) == {
        "predictions": own(churn_repo, "churn:2", x),
        "model_version": "churn:2",
    }


def test_predict_single_flat_row(server, churn_repo, data):
    r = server.http.post("/predict", json={"inputs": data.x[3].tolist()})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == own(churn_repo, "churn:2", data.x[3:4])


def test_predict_with_records_matches_the_model(tabular_server, tabular_repo, data):
    frame = data.frame.iloc[:8]
    r = tabular_server.http.post("/predict", json={"records": frame.to_dict(orient="records")})
    assert r.status_code == 200, r.text
    assert r.headers[VERSION_HEADER] == "churn:1"
    assert _no_id(r.json()) == {
        "predictions": own(tabular_repo, "churn:1", frame),
        "model_version": "churn:1",
    }


def test_predict_rows_on_a_tabular_model(tabular_server, tabular_repo, data):
    frame = data.frame.iloc[8:14]
    r = tabular_server.http.post("/predict", json={"inputs": frame.to_numpy().tolist()})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == own(tabular_repo, "churn:1", frame)


def test_tabular_metadata_lists_columns(tabular_server):
    meta = tabular_server.http.get("/v2/models/churn").json()
    assert [i["name"] for i in meta["inputs"]] == [
        "tenure",
        "monthly_spend",
        "support_calls",
        "age",
    ]
    assert {i["datatype"] for i in meta["inputs"]} == {"FP64"}


def test_infer_one_tensor_per_column(tabular_server, tabular_repo, data):
    frame = data.frame.iloc[14:20]
    inputs = [
        {"name": c, "shape": [len(frame)], "datatype": "FP64", "data": frame[c].tolist()}
        for c in reversed(frame.columns)  # order of the tensors does not matter
    ]
    r = tabular_server.http.post("/v2/models/churn/infer", json={"inputs": inputs})
    assert r.status_code == 200, r.text
    assert r.headers[VERSION_HEADER] == "churn:1"
    assert r.json()["model_version"] == "churn:1"
    assert r.json()["outputs"][0]["data"] == own(tabular_repo, "churn:1", frame)


def test_infer_one_2d_tensor_on_a_tabular_model(tabular_server, tabular_repo, data):
    frame = data.frame.iloc[20:25]
    r = tabular_server.http.post("/v2/models/churn/infer", json=oip(frame.to_numpy()))
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == own(tabular_repo, "churn:1", frame)


# -- metrics ------------------------------------------------------------------------------


def test_metrics_count_requests_per_version_and_time_them(server, data):
    before = server.http.get("/metrics").text
    for i in range(3):
        assert server.http.post("/predict", json={"inputs": data.x[i : i + 2].tolist()}).is_success
    for i in range(2):
        r = server.http.post("/v2/models/churn/versions/1/infer", json=oip(data.x[i : i + 1]))
        assert r.is_success
    assert server.http.post("/predict", json={"inputs": [[1, 2]]}).status_code == 400
    r = server.http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    after = r.text

    def delta(version: str, endpoint: str, code: str) -> float:
        return requests_count(after, version, endpoint, code) - requests_count(
            before, version, endpoint, code
        )

    assert delta("churn:2", "predict", "200") == 3
    assert delta("churn:1", "infer", "200") == 2
    assert delta("churn:2", "predict", "400") == 1

    found = samples(after)
    assert found["modelkeep_request_seconds_count", (("version", "churn:2"),)] >= 3
    assert found["modelkeep_request_seconds_count", (("version", "churn:1"),)] >= 2
    inf = found["modelkeep_request_seconds_bucket", (("le", "+Inf"), ("version", "churn:2"))]
    assert inf == found["modelkeep_request_seconds_count", (("version", "churn:2"),)]
    buckets = [
        value
        for (sample, labels), value in found.items()
        if sample == "modelkeep_request_seconds_bucket" and ("version", "churn:2") in labels
    ]
    assert len(buckets) > 5
    assert found["modelkeep_request_seconds_sum", (("version", "churn:2"),)] > 0


# -- bad input: 4xx that says what is wrong -----------------------------------------------


@pytest.mark.parametrize("path", ["/predict", "/v2/models/churn/infer"])
def test_wrong_column_count_is_400_naming_the_expected_count(server, path):
    body = {"inputs": [[1.0, 2.0, 3.0]]} if path == "/predict" else oip([[1.0, 2.0, 3.0]])
    r = server.http.post(path, json=body)
    assert r.status_code == 400
    message = r.json()["error"]
    assert "4" in message
    assert "3" in message


@pytest.mark.parametrize(
    "inputs",
    [
        [[1.0, "abc", 3.0, 4.0]],
        [[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]],  # ragged
        [[[1.0, 2.0, 3.0, 4.0]]],  # 3-D
        [],
        "abc",
        {"a": 1},
        7,
    ],
)
def test_bad_inputs_are_400(server, inputs):
    r = server.http.post("/predict", json={"inputs": inputs})
    assert r.status_code == 400, r.text
    assert r.json()["error"]


def test_oip_non_numbers_and_bad_shape_are_400(server):
    tensor = {"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [1, "x", 3, 4]}
    r = server.http.post("/v2/models/churn/infer", json={"inputs": [tensor]})
    assert r.status_code == 400
    assert "input" in r.json()["error"]
    tensor = {"name": "input", "shape": [2, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}
    r = server.http.post("/v2/models/churn/infer", json={"inputs": [tensor]})
    assert r.status_code == 400
    assert "[2, 4]" in r.json()["error"]


@pytest.mark.parametrize(
    "body",
    [{}, {"inputs": []}, {"inputs": [{"name": "input"}]}, {"inputs": "abc"}, [1, 2]],
)
def test_malformed_oip_requests_are_400(server, body):
    r = server.http.post("/v2/models/churn/infer", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]


def test_predict_without_inputs_or_records_is_400(server):
    for body in ({"rows": [[1, 2, 3, 4]]}, [[1, 2, 3, 4]], "inputs"):
        r = server.http.post("/predict", json=body)
        assert r.status_code == 400
        assert "inputs" in r.json()["error"]


def test_records_on_a_tensor_model_are_400(server):
    r = server.http.post("/predict", json={"records": [{"a": 1.0}]})
    assert r.status_code == 400
    assert "signature" in r.json()["error"]


def record(data, i: int = 0) -> dict[str, Any]:
    return data.frame.iloc[i].to_dict()


def test_record_missing_a_column_is_400_naming_it(tabular_server, data):
    rec = record(data)
    del rec["support_calls"]
    r = tabular_server.http.post("/predict", json={"records": [record(data, 1), rec]})
    assert r.status_code == 400
    message = r.json()["error"]
    assert "missing support_calls" in message
    assert "record 1" in message


def test_record_with_an_unknown_column_is_400_naming_it(tabular_server, data):
    rec = {**record(data), "shoe_size": 44}
    r = tabular_server.http.post("/predict", json={"records": [rec]})
    assert r.status_code == 400
    assert "unknown shoe_size" in r.json()["error"]


def test_record_with_a_non_number_is_400_naming_the_column(tabular_server, data):
    for bad in ("twelve", True, [1], {"v": 1}):
        rec = {**record(data), "tenure": bad}
        r = tabular_server.http.post("/predict", json={"records": [rec]})
        assert r.status_code == 400, (bad, r.text)
        assert "tenure" in r.json()["error"]


@pytest.mark.parametrize("records", ["abc", [1, 2], {"tenure": 1}])
def test_records_not_a_list_of_objects_are_400(tabular_server, records):
    r = tabular_server.http.post("/predict", json={"records": records})
    assert r.status_code == 400
    assert "records" in r.json()["error"]


def test_oip_per_column_missing_or_unknown_is_400_naming_it(tabular_server, data):
    frame = data.frame.iloc[:3]
    inputs = [
        {"name": c, "shape": [3], "datatype": "FP64", "data": frame[c].tolist()}
        for c in ["tenure", "monthly_spend", "age"]
    ]
    inputs.append({"name": "shoe_size", "shape": [3], "datatype": "FP64", "data": [1, 2, 3]})
    r = tabular_server.http.post("/v2/models/churn/infer", json={"inputs": inputs})
    assert r.status_code == 400
    message = r.json()["error"]
    assert "missing support_calls" in message
    assert "unknown shoe_size" in message


def test_oip_per_column_non_numbers_and_ragged_are_400(tabular_server, data):
    frame = data.frame.iloc[:3]
    inputs = [
        {"name": c, "shape": [3], "datatype": "FP64", "data": frame[c].tolist()}
        for c in frame.columns
    ]
    inputs[2]["data"] = ["a", "b", "c"]
    r = tabular_server.http.post("/v2/models/churn/infer", json={"inputs": inputs})
    assert r.status_code == 400
    assert "support_calls" in r.json()["error"]
    inputs[2]["data"] = [1.0, 2.0]
    r = tabular_server.http.post("/v2/models/churn/infer", json={"inputs": inputs})
    assert r.status_code == 400
    assert "shape [3] holds 3 values, data has 2" in r.json()["error"]
    inputs[2]["shape"] = [2]
    r = tabular_server.http.post("/v2/models/churn/infer", json={"inputs": inputs})
    assert r.status_code == 400
    assert "same length" in r.json()["error"]


@pytest.mark.parametrize("path", ["/predict", "/v2/models/churn/infer"])
def test_malformed_json_is_400(server, path):
    r = server.http.post(
        path, content=b'{"inputs": [[1, 2', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert "malformed JSON" in r.json()["error"]


@pytest.mark.parametrize("path", ["/predict", "/v2/models/churn/infer"])
@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_415(server, path, ctype):
    headers = {"content-type": ctype} if ctype else {}
    r = server.http.post(path, content=b'{"inputs": [[1, 2, 3, 4]]}', headers=headers)
    assert r.status_code == 415
    assert "application/json" in r.json()["error"]


def test_json_with_charset_is_accepted(server):
    r = server.http.post(
        "/predict",
        content=b'{"inputs": [[1, 2, 3, 4]]}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 200


@pytest.mark.parametrize("path", ["/predict", "/v2/models/churn/infer"])
def test_body_over_the_limit_is_413(limited_server, path):
    rows = [[0.123456789] * 4] * 40  # well over 1000 bytes
    body = {"inputs": rows} if path == "/predict" else oip(rows)
    r = limited_server.http.post(path, json=body)
    assert r.status_code == 413
    assert str(MAX_BODY) in r.json()["error"]
    # Under the limit is fine, and the server is fine afterwards.
    small = {"inputs": rows[:2]} if path == "/predict" else oip(rows[:2])
    assert limited_server.http.post(path, json=small).status_code == 200
    assert limited_server.version() == "churn:2"


def test_streamed_body_over_the_limit_is_413(limited_server):
    """Without Content-Length (chunked), the limit is checked on the bytes read."""

    def chunks() -> Iterator[bytes]:
        yield b'{"inputs": ['
        for _ in range(60):
            yield b"[0.123456789, 0.1, 0.2, 0.3],"
        yield b"[1, 2, 3, 4]]}"

    r = limited_server.http.post(
        "/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert "over the 1000-byte limit" in r.json()["error"]


def test_bad_input_never_gives_500_across_many_shapes(server, tabular_server):
    """A sweep of odd bodies over both servers and both endpoints: 4xx, never 5xx."""
    bodies: list[Any] = [
        None,
        1,
        "x",
        [],
        {"inputs": None},
        {"inputs": [[None, None, None]]},
        {"inputs": [["1", "2", "3"]]},
        {"inputs": [{"name": "input", "shape": "x", "data": [1, 2, 3, 4]}]},
        {"inputs": [{"name": "input", "shape": [1, 4], "data": "abcd"}]},
        {"inputs": [{"name": "input", "shape": [1, 4], "data": {"a": 1}}]},
        {"inputs": [{"name": "input", "shape": [-1, 3], "data": [1, 2, 3, 4]}]},
        {"records": None},
        {"records": [{}]},
        {"records": [None]},
    ]
    for served in (server, tabular_server):
        for path in ("/predict", "/v2/models/churn/infer"):
            for body in bodies:
                r = served.http.post(path, json=body)
                assert 400 <= r.status_code < 500, (path, body, r.status_code, r.text)


def test_several_oip_tensors_for_a_tensor_model_is_400(server, data):
    x = data.x[:3]
    inputs = [
        {"name": "a", "shape": [3, 2], "datatype": "FP64", "data": x[:, :2].ravel().tolist()},
        {"name": "b", "shape": [3, 2], "datatype": "FP64", "data": x[:, 2:].ravel().tolist()},
    ]
    r = server.http.post("/v2/models/churn/infer", json={"inputs": inputs})
    assert r.status_code == 400, r.text


def test_oip_shape_that_is_not_a_list_on_a_tabular_model_is_400(tabular_server):
    body = {"inputs": [{"name": "tenure", "shape": 3, "datatype": "FP64", "data": [1, 2, 3]}]}
    r = tabular_server.http.post("/v2/models/churn/infer", json=body)
    assert r.status_code == 400, r.text


# -- a model that raises ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/predict", "/v2/models/churn/infer"])
def test_model_error_is_500_with_an_error_id_and_the_server_stays_up(
    flaky_server, data, path, caplog
):
    caplog.set_level(logging.ERROR, logger="modelkeep.serve")
    bad = [[flaky.BOOM, 0.0, 0.0, 0.0]]
    body = {"inputs": bad} if path == "/predict" else oip(bad)
    before = flaky_server.http.get("/metrics").text
    r = flaky_server.http.post(path, json=body)
    assert r.status_code == 500
    payload = r.json()
    assert payload["error_id"]
    assert payload["error_id"] in payload["error"]
    assert payload["model_version"] == "churn:1"
    assert "FlakyModel refuses" not in payload["error"]  # no internals leak to clients
    # The server log has the id, and what went wrong.
    logged = [r.getMessage() for r in caplog.records if payload["error_id"] in r.getMessage()]
    assert logged
    assert "FlakyModel refuses" in logged[0]
    # A second failure gets another id; the server keeps serving.
    again = flaky_server.http.post(path, json=body).json()
    assert again["error_id"] != payload["error_id"]
    ok = flaky_server.http.post("/predict", json={"inputs": data.x[:2].tolist()})
    assert ok.status_code == 200
    assert ok.headers[VERSION_HEADER] == "churn:1"
    assert flaky_server.http.get("/v2/health/ready").status_code == 200
    after = flaky_server.http.get("/metrics").text
    errors = ("modelkeep_model_errors_total", (("version", "churn:1"),))
    assert samples(after)[errors] - samples(before).get(errors, 0) == 2
    endpoint = path.rsplit("/", 1)[-1]
    assert (
        requests_count(after, "churn:1", endpoint, "500")
        - requests_count(before, "churn:1", endpoint, "500")
        == 2
    )


def test_model_error_response_names_the_version_in_the_header(flaky_server):
    r = flaky_server.http.post("/predict", json={"inputs": [[flaky.BOOM, 0.0, 0.0, 0.0]]})
    assert r.status_code == 500
    assert r.headers.get(VERSION_HEADER) == "churn:1"


# -- predictions the JSON writer must handle ----------------------------------------------


def test_string_labels_are_served(tmp_path: Path, data, serving_factory):
    """Classes named by strings (e.g. "churned"/"stayed") are served as strings."""
    labels = np.where(data.y == 1, "churned", "stayed")
    with modelkeep.Repo.init(tmp_path / "repo") as repo:
        model = LogisticRegression().fit(data.x, labels)
        repo.commit("churn", model, input_example=data.x[:5])
        repo.set_alias("churn@production", "churn:1")
        with serving_factory(repo.root) as served:
            r = served.http.post("/predict", json={"inputs": data.x[:4].tolist()})
            assert r.status_code == 200, r.text
            assert r.json()["predictions"] == model.predict(data.x[:4]).tolist()
            r = served.http.post("/v2/models/churn/infer", json=oip(data.x[:4]))
            assert r.status_code == 200, r.text
            assert r.json()["outputs"][0]["data"] == model.predict(data.x[:4]).tolist()


def _no_id(body: dict) -> dict:
    """The body without the feedback id every prediction response carries."""
    assert isinstance(body.pop("id", None), str)
    return body
