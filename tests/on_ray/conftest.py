"""One local Ray for the whole session, confined to loopback, and Ray Serve
applications of modelkeep on it.

Ray binds every interface even when told 127.0.0.1, so these tests run only in a
network namespace whose one interface is ``lo``: ``scripts/test`` runs this folder under
``unshare -n`` (with ``ip link set lo up``). Anywhere else they are skipped, saying so.
A Ray start costs ~7 s and ~1.2 GiB here: one per session, its temp folder under the
session's test folder, no dashboard, one application alive at a time.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import modelkeep

HERE = Path(__file__).resolve().parent
# ray_helpers.py (and brittle.py, which replicas import) are imported by name.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from ray_helpers import App, Cluster  # noqa: E402 - needs the path above

# The interfaces of this process's own network namespace (/sys/class/net shows the
# namespace sysfs was mounted in, not ours).
ISOLATED = {name for _, name in socket.if_nameindex()} <= {"lo"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(
        reason="Ray binds every interface: run in a network namespace with only lo "
        "(scripts/test runs tests/on_ray under `unshare -n`)"
    )
    for item in items:
        if HERE not in Path(item.fspath).parents:
            continue
        if not ISOLATED:
            item.add_marker(skip)
        # Ray's own code warns of what its dependencies deprecated (pydantic's Field
        # arguments, …): not ours to fix, and pytest turns warnings into errors.
        item.add_marker(pytest.mark.filterwarnings("ignore::DeprecationWarning"))
        item.add_marker(pytest.mark.filterwarnings("ignore::FutureWarning"))


@pytest.fixture(scope="session")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    pytest.importorskip("ray")
    # On a shared engine (MODELKEEP_TEST_ENGINE), replicas open repositories by URL with
    # the credentials of their environment: the servers (and their variables) first.
    engine = os.environ.get("MODELKEEP_TEST_ENGINE", "")
    if engine.startswith("pg"):
        request.getfixturevalue("postgres")
    if engine == "pg-s3":
        request.getfixturevalue("s3_server")
    from ray import serve

    from modelkeep.serve import on_ray

    temp = tmp_path_factory.mktemp("ray")
    # Replicas are processes Ray starts: they find brittle.py through PYTHONPATH, and
    # brittle's marker through the environment they inherit.
    marker = temp / "brittle-broken"
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    os.environ["MODELKEEP_TEST_BRITTLE_MARKER"] = str(marker)
    # Ray's processes take their environment from the raylet, started now: this one
    # variable only they see.
    os.environ["MODELKEEP_TEST_BRITTLE_RAY_ONLY_MARKER"] = str(temp / "brittle-broken-in-ray")
    try:
        assert on_ray.connect(None, str(temp)), "a Ray was already running in this process"
    finally:
        del os.environ["MODELKEEP_TEST_BRITTLE_RAY_ONLY_MARKER"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    import ray

    try:
        yield Cluster(port, ray.get_runtime_context().gcs_address, temp)
    finally:
        on_ray.disconnect(started=True)


@pytest.fixture
def deploy(cluster: Cluster) -> Iterator[Callable[..., App]]:
    """``deploy(repo, **options)`` → a Ray Serve application of churn@production; every
    application is deleted at the end of the test."""
    from modelkeep.serve import on_ray

    names: list[str] = []

    def make(repo: modelkeep.Repo, **options: Any) -> App:
        name = f"t{len(names)}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
        options = {"interval": 0.1, "replica_cpus": 0.5, **options}
        got, url = on_ray.deploy(
            repo.root,
            "churn@production",
            name=name,
            route=f"/{name}",
            port=cluster.port,
            **options,
        )
        names.append(got)
        return App(got, url, repo)

    yield make
    for name in names:
        on_ray.stop(name, started=False)
