"""The public surface of the `modelkeep` package, and a CLI that starts fast."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys

import modelkeep

EXPECTED_ALL = [
    "CheckoutResult",
    "CodeRef",
    "ConflictError",
    "CorruptObjectError",
    "DatasetRef",
    "DiffResult",
    "Event",
    "FileChange",
    "FileInfo",
    "FsckReport",
    "GcReport",
    "ModelInfo",
    "ModelkeepError",
    "NotFoundError",
    "ObjectMissingError",
    "Ref",
    "Repo",
    "RepositoryFormatError",
    "RepositoryNotFoundError",
    "Revision",
    "StatusResult",
    "StoreError",
    "UpgradeReport",
    "UsageError",
    "Version",
    "__version__",
]

COMMANDS = [
    "init",
    "remote",
    "push",
    "fetch",
    "pull",
    "clone",
    "login",
    "data",
    "commit",
    "log",
    "server",
    "show",
    "models",
    "checkout",
    "status",
    "diff",
    "branch",
    "tag",
    "label",
    "promote",
    "rollback",
    "history",
    "events",
    "fsck",
    "gc",
    "upgrade",
    "demo",
    "alias",
    "update",
    "serve",
    "deploy",
    "deployments",
    "monitor",
    "token",
]


def test_all_is_exactly_the_expected_list() -> None:
    # Adding or removing a public name is a decision: update EXPECTED_ALL with it.
    assert list(modelkeep.__all__) == EXPECTED_ALL


def test_every_public_name_imports() -> None:
    namespace: dict[str, object] = {}
    exec("from modelkeep import *", namespace)
    for name in EXPECTED_ALL:
        assert getattr(modelkeep, name) is namespace[name], name
    assert modelkeep.__version__ == importlib.metadata.version("modelkeep")
    errors = ["ConflictError", "CorruptObjectError", "NotFoundError", "ObjectMissingError"]
    errors += ["RepositoryFormatError", "RepositoryNotFoundError", "StoreError", "UsageError"]
    for name in errors:
        assert issubclass(getattr(modelkeep, name), modelkeep.ModelkeepError), name


def test_cli_module_does_not_import_heavy_modules() -> None:
    heavy = ["sqlalchemy", "alembic", "zstandard", "modelkeep.registry", "modelkeep.repo"]
    code = (
        "import json, sys\n"
        "import modelkeep.cli.app\n"
        f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(proc.stdout) == [], "imported at `modelkeep --help` time"


def test_help_lists_every_command() -> None:
    proc = subprocess.run(
        ["modelkeep", "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    listed = []
    in_commands = False
    for line in proc.stdout.splitlines():
        if line.startswith("Commands:"):
            in_commands = True
        elif in_commands and line.startswith("  ") and line.strip():
            listed.append(line.split()[0])
    assert sorted(listed) == sorted(COMMANDS)
    assert "--repo" in proc.stdout
