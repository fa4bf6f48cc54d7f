"""Core messages are face-neutral (DESIGN.md, "Layers"): an error raised below the faces
names no command-line flag and no `modelkeep …` command — a REST client or a web page
cannot act on "give --interval". What depends on the face goes into the error's
``Hint``: ``cli`` (flags, commands) for the command line, ``api`` (keywords, methods)
for Python and HTTP callers.

Read from the source with ``ast``: every string (and f-string part) given to an error
class, to ``type(exc)(…)`` re-raising a store error, or to the serve app's HTTP error
responses — except ``Hint(cli=…)``, the one place a flag belongs.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import modelkeep
from modelkeep.errors import (
    Hint,
    RepositoryNotFoundError,
    UsageError,
    VersionNotFoundError,
    WorkingTreeConflictError,
)

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "modelkeep"

# The faces say flags and commands on purpose: the command line itself, and the demo
# (it prints the commands it stands for).
FACES = ("cli/", "demo.py")
# (file, fragment): messages that must name the command line. None now: the serve app
# used to tell an HTTP client to start the server with --feedback-token-file; feedback
# is on by default since it takes the repository's tokens.
ALLOWED: list[tuple[str, str]] = []

FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
COMMAND = re.compile(r"`modelkeep ")


def _is_error(func: ast.expr) -> bool:
    """``SomeError(…)``, ``errors.SomeError(…)``, ``type(exc)(…)``, or the serve app's
    ``_error(status, message)``."""
    if isinstance(func, ast.Name):
        return func.id.endswith("Error") or func.id == "_error"
    if isinstance(func, ast.Attribute):
        return func.attr.endswith("Error")
    return isinstance(func, ast.Call) and isinstance(func.func, ast.Name) and func.func.id == "type"


def _is_hint(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Hint"


def _texts(node: ast.AST) -> Iterator[ast.Constant | ast.JoinedStr]:
    """The strings in ``node``, f-strings whole; a ``Hint`` is read on its own."""
    if isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str)
    ):
        yield node
    elif not _is_hint(node):
        for child in ast.iter_child_nodes(node):
            yield from _texts(child)


def _said(node: ast.Constant | ast.JoinedStr) -> str:
    """The text as written, ``{…}`` for each placeholder of an f-string."""
    if isinstance(node, ast.Constant):
        return str(node.value)
    return "".join(str(v.value) if isinstance(v, ast.Constant) else "{…}" for v in node.values)


def _messages(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, text) of every message given to an error, and of every ``Hint`` but its
    ``cli`` (Hint(cli, api): the first positional argument, or ``cli=``)."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if _is_hint(node):
            parts = [*node.args[1:], *(kw.value for kw in node.keywords if kw.arg != "cli")]
        elif _is_error(node.func):
            parts = [*node.args, *(kw.value for kw in node.keywords)]
        else:
            continue
        for part in parts:
            for text in _texts(part):
                yield text.lineno, _said(text)


def _offences() -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith(FACES):
            continue
        for line, text in _messages(ast.parse(path.read_text())):
            if any(rel == f and fragment in text for f, fragment in ALLOWED):
                continue
            if FLAG.search(text) or COMMAND.search(text):
                out.append(f"src/modelkeep/{rel}:{line}: {text}")
    return sorted(set(out))


def test_core_messages_name_no_flag_and_no_command() -> None:
    offences = _offences()
    assert not offences, (
        "core messages must be face-neutral; put flags and commands in "
        "hint=Hint(cli=..., api=...):\n" + "\n".join(offences)
    )


def test_the_scan_sees_what_it_must_refuse() -> None:
    """The scan is not vacuous: it finds a flag in an error, in a re-raise, in a Hint's
    api, and lets a Hint's cli through."""
    source = """
raise UsageError("steps need --interval")
raise type(exc)(f"{exc} — run `modelkeep fsck`")
raise errors.NotFoundError("x", hint=Hint(cli="give --to V", api="pass --to"))
raise UsageError("ok", hint=Hint("give --to V", "pass to='V'"))
raise UsageError("ok", hint=Hint(cli="`modelkeep fsck`", api="Repo.fsck()"))
"""
    said = [text for _, text in _messages(ast.parse(source))]
    flagged = [t for t in said if FLAG.search(t) or COMMAND.search(t)]
    assert flagged == ["steps need --interval", "{…} — run `modelkeep fsck`", "pass --to"]
    # The allowed fragment is still there: drop the entry when its message goes.
    for rel, fragment in ALLOWED:
        assert fragment in (PACKAGE / rel).read_text()


