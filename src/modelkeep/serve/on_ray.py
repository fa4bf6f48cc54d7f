"""Serving on Ray Serve: every replica runs the local server's app and follows the same
routing table in the registry, so rollouts, hot swap, validation and monitoring behave
as on one machine.

Ray Serve alone knows nothing of versions: a ``user_config`` update takes replicas out
while they reload. Here no Ray config changes when an alias moves: each replica sees
the move in the registry, loads and warms the new version beside the old, then
switches. The replicas share one small ``Coordinator`` deployment (a ``Board``): who
merges the monitoring windows (so policies fire once per application), labels for
predictions another replica made, and /metrics of the whole application.

Needs the ``ray`` extra; imported only by ``modelkeep serve --ray``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
from ray import serve

from modelkeep.errors import Hint, ModelkeepError, UsageError
from modelkeep.revision import parse_alias
from modelkeep.serve.follower import Follower
from modelkeep.serve.peers import Board, BoardPeers

if TYPE_CHECKING:
    from ray.serve.handle import DeploymentHandle
    from starlette.applications import Starlette

    from modelkeep._engine import Engine

log = logging.getLogger("modelkeep.serve")

# Seconds a replica may go without renewing its lead before another takes over.
LEASE_SECONDS = 10.0
# Seconds a replica waits for the coordinator before giving up on this poll.
BOARD_TIMEOUT = 5.0
# Object store of a Ray that modelkeep starts itself: nothing big goes through it
# (replicas load models from the repository), and Ray's default takes 30 % of RAM.
LOCAL_OBJECT_STORE = 256 * 1024**2


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
class Coordinator:
    """The application's one board. If Ray restarts it, the board starts empty: the
    lease is taken again within a poll, labels in transit are lost (they were
    optional), metric snapshots come back with the next poll of each replica."""

    def __init__(self, lease_seconds: float = LEASE_SECONDS) -> None:
        self.board = Board(lease_seconds)
        self.lock = threading.Lock()

    def sync(
        self,
        worker: str,
        labels: list[tuple[str, Any]],
        metrics: list[Any],
        shadow: dict[str, Any] | None,
        leaving: bool = False,
    ) -> dict[str, Any]:
        with self.lock:
            return self.board.sync(worker, labels, metrics, shadow, leaving=leaving)


@serve.deployment
@serve.ingress()
class Replica:
    """One replica: a follower of the revision and the local server's Starlette app."""

    def __init__(self, spec: dict[str, Any], coordinator: DeploymentHandle[Any]) -> None:
        from modelkeep.access.guard import TokenCheck
        from modelkeep.serve.app import create_app

        worker = serve.get_replica_context().replica_id.unique_id

        def call(*args: Any, **kwargs: Any) -> dict[str, Any]:
            # The follower's thread, not the event loop: a blocking wait is fine here.
            result: dict[str, Any] = coordinator.sync.remote(*args, **kwargs).result(
                timeout_s=BOARD_TIMEOUT
            )
            return result

        model, alias = parse_alias(spec["rev"])
        self.follower = Follower(
            lambda: open_engine(spec["location"]),
            model,
            alias,
            spec["interval"],
            window_rows=spec["window_rows"],
            window_seconds=spec["window_seconds"],
            monitoring=spec["monitoring"],
            peers=BoardPeers(call, worker),
            server=f"ray:{spec['name']}",
        )
        # A version that cannot load fails the replica here: Ray reports the
        # deployment unhealthy, and the replicas already serving keep serving.
        self.follower.start()
        # Feedback tokens are verified against the registry the replica follows: no
        # secret travels in the deployment, but the deprecated shared one if given.
        tokens = TokenCheck.watching(lambda: open_engine(spec["location"]))
        self.asgi = create_app(
            self.follower, spec["max_body"], spec["feedback_token"], tokens=tokens
        )

    def __serve_build_asgi_app__(self) -> Starlette:
        return self.asgi

    def check_health(self) -> None:
        """Ray replaces a replica whose follower stopped (it would serve a stale table)."""
        if not self.follower.following():
            raise RuntimeError(f"{self.follower.model}@{self.follower.alias}: follower stopped")


def open_engine(location: dict[str, Any]) -> Engine:
    from modelkeep._engine import Engine

    path = location.get("path")
    if path is not None:
        return Engine.open(path)
    return Engine.open(
        None, db=location["db"], store=location["store"], s3_endpoint=location["s3_endpoint"]
    )


def location_of(engine: Engine, root: Path | None) -> dict[str, Any]:
    """How replicas find the repository: by its URLs when it is shared (any machine of
    the cluster reaches them; credentials come from each node's environment, never
    from here), else by its folder (a cluster of this one machine)."""
    from modelkeep._engine.shared import SharedContext
    from modelkeep.registry.db import without_password

    ctx = engine.ctx
    if isinstance(ctx, SharedContext):
        where = ctx.where
        return {
            "path": None,
            "db": without_password(where.db),
            "store": where.store,
            "s3_endpoint": where.s3_endpoint,
        }
    if root is None:
        raise UsageError("a repository in memory cannot be served on Ray: give its folder")
    return {"path": str(root)}


def connect(address: str | None, temp_dir: str | None = None) -> bool:
    """Join the Ray cluster at ``address`` (``auto``: the one this machine belongs to),
    or start one on this machine; True when this process started it."""
    if ray.is_initialized():
        return False
    logging.getLogger("ray").setLevel(logging.WARNING)
    if address is not None:
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelkeepError(
                f"cannot join the Ray cluster at {address} ({first}): check the address",
                hint=Hint(
                    cli="without --address, Ray starts on this machine",
                    api="connect(None) starts Ray on this machine",
                ),
            ) from None
        return False
    ray.init(
        include_dashboard=False,
        object_store_memory=LOCAL_OBJECT_STORE,
        _temp_dir=temp_dir,
        log_to_driver=False,
        configure_logging=False,
    )
    return True


