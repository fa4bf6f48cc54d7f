"""The HTTP face of a served revision: OIP v2 REST, /predict and /metrics.

Handlers read the body themselves and answer with orjson: no per-request schema
objects, nothing done per request that load time could do.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Route

from modelkeep.access.guard import FailureLimiter, TooManyFailures, bearer
from modelkeep.access.tokens import Tokens
from modelkeep.errors import AuthenticationError, ModelkeepError, SignatureError, UsageError
from modelkeep.httpstatus import status_of
from modelkeep.serve.inputs import oip_type, request_id
from modelkeep.serve.windows import labels

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.requests import Request

    from modelkeep.access.guard import TokenCheck
    from modelkeep.registry.records import Token
    from modelkeep.serve.follower import Follower, Snapshot
    from modelkeep.serve.loaded import Loaded
    from modelkeep.serve.peers import Peers

log = logging.getLogger("modelkeep.serve")
JSON = "application/json"
VERSION_HEADER = "X-Model-Version"
KEY_HEADER = "x-request-key"
DEFAULT_MAX_BODY = 8 << 20


def _json(
    body: Any,
    status: int = 200,
    version: str | None = None,
    background: BackgroundTask | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    if version:
        headers = {**(headers or {}), VERSION_HEADER: version}
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        status,
        headers=headers,
        media_type=JSON,
        background=background,
    )


def _error(
    status: int,
    message: str,
    version: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    return _json({"error": message, **extra}, status, version=version, headers=headers)


# Answers sent before the body was read: the connection is closed after them, so that
# the rest of the body is never read (uvicorn would otherwise read and discard it all).
CLOSE = {"Connection": "close"}


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, counted as it arrives: over ``limit`` bytes is a 413 at once,
    before the rest is read, whether the client sent a Content-Length or chunks."""
    length = request.headers.get("content-length")
    # ASCII digits only ("²".isdigit() too), and a length past 18 digits is over any
    # limit before int() meets Python's digit limit.
    if (
        length is not None
        and length.isascii()
        and length.isdigit()
        and (len(length) > 18 or int(length) > limit)
    ):
        raise _Reject(
            413,
            f"body of {length} bytes is over the {limit}-byte limit; send smaller batches",
            CLOSE,
        )
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _Reject(
                    413,
                    f"body is over the {limit}-byte limit (more than {limit} bytes came); "
                    "send smaller batches",
                    CLOSE,
                )
            chunks.append(chunk)
    except ClientDisconnect:
        raise _Reject(400, "the client went away before its body arrived") from None
    # Most bodies come in one piece: no copy then.
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _plain(y: Any) -> Any:
    """Predictions orjson can write: numeric arrays as they are, labels as lists."""
    import numpy as np

    arr = np.asarray(y)
    return arr.tolist() if arr.dtype.kind in "OUSMm" else arr