# -- each face says the advice its own way ------------------------------------------


@pytest.fixture
def churn(tmp_path: Path) -> Path:
    """A repository with churn:1 and churn:2 (plain files), churn@production → churn:1."""
    root = tmp_path / "repo"
    with modelkeep.Repo.init(root) as repo:
        for n in (1, 2):
            model = tmp_path / f"model{n}.txt"
            model.write_text(f"weights {n}\n")
            repo.commit("churn", model, f"v{n}")
        repo.set_alias("churn@production", "churn:1")
    return root


def _cli_error(cli: Any, root: Path, *args: Any) -> str:
    res = cli(root, *args)
    return str(res.one_line_error())


def test_canary_steps_without_interval(cli: Any, churn: Path) -> None:
    args = ["deploy", "churn", "--strategy", "canary", "--candidate", "churn:2", "--steps", "10,50"]
    line = _cli_error(cli, churn, *args)
    assert "need an interval" in line
    assert "--interval 10m" in line
    assert "interval=" not in line
    with modelkeep.Repo(churn) as repo:
        with pytest.raises(UsageError) as info:
            repo.deploy("churn", strategy="canary", candidate="churn:2", steps=[10, 50])
        assert repo.deployments("churn") == []
    said = str(info.value)
    assert "need an interval" in said
    assert "interval='10m'" in said
    assert "--" not in said


def test_rollback_with_nowhere_to_go_back(cli: Any, churn: Path) -> None:
    line = _cli_error(cli, churn, "rollback", "churn@production")
    assert "no earlier target" in line
    assert "--to VERSION" in line
    with modelkeep.Repo(churn) as repo, pytest.raises(VersionNotFoundError) as info:
        repo.rollback("churn@production")
    assert "no earlier target" in str(info.value)
    assert "to='VERSION'" in str(info.value)
    assert "--to" not in str(info.value)


def test_checkout_over_changed_files(cli: Any, churn: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "model1.txt").write_text("changed by hand\n")
    line = _cli_error(cli, churn, "checkout", "churn:1", dest)
    assert "model1.txt" in line
    assert "--force replaces them" in line
    with modelkeep.Repo(churn) as repo, pytest.raises(WorkingTreeConflictError) as info:
        repo.checkout("churn:1", dest)
    assert info.value.paths == ["model1.txt"]
    assert "force=True replaces them" in str(info.value)
    assert "--force" not in str(info.value)
    assert (dest / "model1.txt").read_text() == "changed by hand\n"


def test_no_repository_there(cli: Any, tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"
    line = _cli_error(cli, nowhere, "models")
    assert "no such folder" in line
    assert "`modelkeep init` creates one" in line
    with pytest.raises(RepositoryNotFoundError) as info:
        modelkeep.Repo(nowhere)
    assert "Repo.init(path) creates one" in str(info.value)
    assert "modelkeep init" not in str(info.value)


def test_the_message_is_the_same_in_both_faces() -> None:
    exc = UsageError("steps need an interval", hint=Hint(cli="give --interval", api="interval="))
    assert exc.message == "steps need an interval"
    assert str(exc) == exc.said("api") == "steps need an interval; interval="
    assert exc.said("cli") == "steps need an interval; give --interval"