def deploy(
    repo_path: str | Path | None,
    rev: str,
    *,
    name: str | None = None,
    route: str = "/",
    replicas: int = 1,
    autoscaling: dict[str, Any] | None = None,
    replica_cpus: float = 1.0,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_body: int | None = None,
    interval: float = 0.5,
    window_rows: int = 500,
    window_seconds: float = 30.0,
    monitoring: bool = True,
    feedback_token: str | None = None,
) -> tuple[str, str]:
    """Run ``rev`` (``MODEL@ALIAS``) as the Ray Serve application ``name`` (the model's
    name by default) at ``route``; Ray must be connected (``connect``). Returns the
    application's name and URL once every replica serves. The revision is loaded here first,
    so a bad one fails with one line before anything is deployed. Replicas take feedback
    with the repository's tokens; ``feedback_token`` (deprecated, goes in the next
    release) is a shared secret taken too."""
    from modelkeep._engine import Engine, layout
    from modelkeep.deploy.rollouts import Rollouts
    from modelkeep.serve.app import DEFAULT_MAX_BODY
    from modelkeep.serve.loaded import Loaded
    from modelkeep.serve.run import DEPRECATION_WARNING

    model, alias = parse_alias(rev)
    name = name or model
    if not route.startswith("/"):
        raise UsageError(f"a route must start with '/', got {route!r}")
    if replicas < 1:
        raise UsageError(f"an application needs at least 1 replica, got {replicas}")
    if feedback_token is not None:
        log.warning(DEPRECATION_WARNING, model)
    root = layout.find(None if repo_path is None else Path(repo_path))
    engine = Engine.open(root)
    try:
        # What the local server would refuse, refused here: a revision that does not
        # resolve or a version that cannot load.
        table = Rollouts(engine).routing(model, alias)
        Loaded.load(engine, engine.versions.resolve(f"{model}:{table.primary}")).warm()
        location = location_of(engine, root)
    finally:
        engine.close()
    spec = {
        "rev": rev,
        "name": name,
        "location": location,
        "max_body": DEFAULT_MAX_BODY if max_body is None else max_body,
        "interval": interval,
        "window_rows": window_rows,
        "window_seconds": window_seconds,
        "monitoring": monitoring,
        # Deprecated (the replicas verify repository tokens themselves). In the
        # deployment's arguments, which only the cluster's members can read.
        "feedback_token": feedback_token,
    }
    options: dict[str, Any] = {"ray_actor_options": {"num_cpus": replica_cpus}}
    if autoscaling is not None:
        options["autoscaling_config"] = autoscaling
    else:
        options["num_replicas"] = replicas
    try:
        app = Replica.options(name=f"{name}-replica", **options).bind(  # type: ignore[attr-defined]
            spec,
            Coordinator.options(name=f"{name}-coordinator").bind(),  # type: ignore[attr-defined]
        )
    except (TypeError, ValueError) as exc:
        raise UsageError(f"Ray Serve refused the options: {_first_line(exc)}") from None
    serve.start(http_options={"host": host, "port": port})
    try:
        serve.run(app, name=name, route_prefix=route, blocking=False)
    except Exception as exc:
        why = _failure(name) or _first_line(exc)
        # A failed application keeps retrying its replicas: take it down.
        with contextlib.suppress(Exception):
            serve.delete(name)
        raise ModelkeepError(
            f"Ray Serve could not start {rev} as application {name!r}: {why}"
        ) from None
    return name, f"http://{host}:{port}{route.rstrip('/')}"


def stop(name: str, started: bool) -> None:
    """Take the application down (its replicas store their open windows first), and
    the Ray this process started, if it did."""
    try:
        serve.delete(name)
    finally:
        disconnect(started)


def disconnect(started: bool) -> None:
    """Stop Serve and the Ray this process started (their replicas with them), if it
    did; a cluster joined is left as it is."""
    if not started:
        return
    try:
        serve.shutdown()  # type: ignore[no-untyped-call]
    finally:
        ray.shutdown()


def until_stopped(name: str, started: bool) -> None:
    """Block until SIGINT or SIGTERM, then ``stop``."""
    import signal

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop(name, started)


def autoscaling_config(text: str) -> dict[str, Any]:
    """``--autoscaling``'s JSON, checked by Ray Serve's own model of it."""
    import json

    from ray.serve.config import AutoscalingConfig

    try:
        config = json.loads(text)
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
        AutoscalingConfig(**config)
    except Exception as exc:
        detail = " ".join(str(exc).split())[:300]
        raise UsageError(
            f"autoscaling takes a JSON object of Ray Serve's autoscaling options "
            f'(e.g. {{"min_replicas": 1, "max_replicas": 4}}): {detail}'
        ) from None
    return dict(config)


def _failure(name: str) -> str | None:
    """The last line of the error a replica of application ``name`` failed with (Ray
    puts the whole traceback in the deployment's status)."""
    try:
        app = serve.status().applications.get(name)
    except Exception:
        return None
    if app is None:
        return None
    texts = [d.message for d in app.deployments.values()] + [app.message]
    for text in texts:
        lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
        errors = [line for line in lines if "Error" in line.split(":", 1)[0]]
        if errors:
            return errors[-1][:500]
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
