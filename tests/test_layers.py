"""The layers point down (DESIGN.md): who may import whom, read from the source.

    faces      cli/, server/, demo          may import anything below
    facade     repo.py                      the engine and the jobs
    jobs       update/, serve/, monitor/, deploy/,     the engine, never repo.py or a face
               access/, remote/
    engine     _engine/                     never a job, a face or repo.py
    ground     store/, registry/            nothing above them
    beside     formats/, artifact, profiles, evaluation, lineage, revision, quantities,
               results, graph, errors       the ground only

Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "modelkeep"

FACES = {"modelkeep.cli", "modelkeep.server", "modelkeep.demo"}
JOBS = {
    "modelkeep.update",
    "modelkeep.serve",
    "modelkeep.monitor",
    "modelkeep.deploy",
    "modelkeep.access",
    "modelkeep.remote",
}
ENGINE = {"modelkeep._engine"}
FACADE = {"modelkeep.repo", "modelkeep.over_http", "modelkeep.over_http_jobs"}
GROUND = {"modelkeep.store", "modelkeep.registry"}
BESIDE = {
    "modelkeep.formats",
    "modelkeep.artifact",
    "modelkeep.profiles",
    "modelkeep.evaluation",
    "modelkeep.lineage",
    "modelkeep.revision",
    "modelkeep.quantities",
    "modelkeep.results",
    "modelkeep.graph",
    "modelkeep.errors",
    "modelkeep.httpstatus",
}


def _unit(module: str) -> str:
    """``modelkeep.store.objects`` → ``modelkeep.store``: the layer's unit."""
    return ".".join(module.split(".")[:2])


def _modules() -> dict[str, set[str]]:
    """Every module of the package → the units it imports (itself excluded)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                # `from modelkeep import lineage` imports modelkeep.lineage
                found |= {f"{node.module}.{a.name}" for a in node.names}
        units = {_unit(m) for m in found if m.startswith("modelkeep.")}
        out[name] = units - {_unit(name)} - {"modelkeep.__version__"}
    return out


MODULES = _modules()


def _in(layer: set[str]) -> list[str]:
    return sorted(m for m in MODULES if _unit(m) in layer)


def _known(units: set[str]) -> set[str]:
    # Names imported from the package root that are not modules (e.g. __version__).
    return {
        u
        for u in units
        if (PACKAGE / u.split(".")[1]).exists() or (PACKAGE / f"{u.split('.')[1]}.py").exists()
    }


@pytest.mark.parametrize("module", _in(ENGINE))
def test_the_engine_imports_no_job_no_face_and_not_the_facade(module: str) -> None:
    assert not _known(MODULES[module]) & (JOBS | FACES | FACADE)


@pytest.mark.parametrize("module", _in(JOBS))
def test_jobs_take_the_engine_never_the_facade_or_a_face(module: str) -> None:
    assert not _known(MODULES[module]) & (FACES | FACADE)


@pytest.mark.parametrize("module", _in(GROUND))
def test_store_and_registry_import_nothing_above_them(module: str) -> None:
    allowed = GROUND | {"modelkeep.errors", "modelkeep.quantities"}
    assert _known(MODULES[module]) <= allowed, _known(MODULES[module]) - allowed


@pytest.mark.parametrize("module", _in(BESIDE))
def test_modules_beside_the_ground_import_only_the_ground(module: str) -> None:
    allowed = GROUND | BESIDE
    assert _known(MODULES[module]) <= allowed, _known(MODULES[module]) - allowed


def test_every_module_has_a_layer() -> None:
    everything = FACES | JOBS | ENGINE | FACADE | GROUND | BESIDE | {"modelkeep"}
    assert {_unit(m) for m in MODULES} - {"modelkeep.__main__"} <= everything


def test_the_facade_is_delegation() -> None:
    """repo.py stays a facade: short, and no SQL or chunk in it."""
    text = (PACKAGE / "repo.py").read_text()
    # 410: opening and creating by URL (PostgreSQL, S3) joined the facade; 430: remotes
    # and clone (the split into sub-facades, as tokens and remotes are, is due).
    assert len(text.splitlines()) <= 450
    assert "sqlalchemy" not in text
    assert "_control is None" not in text
