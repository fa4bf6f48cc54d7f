"""Names fuzzed where they are created: a model by `commit`, a branch by `branch`, an
alias by `alias set`, a tag by `tag`.

The README's rule (letters, digits, ``.``, ``_``, ``-``, starting with a letter or
digit, at most 128; fuzzkit.valid_name) decides: a name outside it must be refused
with exit 2, and one inside it must be taken, unless something of that name exists
(exit 4). A name that was taken must then name what it was given to: ``show
MODEL@NAME`` resolves to it, whatever else has a similar name.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fuzzkit import (
    BAD_INPUT,
    CONFLICT,
    OPEN,
    fuzz_settings,
    models,
    names,
    run_checked,
    valid_name,
)
from hypothesis import assume, given
from hypothesis import strategies as st

if TYPE_CHECKING:
    from collections.abc import Callable

    from fuzzkit import Cli, Example

# What the template holds (conftest.template): names a new ref may collide with.
REFS = {"main", "exp", "production", "staging", "v1"}


def shows(cli: Cli, ex: Example, rev: str) -> dict[str, Any]:
    res = run_checked(cli, ex, "show", rev, "--json", succeeds=True, changes=False)
    version: dict[str, Any] = json.loads(res.out)
    return version


@fuzz_settings(2)
@given(name=names | models)
def test_commit_name(fresh: Callable[[], Example], cli: Cli, name: str) -> None:
    assume(name != "clf-train" or "commit-on-dataset-name" not in OPEN)
    ex = fresh()
    blob = ex.scratch / "weights.bin"
    blob.write_bytes(b"fuzz")
    ok = valid_name(name) and name != "clf-train"  # a dataset's name: its own kind
    codes = {BAD_INPUT} if not valid_name(name) else {CONFLICT, BAD_INPUT}
    res = run_checked(cli, ex, "commit", name, str(blob), "-m", "fuzz", codes=codes, succeeds=ok)
    if res.code == 0:
        version = shows(cli, ex, name)
        assert version["model"] == name, (name, version)
        assert version["message"] == "fuzz"


@fuzz_settings()
@given(new=names)
def test_branch_name(fresh: Callable[[], Example], cli: Cli, new: str) -> None:
    ex = fresh()
    ok = valid_name(new) and new not in REFS
    codes = {CONFLICT} if valid_name(new) else {BAD_INPUT}
    res = run_checked(
        cli, ex, "branch", "churn", new, "--from", "churn:2", codes=codes, succeeds=ok
    )
    if res.code == 0:
        assert shows(cli, ex, f"churn@{new}")["number"] == 2, new


@fuzz_settings()
@given(model=models | names, start=st.sampled_from(["churn:1", "churn@exp", "clf:1", "1", ""]))
def test_branch_of_model(fresh: Callable[[], Example], cli: Cli, model: str, start: str) -> None:
    """The model's name fuzzed instead (``branch NAME fuzzed --from START``)."""
    assume("\n" not in model or "branch-model-unquoted" not in OPEN)
    ex = fresh()
    run_checked(cli, ex, "branch", model, "fuzzed", "--from", start, codes={BAD_INPUT, 3})


@fuzz_settings()
@given(alias=names, rev=st.sampled_from(["1", "2", "churn:2", "churn@exp", "churn@v1"]))
def test_alias_name(fresh: Callable[[], Example], cli: Cli, alias: str, rev: str) -> None:
    ex = fresh()
    # MODEL@ALIAS is read as a revision is: the whitespace around it does not count.
    name = alias.rstrip()
    # An existing alias just moves; a branch's or tag's name is a conflict.
    ok = valid_name(name) and name not in REFS - {"production", "staging"}
    codes = {CONFLICT} if valid_name(name) else {BAD_INPUT}
    res = run_checked(cli, ex, "alias", "set", f"churn@{alias}", rev, codes=codes, succeeds=ok)
    if res.code == 0:
        expected = shows(cli, ex, rev if ":" in rev or "@" in rev else f"churn:{rev}")
        assert shows(cli, ex, f"churn@{name}")["number"] == expected["number"], alias


@fuzz_settings()
@given(tag=names)
def test_tag_name(fresh: Callable[[], Example], cli: Cli, tag: str) -> None:
    ex = fresh()
    ok = valid_name(tag) and tag not in REFS
    codes = {CONFLICT} if valid_name(tag) else {BAD_INPUT}
    res = run_checked(cli, ex, "tag", "churn:2", tag, codes=codes, succeeds=ok)
    if res.code == 0:
        assert shows(cli, ex, f"churn@{tag}")["number"] == 2, tag
