"""What the Ray Serve tests share: the cluster and applications the fixtures give,
a load of client threads, and waiting for a condition."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import modelkeep

VERSION_HEADER = "X-Model-Version"


@dataclass(frozen=True)
class Cluster:
    port: int
    address: str  # the GCS address a second driver (the CLI) joins
    temp: Path


@dataclass
class App:
    """A deployed application: its name, URL and repository."""

    name: str
    url: str
    repo: modelkeep.Repo

    def serving(self) -> dict[str, int | None]:
        """replica → version number, of the replicas not stopped."""
        return {
            r.replica: r.version
            for r in self.repo.replicas("churn")
            if r.server == f"ray:{self.name}" and r.state != "stopped"
        }


@dataclass
class Answer:
    start: float
    end: float
    status: int  # 0: no HTTP answer (connection refused, reset, timed out)
    version: str | None
    error: str = ""


@dataclass
class Load:
    """``clients`` threads POSTing one row to /predict until stopped."""

    url: str
    clients: int = 4
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for _ in range(self.clients):
            t = threading.Thread(target=self._client, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def _client(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self._stop.is_set():
                start = time.monotonic()
                try:
                    r = http.post(f"{self.url}/predict", json={"inputs": [[0.1, 0.2, 0.3, 0.4]]})
                    answer = Answer(
                        start,
                        time.monotonic(),
                        r.status_code,
                        r.headers.get(VERSION_HEADER),
                        "" if r.status_code == 200 else r.text,
                    )
                except httpx.HTTPError as exc:
                    answer = Answer(start, time.monotonic(), 0, None, repr(exc))
                self.answers.append(answer)

    def failures(self) -> list[Answer]:
        return [a for a in self.answers if a.status != 200]


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.05
) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(step)
    return time.monotonic() - start
