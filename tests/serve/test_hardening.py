"""The inference server against clients it should not trust, on real servers:

- labels (which policies act on) only with a repository token of write scope on the
  model (test_feedback_tokens.py), or the deprecated shared secret tested here;
- body limits that hold while a body streams in, chunked or not;
- every input value checked against the signature before the model runs: bad input is
  a 400 naming the column and row, never a 500 counted as a model error.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

import modelkeep
from modelkeep.access.guard import FailureLimiter
from modelkeep.errors import PathNotFoundError, UsageError
from modelkeep.serve.run import prepare

if TYPE_CHECKING:
    from collections.abc import Iterator

# The deprecated shared secret (--feedback-token-file), still taken for one release.
TOKEN = "t0ken-for-the-feedback-tests_42"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMIT = 1024
FEEDBACK = "/v2/models/churn/feedback"
BODY_PATHS = ["/predict", "/v2/models/churn/infer", "/v2/models/churn/versions/1/infer", FEEDBACK]
TYPED = ["tenure", "monthly_spend", "member", "age"]
JSON_TYPE = "application/json"


def model_errors(served: Any) -> float:
    """modelkeep_model_errors_total over every version."""
    total = 0.0
    for family in text_string_to_metric_families(served.http.get("/metrics").text):
        for s in family.samples:
            if s.name == "modelkeep_model_errors_total":
                total += s.value
    return total


def refused(served: Any, path: str, body: Any, *words: str, status: int = 400) -> str:
    """POST ``body``; the answer must be ``status`` with a one-line error holding ``words``."""
    r = served.http.post(path, json=body)
    assert r.status_code == status, (body, r.status_code, r.text)
    message = r.json()["error"]
    assert "\n" not in message, message
    for word in words:
        assert word in message, (word, message)
    return message


@pytest.fixture(scope="module")
def guarded(churn_repo, server, serving_factory) -> Iterator[Any]:
    """churn@production (at churn:2, churn:1 kept) with the deprecated shared secret,
    1 KiB bodies. Its tests send wrong tokens on purpose: the limit on failures per
    address is lifted here (test_feedback_tokens.py tests it)."""
    with serving_factory(churn_repo.root, feedback_token=TOKEN, max_body=LIMIT) as served:
        served.app.state.served.limiter = FailureLimiter(limit=10**6)
        yield served


# -- 1. feedback needs a token --------------------------------------------------------------


def test_feedback_is_on_without_a_secret_and_takes_repository_tokens(server, churn_repo, data):
    rid = server.http.post("/predict", json={"inputs": data.x[:2].tolist()}).json()["id"]
    body = {"id": rid, "value": data.y[:2].tolist()}
    # A server started without a secret takes none: the old secret is just a wrong token.
    r = server.http.post(FEEDBACK, json=body, headers=AUTH)
    assert r.status_code == 401
    assert "not a modelkeep token" in r.json()["error"]
    _, write = churn_repo.tokens.create("alice", "write", "churn")
    r = server.http.post(FEEDBACK, json=body, headers={"Authorization": f"Bearer {write}"})
    assert (r.status_code, r.json()) == (200, {"joined": 2, "unknown_ids": 0})


def test_the_deprecated_secret_and_repository_tokens_are_both_taken(guarded, churn_repo, data):
    _, write = churn_repo.tokens.create("alice", "write", "churn")
    _, read = churn_repo.tokens.create("carol", "read", "churn")
    for headers, status in (
        (AUTH, 200),
        ({"Authorization": f"Bearer {write}"}, 200),
        ({"Authorization": f"Bearer {read}"}, 403),
    ):
        rid = guarded.http.post("/predict", json={"inputs": data.x[:2].tolist()}).json()["id"]
        r = guarded.http.post(
            FEEDBACK, json={"id": rid, "value": data.y[:2].tolist()}, headers=headers
        )
        assert r.status_code == status, r.text


def test_feedback_needs_the_bearer_token(guarded, data):
    rid = guarded.http.post("/predict", json={"inputs": data.x[:2].tolist()}).json()["id"]
    body = {"id": rid, "value": data.y[:2].tolist()}
    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},  # a prefix
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN.upper()}"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"X-Feedback-Token": TOKEN},
    ):
        r = guarded.http.post(FEEDBACK, json=body, headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert "Authorization: Bearer" in r.json()["error"]
    # The label was not taken: it joins now, with the token.
    r = guarded.http.post(FEEDBACK, json=body, headers=AUTH)
    assert (r.status_code, r.json()) == (200, {"joined": 2, "unknown_ids": 0})
    lower = {"authorization": f"bearer {TOKEN}"}  # the scheme is case-insensitive
    assert guarded.http.post(FEEDBACK, json=body, headers=lower).status_code == 404  # joined


def test_the_secret_is_compared_exactly(guarded, data):
    rid = guarded.http.post("/predict", json={"inputs": data.x[:1].tolist()}).json()["id"]
    body = {"id": rid, "value": data.y[:1].tolist()}
    for header in (f"Token {TOKEN}", f"Bearer {TOKEN[1:]}", "Bearer é", f"Bearer {TOKEN} x"):
        # Latin-1 bytes on the wire, as a client may send them.
        raw = {"Authorization": header.encode("latin-1")}
        r = guarded.http.post(FEEDBACK, json=body, headers=raw)
        assert r.status_code == 401, header
    r = guarded.http.post(FEEDBACK, json=body, headers={"Authorization": f"Bearer  {TOKEN}"})
    assert r.status_code == 200


@pytest.mark.parametrize(
    "item",
    [
        {"items": 5},
        {"items": []},
        {"items": [{"id": "a"}]},
        {"id": None, "value": 1},
        {"id": {"a": 1}, "value": 1},
        {"id": "x" * 300, "value": 1},
        {"id": "a", "value": None},
        {"id": "a", "value": [[0, 1]]},
        {"id": "a", "value": [0, "yes"]},
        {"id": "a", "value": []},
        {"id": "a", "value": {"label": 1}},
    ],
)
def test_malformed_feedback_is_400(guarded, item):
    r = guarded.http.post(FEEDBACK, json=item, headers=AUTH)
    assert r.status_code == 400, r.text
    assert "\n" not in r.json()["error"]


def test_labels_of_another_kind_than_the_predictions_are_400(guarded, data):
    rid = guarded.http.post("/predict", json={"inputs": data.x[:2].tolist()}).json()["id"]
    r = guarded.http.post(FEEDBACK, json={"id": rid, "value": ["a", "b"]}, headers=AUTH)
    assert r.status_code == 400
    assert "predicted numbers, got strings" in r.json()["error"]
    # The prediction still waits for its labels.
    r = guarded.http.post(FEEDBACK, json={"id": rid, "value": [1, 0]}, headers=AUTH)
    assert r.json() == {"joined": 2, "unknown_ids": 0}


POLICY = """
[[rule]]
name = "labels say it is wrong"
metric = "accuracy"
below = 0.5
windows = 1
action = "rollback"
cooldown = "0s"
"""


def test_anonymous_labels_cannot_roll_production_back(fresh_churn, serving_factory, data):
    repo, _ = fresh_churn(serve=False)  # churn@production: churn:1 → churn:2
    repo.set_policy("churn", POLICY)
    _, read = repo.tokens.create("carol", "read", "churn")
    _, write = repo.tokens.create("alice", "write", "churn")
    wrong = (1 - data.y).tolist()
    with serving_factory(repo.root, window_rows=20) as served:
        # Ten failures would hold this address (429): this test is about what passes.
        served.app.state.served.limiter = FailureLimiter(limit=10**6)

        def traffic(headers: dict[str, str]) -> list[int]:
            codes = []
            for start in range(0, 100, 20):
                r = served.predict(data.x[start : start + 20].tolist())
                f = served.http.post(
                    FEEDBACK,
                    json={"id": r.json()["id"], "value": wrong[start : start + 20]},
                    headers=headers,
                )
                codes.append(f.status_code)
            return codes

        assert set(traffic({})) == {401}
        assert set(traffic({"Authorization": "Bearer guessed"})) == {401}
        assert set(traffic(AUTH)) == {401}  # a secret this server was not given
        assert set(traffic({"Authorization": f"Bearer {read}"})) == {403}
        time.sleep(1.0)  # ten polls: windows close and are judged
        assert repo.resolve("churn@production").number == 2
        assert served.follower.actions == []
        # The same labels with a write token do move it: the policy works, the gate held.
        deadline = time.monotonic() + 20
        while repo.resolve("churn@production").number == 2:
            assert set(traffic({"Authorization": f"Bearer {write}"})) == {200}
            assert time.monotonic() < deadline, "the policy never rolled back"
            time.sleep(0.2)
        assert repo.resolve("churn@production").number == 1


def test_the_token_is_never_logged(churn_repo, server, caplog, monkeypatch):
    """Not by the app, not by uvicorn's access or trace logs: neither the right token nor
    a wrong one a client sent, the repository's tokens as the deprecated secret."""
    caplog.set_level(1)  # everything, uvicorn's TRACE included
    wrong = "wr0ng-token-sent-by-a-client"
    token, write = churn_repo.tokens.create("alice", "write", "churn")
    _, read = churn_repo.tokens.create("carol", "read", "churn")
    forged = f"mkt_{token.id}_{'Zz' * 22}"
    sent = [TOKEN, wrong, write, read, forged]
    secrets = [*sent, write.split("_", 2)[2], read.split("_", 2)[2]]
    follower, app = prepare(churn_repo.root, "churn@production", feedback_token=TOKEN)
    server_ = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=0, log_config=None, log_level="trace", lifespan="off"
        )
    )
    # Other servers of this process were configured with access_log=False, which stops
    # uvicorn.access from propagating (to caplog) for good, or with uvicorn's own logging
    # config, which stops "uvicorn" from propagating: undone for this one.
    for name in ("uvicorn", "uvicorn.access"):
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
    thread = threading.Thread(target=server_.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server_.started:
            assert time.monotonic() < deadline
            assert thread.is_alive()
            time.sleep(0.02)
        port = server_.servers[0].sockets[0].getsockname()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            rid = http.post("/predict", json={"inputs": [[0.1, 0.2, 0.3, 0.4]]}).json()["id"]
            for token in sent:
                http.post(
                    FEEDBACK,
                    json={"id": rid, "value": [1]},
                    headers={"Authorization": f"Bearer {token}"},
                )
            http.post(FEEDBACK, content=b"{", headers={**AUTH, "content-type": JSON_TYPE})
    finally:
        server_.should_exit = True
        thread.join(timeout=10)
        follower.stop()
    assert any("uvicorn.access" in r.name for r in caplog.records), "no access log to check"
    assert any(FEEDBACK in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        text = record.getMessage() + repr(record.args) + repr(record.__dict__)
        for secret in secrets:
            assert secret not in text, record.__dict__
    failed = [r.getMessage() for r in caplog.records if r.name == "modelkeep.access"]
    assert len(failed) == 2, failed  # wrong, forged: logged with the address and reason


def test_create_app_refuses_an_empty_token(churn_repo, server):
    from modelkeep.serve.app import create_app

    with pytest.raises(UsageError, match="empty"):
        create_app(server.follower, feedback_token="  ")


def test_token_file_is_read_stripped_and_checked(tmp_path: Path, caplog):
    from modelkeep.serve.run import read_token_file

    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\n")
    path.chmod(0o600)
    assert read_token_file(path) == TOKEN
    assert not caplog.records
    path.chmod(0o644)  # as a Kubernetes secret volume: served, with a warning
    assert read_token_file(path) == TOKEN
    assert "readable by other users" in caplog.text
    with pytest.raises(PathNotFoundError, match="does not exist"):
        read_token_file(tmp_path / "missing")
    for text, needle in (("", "empty"), (" \n\t", "empty"), ("a b", "printable ASCII")):
        path.write_text(text)
        with pytest.raises(UsageError, match=needle):
            read_token_file(path)
    path.write_bytes("tökén".encode())
    with pytest.raises(UsageError, match="printable ASCII"):
        read_token_file(path)
    with pytest.raises(UsageError, match="folder"):
        read_token_file(tmp_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELKEEP_")}
    env["NO_COLOR"] = "1"
    return env


@pytest.mark.parametrize(
    ("content", "code", "needle"), [(None, 3, "does not exist"), ("", 2, "empty")]
)
def test_serve_refuses_a_missing_or_empty_token_file(churn_repo, tmp_path, content, code, needle):
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    args = ["modelkeep", "--repo", str(churn_repo.root), "serve", "churn@production"]
    args += ["--port", str(_free_port()), "--feedback-token-file", str(path)]
    proc = subprocess.run(
        args, env=_cli_env(), capture_output=True, text=True, timeout=60, check=False
    )
    message = proc.stderr.strip()
    assert proc.returncode == code, proc.stderr
    assert "\n" not in message, message
    assert "Traceback" not in message, message
    assert message.startswith("error: feedback token file")
    assert needle in message


def _descendants(pid: int) -> list[int]:
    """Processes below ``pid`` (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat_line = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat_line.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.mark.slow
def test_every_worker_takes_the_token_and_none_holds_it_in_its_environment(
    churn_repo, server, tmp_path
):
    """The deprecated shared secret, and a repository token (each worker verifies it
    against the registry itself)."""
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    _, write = churn_repo.tokens.create("alice", "write", "churn")
    port = _free_port()
    args = ["modelkeep", "--repo", str(churn_repo.root), "serve", "churn@production"]
    args += ["--port", str(port), "--workers", "2", "--feedback-token-file", str(path)]
    proc = subprocess.Popen(
        args, env=_cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the server did not become ready"
            try:
                if httpx.get(f"{base}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        workers: set[str] = set()
        outcomes: set[str] = set()
        close = {"Connection": "close"}  # a connection per request: spread over workers
        for i in range(200):
            r = httpx.post(f"{base}/predict", json={"inputs": [[0.1] * 4]}, headers=close)
            rid = r.json()["id"]
            workers.add(rid.split("-")[0])
            auth = AUTH if i % 2 else {"Authorization": f"Bearer {write}"}
            f = httpx.post(
                f"{base}{FEEDBACK}", json={"id": rid, "value": [1]}, headers={**auth, **close}
            )
            assert f.status_code == 200, f.text
            # Joined: the worker that predicted took the label; forwarded: the other did.
            outcomes.add("joined" if f.json()["joined"] else "forwarded")
            if i < 4:  # well under the failures an address may make
                anon = httpx.post(
                    f"{base}{FEEDBACK}", json={"id": rid, "value": [1]}, headers=close
                )
                assert anon.status_code == 401
            if i >= 4 and len(workers) == 2 and outcomes == {"joined", "forwarded"}:
                break
        assert len(workers) == 2, workers
        assert outcomes == {"joined", "forwarded"}, "one worker never answered feedback"
        # The token is in no process's environment or command line, only its file's path.
        pids = [proc.pid, *_descendants(proc.pid)]
        assert len(pids) >= 3, pids  # the supervisor and two workers
        for pid in pids:
            for what in ("environ", "cmdline"):
                with open(f"/proc/{pid}/{what}", "rb") as f:
                    assert TOKEN.encode() not in f.read(), (pid, what)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert TOKEN not in (err or "")
    assert write not in (err or "")
    assert "shared feedback secret is deprecated" in (err or "")


# -- 2. body limits hold while the body streams in ----------------------------------------


def _raw_request(port: int, path: str, head: dict[str, str]) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in head.items()]
    if path == FEEDBACK:
        lines.append(f"Authorization: Bearer {TOKEN}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def _answer(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection (the test fails if it keeps
    waiting for more of the body instead)."""
    got = b""
    while True:
        try:
            part = sock.recv(65536)
        except ConnectionResetError:
            return got
        except TimeoutError:
            raise AssertionError(f"the server waited for the rest of the body: {got!r}") from None
        if not part:
            return got
        got += part


def _port(served: Any) -> int:
    return int(served.url.rsplit(":", 1)[1])


@pytest.mark.parametrize("path", BODY_PATHS)
def test_chunked_body_over_the_limit_is_413_before_it_ends(guarded, path):
    """Chunks past the limit, and the body never finished: the 413 comes anyway, and the
    connection is closed (the rest is never read)."""
    sock = _raw_request(_port(guarded), path, {"Transfer-Encoding": "chunked"})
    with sock:
        chunk = b'{"inputs": [' + b"[0.1, 0.2, 0.3, 0.4]," * 10
        for _ in range(2 * LIMIT // len(chunk) + 1):
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed before the last chunks: fine
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert b"connection: close" in answer.lower()
    assert f"over the {LIMIT}-byte limit".encode() in answer


@pytest.mark.parametrize("path", BODY_PATHS)
def test_content_length_over_the_limit_is_413_before_any_body(guarded, path):
    sock = _raw_request(_port(guarded), path, {"Content-Length": str(10**9)})
    with sock:
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert f"{10**9} bytes is over the {LIMIT}-byte limit".encode() in answer


@pytest.mark.parametrize("path", BODY_PATHS)
def test_a_streamed_body_is_not_read_past_the_limit(guarded, path):
    """An endless body (bounded here at 64 MiB): the 413 arrives after a small part of it
    was sent — what the kernel's socket buffers took — never after all of it."""
    chunks = 64 * 1024
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        yield b'{"inputs": ['
        for _ in range(chunks):
            sent += 1
            yield b"[0.1, 0.2, 0.3, 0.4]," * 48  # ~1 KiB
        yield b"[0, 0, 0, 0]]}"

    headers = {"content-type": JSON_TYPE, **(AUTH if path == FEEDBACK else {})}
    with httpx.Client(timeout=30) as client:
        r = client.post(guarded.url + path, content=body(), headers=headers)
    assert r.status_code == 413, r.text
    assert sent < chunks // 16, f"{sent} of {chunks} chunks were read"  # ~100 here
    # The server is fine afterwards.
    assert guarded.version() == "churn:2"


def test_bodies_under_the_limit_are_served(guarded, data):
    r = guarded.http.post("/predict", json={"inputs": data.x[:3].tolist()})
    assert r.status_code == 200
    chunked = [b'{"inputs": ', json.dumps(data.x[:3].tolist()).encode(), b"}"]
    r = guarded.http.post("/predict", content=iter(chunked), headers={"content-type": JSON_TYPE})
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 3


# -- 3. every value checked against the signature ----------------------------------------


def _typed_frame(data: Any) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "tenure": np.round(np.abs(data.x[:, 0]) * 10).astype(np.int64),
            "monthly_spend": data.x[:, 1],
            "member": data.x[:, 2] > 0,
            "age": (30 + np.round(data.x[:, 3] * 5)).astype(np.int64),
        }
    )
    assert [str(t) for t in frame.dtypes] == ["int64", "float64", "bool", "int64"]
    return frame


@pytest.fixture(scope="module")
def typed(tmp_path_factory, data, serving_factory) -> Iterator[Any]:
    """churn:1 fitted on int64, float64 and bool columns."""
    with modelkeep.Repo.init(tmp_path_factory.mktemp("typed") / "repo") as repo:
        frame = _typed_frame(data)
        repo.commit("churn", LogisticRegression().fit(frame, data.y), input_example=frame[:5])
        repo.set_alias("churn@production", "churn:1")
        with serving_factory(repo.root) as served:
            yield served


@pytest.fixture
def no_model_errors(request) -> Iterator[None]:
    """The servers a test used counted no model error, in /metrics or in a window."""
    served = [request.getfixturevalue(n) for n in ("server", "typed") if n in request.fixturenames]
    calls: list[int] = []
    originals = [s.follower.windows.error for s in served]
    for s in served:
        s.follower.windows.error = calls.append
    try:
        yield
    finally:
        for s, original in zip(served, originals, strict=True):
            s.follower.windows.error = original
    assert calls == []
    for s in served:
        assert model_errors(s) == 0


def typed_row(**values: Any) -> list[Any]:
    row = {"tenure": 3, "monthly_spend": 1.5, "member": True, "age": 41, **values}
    return [row[c] for c in TYPED]


BAD_VALUES = [
    # (column, value, what the message says)
    ("age", None, "expected a number (int64), got null"),
    ("tenure", True, "expected a number (int64), got true"),
    ("monthly_spend", False, "expected a number (float64), got false"),
    ("monthly_spend", "12", "expected a number (float64), got a string '12'"),
    ("tenure", "3", "expected a number (int64), got a string '3'"),
    ("member", 1, "expected true or false (bool), got 1"),
    ("member", "true", "expected true or false (bool), got a string 'true'"),
    ("member", None, "expected true or false (bool), got null"),
    ("age", [41], "expected a number (int64), got a list"),
    ("age", {"v": 41}, "expected a number (int64), got an object"),
    ("age", 10**19, "10000000000000000000 is out of range for int64"),
    ("age", -(2**64), "-1.8446744073709552e+19 is out of range for int64"),  # orjson: a float
]


@pytest.mark.usefixtures("no_model_errors")
@pytest.mark.parametrize(("column", "value", "says"), BAD_VALUES)
def test_a_bad_value_in_inputs_is_400_naming_column_and_row(typed, column, value, says):
    rows = [typed_row(), typed_row(), typed_row(**{column: value})]
    refused(typed, "/predict", {"inputs": rows}, f"column {column!r}: {says}", "at row 2")


@pytest.mark.usefixtures("no_model_errors")
@pytest.mark.parametrize(("column", "value", "says"), BAD_VALUES)
def test_a_bad_value_in_records_is_400_naming_column_and_record(typed, column, value, says):
    records = [dict(zip(TYPED, typed_row(), strict=True)) for _ in range(2)]
    records[1][column] = value
    refused(typed, "/predict", {"records": records}, f"column {column!r}: {says}", "at record 1")


@pytest.mark.usefixtures("no_model_errors")
@pytest.mark.parametrize(("column", "value", "says"), BAD_VALUES)
def test_a_bad_value_in_an_oip_column_is_400_naming_the_input(typed, column, value, says):
    datatypes = {"tenure": "INT64", "monthly_spend": "FP64", "member": "BOOL", "age": "INT64"}
    rows = [typed_row(), typed_row(**{column: value})]
    inputs = [
        {"name": c, "shape": [2], "datatype": datatypes[c], "data": [r[j] for r in rows]}
        for j, c in enumerate(TYPED)
    ]
    # The tensor's datatype is what is expected; INT64 takes integers only.
    says = says.replace("a number (int64)", "an integer (INT64)").replace("(float64)", "(FP64)")
    says = says.replace("(bool)", "(BOOL)").replace("for int64", "for INT64")
    refused(typed, "/v2/models/churn/infer", {"inputs": inputs}, f"input {column!r}", says)


@pytest.mark.usefixtures("no_model_errors")
def test_typed_values_that_fit_are_served(typed, data):
    frame = _typed_frame(data).iloc[:6]
    model_says = typed.http.post(
        "/predict", json={"records": frame.to_dict(orient="records")}
    ).json()["predictions"]
    rows = [[r[c] for c in TYPED] for r in frame.to_dict(orient="records")]
    assert typed.http.post("/predict", json={"inputs": rows}).json()["predictions"] == model_says
    datatypes = {"tenure": "INT32", "monthly_spend": "FP32", "member": "BOOL", "age": "UINT8"}
    inputs = [
        {"name": c, "shape": [6, 1], "datatype": datatypes[c], "data": frame[c].tolist()}
        for c in TYPED
    ]
    r = typed.http.post("/v2/models/churn/infer", json={"inputs": inputs})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == model_says
    # Integers and decimals are one kind for a number column: 41.0 is an age.
    rows[0][3] = 41.0
    assert typed.http.post("/predict", json={"inputs": rows}).status_code == 200


@pytest.mark.usefixtures("no_model_errors")
@pytest.mark.parametrize(
    ("inputs", "says"),
    [
        ([], "inputs are empty"),
        ("abc", "inputs must be a list of rows"),
        (7, "inputs must be a list of rows"),
        (None, "inputs must be a list of rows"),
        ({"tenure": 1}, "inputs must be a list of rows"),
        ([typed_row()[:3]], "row 0 has 3 values; churn:1 expects rows of 4 values (tenure,"),
        ([typed_row(), typed_row()[:3]], "row 1 has 3 values"),
        ([typed_row(), 5], "row 1 is 5, expected a list"),
        ([[typed_row()]], "row 0 has 1 values"),
        ([[]], "row 0 has 0 values"),
        ([[[3], [1.5], [True], [41]]], "column 'tenure': expected a number (int64), got a list"),
        ([[[3], [1.5], [4], [41]]] * 2, "column 'tenure': expected a number (int64), got a list"),
    ],
)
def test_malformed_rows_are_400(typed, inputs, says):
    refused(typed, "/predict", {"inputs": inputs}, says)


@pytest.mark.usefixtures("no_model_errors")
@pytest.mark.parametrize(
    ("tensor", "says"),
    [
        ({"datatype": "FLOAT"}, "datatype 'FLOAT' is not an OIP datatype (one of BOOL,"),
        ({"datatype": "fp64"}, "is not an OIP datatype"),
        ({"datatype": None}, "datatype null is not an OIP datatype"),
        ({"datatype": "BOOL"}, "datatype BOOL does not fit the signature (float64); send FP64"),
        ({"datatype": "BYTES"}, "datatype BYTES does not fit"),
        ({"shape": [2, 4]}, "shape [2, 4] holds 8 values, data has 4"),
        ({"shape": [1, 3], "data": [0.1, 0.2, 0.3]}, "expects rows of 4 values"),
        ({"shape": [1, 2, 2]}, "takes rows"),
        ({"shape": [1, -4]}, "shape must be a list of sizes"),
        ({"shape": [1, True]}, "shape must be a list of sizes"),
        ({"shape": None}, "shape must be a list of sizes"),
        (
            {"data": [0.1, None, 0.3, 0.4]},
            "input 'input', column 1: expected a number (FP64), got null at row 0",
        ),
        ({"data": [0.1, "0.2", 0.3, 0.4]}, "got a string '0.2'"),
        ({"data": [0.1, 0.2, True, 0.4]}, "column 2: expected a number (FP64), got true"),
        ({"data": [[0.1, 0.2], [0.3]]}, "nested data with lists of different lengths"),
        ({"data": "abcd"}, "data must be a list"),
        (
            {"datatype": "INT32", "data": [1, 2, 3, 4.5]},
            "expected an integer (INT32 into float64), got 4.5",
        ),
        ({"datatype": "UINT8", "data": [1, 2, 3, -4]}, "-4 is out of range for UINT8 into float64"),
        ({"datatype": "INT8", "data": [1, 2, 3, 300]}, "300 is out of range for INT8"),
        ({"datatype": "FP16", "data": [1, 2, 3, 1e300]}, "is out of range for FP16 into float64"),
        ({"name": ""}, "name must be a non-empty string"),
    ],
)
def test_bad_oip_tensors_are_400_naming_the_input(server, tensor, says):
    base = {"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [0.1, 0.2, 0.3, 0.4]}
    refused(server, "/v2/models/churn/infer", {"inputs": [{**base, **tensor}]}, says)


@pytest.mark.usefixtures("no_model_errors")
def test_oip_datatype_must_fit_each_column(typed, data):
    rows = [typed_row(), typed_row(member=False)]
    flat = [v for r in rows for v in r]
    tensor = {"name": "input", "shape": [2, 4], "datatype": "FP64", "data": flat}
    refused(
        typed,
        "/v2/models/churn/infer",
        {"inputs": [tensor]},
        "datatype FP64 does not fit column 'member' (bool); send BOOL",
    )
    inputs = [
        {"name": c, "shape": [2], "datatype": "BOOL", "data": [r[j] for r in rows]}
        for j, c in enumerate(TYPED)
    ]
    refused(
        typed,
        "/v2/models/churn/infer",
        {"inputs": inputs},
        "input 'tenure': datatype BOOL does not fit column 'tenure' (int64); send INT64",
    )
    twice = [*inputs, inputs[0]]
    refused(typed, "/v2/models/churn/infer", {"inputs": twice}, "given twice")


@pytest.mark.usefixtures("no_model_errors")
def test_oip_nested_data_in_the_shape_is_accepted(server, data):
    x = data.x[:3]
    tensor = {"name": "input", "shape": [3, 4], "datatype": "FP32", "data": x.tolist()}
    r = server.http.post("/v2/models/churn/infer", json={"inputs": [tensor]})
    assert r.status_code == 200, r.text
    flat = {**tensor, "data": x.ravel().tolist()}
    same = server.http.post("/v2/models/churn/infer", json={"inputs": [flat]})
    assert same.json()["outputs"] == r.json()["outputs"]


@pytest.mark.usefixtures("no_model_errors")
@pytest.mark.parametrize("path", ["/predict", "/v2/models/churn/infer"])
def test_null_for_a_model_without_missing_values_is_400_not_a_model_error(server, path):
    """It used to reach LogisticRegression as NaN: a 500 counted as the model's error."""
    row = [0.1, None, 0.3, 0.4]
    body = (
        {"inputs": [row]}
        if path == "/predict"
        else {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": row}]}
    )
    refused(server, path, body, "column 1: expected a number", "got null")


@pytest.mark.usefixtures("no_model_errors")
@pytest.mark.parametrize(
    "body",
    [{"inputs": [[1, 2, 3, 4]], "id": {"a": 1}}, {"inputs": [[1, 2, 3, 4]], "id": ""}],
)
def test_a_request_id_that_is_no_string_is_400(server, body):
    refused(server, "/predict", body, '"id" must be')


def test_json_has_no_nan_or_infinity(server):
    for text in (
        b'{"inputs": [[NaN, 1, 2, 3]]}',
        b'{"inputs": [[Infinity, 1, 2, 3]]}',
        b'{"inputs": [[1e400, 1, 2, 3]]}',
    ):
        r = server.http.post("/predict", content=text, headers={"content-type": JSON_TYPE})
        assert r.status_code == 400
        assert "malformed JSON" in r.json()["error"]


def test_null_is_a_missing_value_for_a_model_that_takes_them(tmp_path, data, serving_factory):
    frame = pd.DataFrame(data.x, columns=["a", "b", "c", "d"])
    frame.loc[::7, "b"] = np.nan
    model = HistGradientBoostingClassifier(max_iter=5).fit(frame, data.y)
    with modelkeep.Repo.init(tmp_path / "repo") as repo:
        repo.commit("churn", model, input_example=frame[:8])
        repo.set_alias("churn@production", "churn:1")
        with serving_factory(repo.root) as served:
            rows = [[0.1, None, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]]
            r = served.http.post("/predict", json={"inputs": rows})
            assert r.status_code == 200, r.text
            expected = model.predict(
                pd.DataFrame([[0.1, np.nan, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]], columns=frame.columns)
            )
            assert r.json()["predictions"] == expected.tolist()
            records = [dict(zip(frame.columns, row, strict=True)) for row in rows]
            assert served.http.post("/predict", json={"records": records}).status_code == 200
            # Still no string, and no true/false, where a number goes.
            refused(served, "/predict", {"inputs": [[0.1, "0.2", 0.3, 0.4]]}, "column 'b'")
            refused(served, "/predict", {"inputs": [[0.1, True, 0.3, 0.4]]}, "column 'b'")
            assert model_errors(served) == 0


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_descendants_helper_sees_a_child():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        assert child.pid in _descendants(os.getpid())
    finally:
        child.kill()
        child.wait()


@pytest.mark.usefixtures("no_model_errors")
@pytest.mark.parametrize("hidden", [True, False, 1, 0, 1.0, 0.0])
def test_booleans_hidden_in_a_large_batch_are_found(server, data, hidden):
    """NumPy turns true/false among numbers into 1/0: a large batch is looked at by its
    values first, and then by its types if any value is 0 or 1."""
    rows = data.x[:40].tolist()
    rows[33][2] = hidden
    r = server.http.post("/predict", json={"inputs": rows})
    if isinstance(hidden, bool):
        assert r.status_code == 400, r.text
        word = "true" if hidden else "false"
        assert r.json()["error"] == (f"column 2: expected a number (float64), got {word} at row 33")
    else:
        assert r.status_code == 200, r.text


@pytest.mark.usefixtures("no_model_errors")
def test_values_that_are_lists_are_400_even_when_every_one_is(server):
    """[[[0.1], [0.2], …]] makes a regular 3-D array: its values are lists all the same."""
    for rows in ([[[0.1], [0.2], [0.3], [0.4]]], [[[0.1], [0.2], [0.3], [0.4]]] * 30):
        refused(server, "/predict", {"inputs": rows}, "column 0: expected a number (float64)")


class _NoTags:
    """A model of no library we can ask about missing values."""

    def predict(self, x: Any) -> Any:
        return np.zeros(len(x))


@pytest.mark.parametrize(("example", "takes_null"), [([[1.0, None]], True), ([[1.0, 2.0]], False)])
def test_null_is_taken_when_the_versions_example_held_one(example, takes_null):
    """A commit checks its input example against the model: an example with a missing
    value says the model takes them, whichever library it is of."""
    from types import SimpleNamespace

    from modelkeep.errors import SignatureError
    from modelkeep.serve.loaded import Loaded

    artifact = {"example": {"columns": ["a", "b"], "data": example}}
    version = SimpleNamespace(rev="m:1", artifact=artifact)
    loaded = Loaded(version, _NoTags(), ["a", "b"], {"a": "float64", "b": "float64"}, None, False)
    if takes_null:
        x = loaded.rows([[0.5, None]])
        assert np.isnan(x[0, 1])
        assert x[0, 0] == 0.5
    else:
        with pytest.raises(SignatureError, match="column 'b': expected a number"):
            loaded.rows([[0.5, None]])


@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("GET", "/ready"), ("POST", "/infer")])
def test_a_version_number_in_a_path_past_any_version_is_404_not_500(server, method, suffix):
    """Starlette's int convertor takes any number of digits, and int() refuses past 4,300
    with a ValueError: a 500 for one GET."""
    for digits in ("9" * 5000, "9" * 11):
        path = f"/v2/models/churn/versions/{digits}{suffix}"
        r = server.http.request(method, path, json={} if method == "POST" else None)
        assert r.status_code == 404, (len(digits), r.text[:200])
    assert server.http.get("/v2/models/churn/versions/2").status_code == 200


def test_names_a_client_sent_are_quoted_in_one_line_errors(tabular_server, data):
    """Found by the payload fuzz on a fresh machine: a tensor named "\\n" broke the line."""
    row = data.x[0].tolist()
    tensors = [
        {"name": name, "shape": [1], "datatype": "FP64", "data": [value]}
        for name, value in zip(["tenure", "monthly_spend", "\n", "age"], row, strict=False)
    ]
    r = tabular_server.http.post("/v2/models/churn/infer", json={"inputs": tensors})
    assert r.status_code == 400
    assert "\n" not in r.json()["error"]
    assert "unknown '\\n'" in r.json()["error"]
    record = dict(zip(["tenure", "monthly_spend", "support_calls", "age"], row, strict=False))
    r = tabular_server.http.post("/predict", json={"records": [{**record, "a\nb": 1}]})
    assert r.status_code == 400
    assert "unknown 'a\\nb'" in r.json()["error"]