class _Metrics:
    """Request counters and the last window's figures per version. With several
    workers (``peers``), /metrics adds up every worker's counters; window gauges are
    set by the worker that merges windows, so the most recent value is the whole
    server's."""

    def __init__(self, peers: Peers | None = None) -> None:
        self.peers = peers
        self.registry = CollectorRegistry()
        if peers is not None:
            peers.attach(self.registry)
        self.requests = Counter(
            "modelkeep_requests",
            "Prediction requests",
            ["version", "endpoint", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "modelkeep_request_seconds",
            "Prediction latency",
            ["version"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.errors = Counter(
            "modelkeep_model_errors", "Predictions that raised", ["version"], registry=self.registry
        )
        self.shadow_agree = Counter(
            "modelkeep_shadow_agreement",
            "Shadow answers equal to the primary's",
            ["primary", "candidate"],
            registry=self.registry,
        )
        self.shadow_total = Counter(
            "modelkeep_shadow_compared",
            "Shadow answers compared",
            ["primary", "candidate"],
            registry=self.registry,
        )

        def gauge(name: str, doc: str, labels: list[str]) -> Gauge:
            return Gauge(name, doc, labels, registry=self.registry, multiprocess_mode="mostrecent")

        self.window_rows = gauge("modelkeep_window_rows", "Rows in the last window", ["version"])
        self.window_labelled = gauge(
            "modelkeep_window_labelled", "Labelled rows in the last window", ["version"]
        )
        self.window_errors = gauge(
            "modelkeep_window_errors", "Model errors in the last window", ["version"]
        )
        self.window_drift_share = gauge(
            "modelkeep_window_drift_share",
            "Share of features drifting in the last window",
            ["version"],
        )
        self.window_drifted = gauge(
            "modelkeep_window_drifted", "1 if the last window drifted, else 0", ["version"]
        )
        self.window_feature_drift = gauge(
            "modelkeep_window_feature_drift",
            "Drift statistic per feature in the last window",
            ["version", "feature", "test"],
        )
        self.window_metric = gauge(
            "modelkeep_window_metric",
            "Live quality in the last window (from feedback labels)",
            ["version", "metric"],
        )
        self.window_latency = gauge(
            "modelkeep_window_latency_ms",
            "Latency quantiles in the last window",
            ["version", "quantile"],
        )

    def window(self, body: dict[str, Any]) -> None:
        version = body["version"]
        self.window_rows.labels(version).set(body["rows"])
        self.window_labelled.labels(version).set(body["labelled"])
        self.window_errors.labels(version).set(body["errors"])
        drift = body.get("drift")
        if drift is not None:
            self.window_drift_share.labels(version).set(drift["share"])
            self.window_drifted.labels(version).set(int(drift["drifted"]))
            for f in drift["features"]:
                self.window_feature_drift.labels(version, f["name"], f["test"]).set(f["statistic"])
        for metric, value in body.get("metrics", {}).items():
            self.window_metric.labels(version, metric).set(value)
        for q, ms in body.get("latency_ms", {}).items():
            self.window_latency.labels(version, q).set(ms)

    def exposition(self) -> bytes:
        if self.peers is None:
            return bytes(generate_latest(self.registry))
        return self.peers.exposition(self.registry)


class _Served:
    """What every handler works on: the follower (the loaded versions and their
    windows), the metrics, and the server's limits. Kept in ``app.state.served``."""

    def __init__(
        self,
        follower: Follower,
        max_body: int,
        secret: bytes | None,
        tokens: TokenCheck | None,
        limiter: FailureLimiter,
    ) -> None:
        self.follower = follower
        self.max_body = max_body
        self.secret = secret
        self.tokens = tokens
        self.limiter = limiter
        self.name = follower.model
        self.metrics = _Metrics(follower.peers)
        follower.on_window = self.metrics.window

    async def body_of(self, request: Request) -> Any:
        ctype = request.headers.get("content-type", "")
        if ctype.split(";", 1)[0].strip().lower() != JSON:
            raise _Reject(415, f"send {JSON}, not {ctype or 'no content type'}", CLOSE)
        raw = await read_body(request, self.max_body)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _Reject(400, f"malformed JSON: {exc}") from None

    async def labeller(self, request: Request) -> Response | None:
        """None when ``request`` may post labels (a token of the repository with write
        scope on this model, or the deprecated shared secret); else the answer refusing
        it. A failed authentication counts against the client's address."""
        address = request.client.host if request.client is not None else "unknown"
        need = f"a token with write scope on {self.name}"
        try:
            self.limiter.check(address)
        except TooManyFailures as exc:
            retry = {"Retry-After": str(max(1, round(exc.retry_after))), **CLOSE}
            return _error(429, str(exc), headers=retry)
        challenge = {"WWW-Authenticate": 'Bearer realm="modelkeep feedback"', **CLOSE}
        try:
            plaintext = bearer(request.headers.get("authorization"))
        except AuthenticationError:
            self.limiter.failed(address, "no bearer token")
            return _error(
                401,
                f"feedback needs {need}: send Authorization: Bearer <token>",
                headers=challenge,
            )
        # Header values are latin-1 text (ASGI bytes, decoded by Starlette): back to
        # bytes, compared in constant time.
        if self.secret is not None and hmac.compare_digest(
            plaintext.encode("latin-1"), self.secret
        ):
            return None
        try:
            token = await self._verified(plaintext)
        except AuthenticationError as exc:
            self.limiter.failed(address, str(exc))
            return _error(
                401,
                f"{exc}; feedback needs {need}, sent as Authorization: Bearer <token>",
                headers=challenge,
            )
        except ModelkeepError as exc:
            # The registry could not answer: the client is not at fault, nor counted.
            log.warning("cannot verify a feedback token: %s", exc)
            status = status_of(exc)
            return _error(
                status if status >= 500 else 503,
                f"cannot verify the token now ({exc}); retry later",
                headers=CLOSE,
            )
        if Tokens.allows(token, "write", self.name):
            return None
        # The client knows which model this server serves (it predicts with it): a
        # token that does not reach it is refused as such, not hidden behind a 404.
        if not Tokens.allows(token, "read", self.name):
            why = f"token {token.id} does not reach model {self.name} (it is for {token.models})"
        else:
            why = f"token {token.id} may only read {self.name}"
        return _error(403, f"{why}: feedback needs {need}; ask an admin for one", headers=CLOSE)

    async def _verified(self, plaintext: str) -> Token:
        """The verified token ``plaintext`` is: remembered, else asked of the registry
        in a thread (a registry read must not stall the event loop)."""
        if self.tokens is None:
            raise AuthenticationError("not this server's feedback secret")
        token = self.tokens.cached(plaintext)
        if token is None:
            token = await asyncio.to_thread(self.tokens.verify, plaintext)
        if token.state() != "active":  # expired since it was remembered
            raise AuthenticationError(f"token {token.id} is {token.state()}")
        return token

    def remember(self, loaded: Loaded, rid: str | None, x: Any, y: Any, seconds: float) -> Any:
        """Into the monitoring window; returns the id labels can be sent back with."""
        if not self.follower.monitoring:
            return rid
        return self.follower.windows.add(loaded.version.number, x, y, rid, seconds)

    def refused(self, rej: _Reject | ModelkeepError, endpoint: str) -> Response:
        # Counted under the version being served: refusals are part of its traffic.
        if isinstance(rej, _Reject):
            status, headers, message = rej.status, rej.headers, str(rej)
        else:
            status, headers, message = status_of(rej), None, str(rej)
        snap = self.follower.snapshot
        version = f"{self.name}:{snap.table.primary}" if snap is not None else "-"
        self.metrics.requests.labels(version, endpoint, str(status)).inc()
        return _error(status, message, headers=headers)

    def run(
        self,
        snap: Snapshot,
        loaded: Loaded,
        shadow: int | None,
        rid: str | None,
        x: Any,
        endpoint: str,
    ) -> tuple[Any, Any, BackgroundTask | None] | Response:
        """Predict, count, remember in the window, and schedule the shadow comparison:
        (predictions, the id labels come back with, background task), or the 500."""
        metrics = self.metrics
        start = time.perf_counter()
        try:
            y = _plain(loaded.predict(x))
        except Exception:
            error_id = uuid.uuid4().hex[:12]
            log.exception("prediction failed on %s (error id %s)", loaded.rev, error_id)
            metrics.errors.labels(loaded.rev).inc()
            self.follower.windows.error(loaded.version.number)
            metrics.requests.labels(loaded.rev, endpoint, "500").inc()
            return _error(
                500,
                f"the model raised an error (id {error_id}); see the server log",
                version=loaded.rev,
                error_id=error_id,
                model_version=loaded.rev,
            )
        seconds = time.perf_counter() - start
        metrics.latency.labels(loaded.rev).observe(seconds)
        metrics.requests.labels(loaded.rev, endpoint, "200").inc()
        rid = self.remember(loaded, rid, x, y, seconds)
        return y, rid, self.shadow_task(snap, shadow, x, y, seconds)

    def shadow_task(
        self, snap: Snapshot, shadow: int | None, x: Any, y: Any, primary_seconds: float
    ) -> BackgroundTask | None:
        if shadow is None or shadow not in snap.models:
            return None
        cand = snap.models[shadow]
        labels = (f"{self.name}:{snap.table.primary}", cand.rev)
        stats, metrics = self.follower.shadow, self.metrics

        def compare() -> None:
            import numpy as np

            start = time.perf_counter()
            try:
                other = cand.predict(x)
            except Exception:
                with stats.lock:
                    stats.errors += 1
                return
            seconds = time.perf_counter() - start
            same = int(np.sum(np.asarray(other) == np.asarray(y)))
            total = len(np.asarray(y))
            metrics.shadow_agree.labels(*labels).inc(same)
            metrics.shadow_total.labels(*labels).inc(total)
            with stats.lock:
                stats.compared += total
                stats.agreed += same
                stats.primary_seconds += primary_seconds
                stats.candidate_seconds += seconds

        return BackgroundTask(compare)

    def pick(self, request: Request, pinned: int | None) -> tuple[Snapshot, Loaded, int | None]:
        snap = self.follower.snapshot
        if snap is None:
            raise _Reject(503, "no model version is loaded yet")
        if pinned is not None:
            if pinned not in snap.models:
                loaded = ", ".join(str(v) for v in sorted(snap.models))
                raise _Reject(
                    404, f"version {pinned} of {self.name} is not loaded (loaded: {loaded})"
                )
            return snap, snap.models[pinned], None
        serve, shadow = snap.table.route(request.headers.get(KEY_HEADER))
        return snap, snap.models[serve], shadow

    def other_model(self, model: str) -> Response | None:
        """The 404 for a model this server does not serve (None when it does)."""
        if model == self.name:
            return None
        return _error(404, f"this server serves {self.name}, not {model}", headers=CLOSE)

    def metadata(self, snap: Snapshot, loaded: Loaded) -> dict[str, Any]:
        sig = loaded.version.artifact.get("signature") or {}
        inputs = []
        if loaded.columns is not None:
            inputs = [
                {"name": c, "datatype": oip_type(loaded.dtypes[c]), "shape": [-1]}
                for c in loaded.columns
            ]
        elif sig.get("inputs", {}).get("type") == "tensor":
            s = sig["inputs"]
            inputs = [{"name": "input", "datatype": oip_type(s["dtype"]), "shape": s["shape"]}]
        out = sig.get("outputs") or {}
        outputs = (
            [
                {
                    "name": "predict",
                    "datatype": oip_type(out.get("dtype", "")),
                    "shape": out.get("shape", [-1]),
                }
            ]
            if out
            else []
        )
        return {
            "name": self.name,
            "versions": [str(v) for v in sorted(snap.models)],
            "platform": loaded.version.format,
            "inputs": inputs,
            "outputs": outputs,
        }


def _served(request: Request) -> _Served:
    served: _Served = request.app.state.served
    return served


# -- plain predict --------------------------------------------------------------------


async def predict_plain(request: Request) -> Response:
    s = _served(request)
    try:
        body = await s.body_of(request)
        snap, loaded, shadow = s.pick(request, None)
        if not isinstance(body, dict) or not ({"inputs", "records"} & body.keys()):
            raise _Reject(400, 'send {"inputs": [[...], ...]} or {"records": [{...}, ...]}')
        rid = request_id(body)
        x = (
            loaded.rows(body["inputs"])
            if "inputs" in body
            else loaded.rows_from_records(body["records"])
        )
    except (_Reject, ModelkeepError) as rej:
        return s.refused(rej, "predict")
    done = s.run(snap, loaded, shadow, rid, x, "predict")
    if isinstance(done, Response):
        return done
    y, rid, task = done
    return _json(
        {"predictions": y, "model_version": loaded.rev, "id": rid},
        version=loaded.rev,
        background=task,
    )


# -- Open Inference Protocol v2 -------------------------------------------------------


async def live(request: Request) -> Response:
    return _json({"live": True})


async def ready(request: Request) -> Response:
    snap = _served(request).follower.snapshot
    ok = snap is not None and snap.table.primary in snap.models
    return _json({"ready": ok}, 200 if ok else 503)


async def model_meta(request: Request) -> Response:
    s = _served(request)
    version = _version_param(request)
    if (other := s.other_model(request.path_params["model"])) is not None:
        return other
    snap = s.follower.snapshot
    if snap is None:
        return _error(503, "no model version is loaded yet")
    if version is not None and version not in snap.models:
        return _error(404, f"version {version} of {s.name} is not loaded")
    loaded = snap.models[version if version is not None else snap.table.primary]
    return _json(s.metadata(snap, loaded), version=loaded.rev)


async def model_ready(request: Request) -> Response:
    s = _served(request)
    version = _version_param(request)
    if (other := s.other_model(request.path_params["model"])) is not None:
        return other
    if version is None:
        return await ready(request)
    snap = s.follower.snapshot
    ok = snap is not None and version in snap.models
    return _json({"ready": ok}, 200 if ok else 404)


async def infer(request: Request) -> Response:
    s = _served(request)
    version = _version_param(request)
    if (other := s.other_model(request.path_params["model"])) is not None:
        return other
    try:
        body = await s.body_of(request)
        snap, loaded, shadow = s.pick(request, version)
        rid = request_id(body)
        x = loaded.rows_from_oip(body)
    except (_Reject, ModelkeepError) as rej:
        return s.refused(rej, "infer")
    done = s.run(snap, loaded, shadow, rid, x, "infer")
    if isinstance(done, Response):
        return done
    y, rid, task = done
    import numpy as np

    arr = np.asarray(y)
    out: dict[str, Any] = {
        "model_name": s.name,
        "model_version": loaded.rev,
        "outputs": [
            {
                "name": "predict",
                "shape": list(arr.shape),
                "datatype": oip_type(str(arr.dtype)),
                "data": _plain(arr.ravel()),
            }
        ],
    }
    # The id to send labels back with (POST …/feedback): the request's own if given.
    out["id"] = rid
    return _json(out, version=loaded.rev, background=task)


async def feedback(request: Request) -> Response:
    """Labels that arrive later: {"id": <response id>, "value": <true value(s)>}, or
    {"items": [{"id": …, "value": …}, …]}; joined to their predictions per window.

    Policies act on these labels (roll back, retrain): only a client holding a token of
    the repository with write scope on the served model may send them (or, deprecated,
    the server's shared feedback secret)."""
    s = _served(request)
    if s.tokens is None and s.secret is None:
        return _error(
            403,
            "feedback is not enabled on this server: it was made without the repository's tokens",
            headers=CLOSE,
        )
    if (refusal := await s.labeller(request)) is not None:
        return refusal
    if (other := s.other_model(request.path_params["model"])) is not None:
        return other
    try:
        body = await s.body_of(request)
        items = feedback_items(body)
    except _Reject as rej:
        return rej.response()
    follower = s.follower
    joined = unknown = forwarded = 0
    for i, (rid, value) in enumerate(items):
        try:
            n = follower.windows.feedback(rid, value)
        except ValueError as exc:
            where = f"item {i}: " if len(items) > 1 else ""
            done = f" ({joined} labels of the items before it were joined)" if joined else ""
            return _error(400, f"{where}{exc}{done}")
        if n == 0 and follower.peers is not None:
            # Another worker may have made this prediction: it joins it there.
            follower.peers.forward_label(rid, value)
            forwarded += 1
            continue
        joined += n
        unknown += n == 0
    status = 200 if joined or forwarded or not unknown else 404
    out = {"joined": joined, "unknown_ids": unknown}
    if follower.peers is not None:
        out["forwarded"] = forwarded
    return _json(out, status)


async def prometheus(request: Request) -> Response:
    return Response(_served(request).metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


_BASE = "/v2/models/{model}"
_PINNED = _BASE + "/versions/{version:version}"
ROUTES = (
    ("/predict", predict_plain, "POST"),
    ("/v2/health/live", live, "GET"),
    ("/v2/health/ready", ready, "GET"),
    (_BASE, model_meta, "GET"),
    (_PINNED, model_meta, "GET"),
    (_BASE + "/ready", model_ready, "GET"),
    (_PINNED + "/ready", model_ready, "GET"),
    (_BASE + "/infer", infer, "POST"),
    (_PINNED + "/infer", infer, "POST"),
    (_BASE + "/feedback", feedback, "POST"),
    ("/metrics", prometheus, "GET"),
)


def create_app(
    follower: Follower,
    max_body: int = DEFAULT_MAX_BODY,
    feedback_token: str | None = None,
    *,
    tokens: TokenCheck | None = None,
    limiter: FailureLimiter | None = None,
) -> Starlette:
    """The ASGI app serving ``follower``'s revision (already started).

    ``tokens``: the repository's tokens (``modelkeep.access.guard.TokenCheck``); a
    client posts labels to …/feedback, where policies act on them (a rollback, an
    update), with one of write scope on the served model as ``Authorization: Bearer
    …``. ``prepare`` and Ray replicas always give one. ``feedback_token``: deprecated,
    a shared secret also taken (it goes in the next release). Neither: feedback is off
    (403). ``limiter``: failed authentications per client address (10 a minute).

    Starlette, not FastAPI (which DESIGN names): the handlers read and write bytes
    themselves, and FastAPI's layers around them measured ~280 µs per request on this
    machine — 30 % of single-row throughput (benchmarks/serve.py)."""
    secret = None if feedback_token is None else feedback_token.encode()
    if secret is not None and not secret.strip():
        raise UsageError("feedback_token is empty: give a secret, or None to turn feedback off")

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        # Shutting down (also each worker of --workers): store the open windows.
        await asyncio.to_thread(follower.stop)
        if tokens is not None:
            tokens.close()

    app = Starlette(
        routes=[Route(path, handler, methods=[method]) for path, handler, method in ROUTES],
        lifespan=lifespan,
    )
    app.state.served = _Served(
        follower, max_body, secret, tokens, limiter if limiter is not None else FailureLimiter()
    )
    return app


class _VersionNumber(Convertor[int]):
    """A version number in a path: at most ten ASCII digits (Starlette's ``int`` takes
    any number of digits, and int() refuses past 4,300 with a 500); a longer one
    matches no route, a 404."""

    regex = "[0-9]{1,10}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("version", _VersionNumber())


def _version_param(request: Request) -> int | None:
    value = request.path_params.get("version")
    return None if value is None else int(value)


class _Reject(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers

    def response(self) -> Response:
        return _error(self.status, str(self), headers=self.headers)


def feedback_items(body: Any) -> list[tuple[str, Any]]:
    """(id, labels) of every item of a feedback body, all checked before any is joined."""
    shape = 'feedback is {"id": …, "value": …} or {"items": [{"id": …, "value": …}, …]}'
    items = body.get("items") if isinstance(body, dict) else None
    if items is None:
        items = [body]
    elif not isinstance(items, list) or not items:
        raise _Reject(400, f'"items" must be a non-empty list: {shape}')
    out = []
    for i, item in enumerate(items):
        where = f"item {i}: " if len(items) > 1 else ""
        if not isinstance(item, dict) or "id" not in item or "value" not in item:
            raise _Reject(400, f"{where}{shape}")
        try:
            rid = request_id(item)
            labels(item["value"])
        except (SignatureError, ValueError) as exc:
            raise _Reject(400, f"{where}{exc}") from None
        if rid is None:
            raise _Reject(400, f'{where}"id" is null: send the id of the prediction\'s answer')
        out.append((rid, item["value"]))
    return out
