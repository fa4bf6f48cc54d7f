"""Revisions fuzzed through every command that takes one: arbitrary text, and
revisions built from valid pieces (names, ``:N``, ``@REF``, ``^``, ``~N``) with
unicode digits, huge digit strings, whitespace and control characters mixed in.

Each example runs on a fresh copy of the template repository (see conftest.py). The
README's grammar, read independently of modelkeep's parser (fuzzkit.rev_verdict),
says which inputs are not revisions at all: those must fail with exit 2, never 3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fuzzkit import (
    BAD_INPUT,
    CONFLICT,
    NOT_FOUND,
    VALID_REVS,
    fuzz_settings,
    mixed,
    models,
    names,
    numbers,
    refs,
    rev_expect,
    revisions,
    run_checked,
    valid_name,
)
from hypothesis import given
from hypothesis import strategies as st

if TYPE_CHECKING:
    from collections.abc import Callable

    from fuzzkit import Cli, Example


@fuzz_settings(2)
@given(rev=revisions)
def test_show(fresh: Callable[[], Example], cli: Cli, rev: str) -> None:
    ex = fresh()
    codes, ok = rev_expect(rev)
    res = run_checked(cli, ex, "show", rev, codes=codes, changes=False, succeeds=ok)
    if res.code == 0:
        as_json = run_checked(cli, ex, "show", rev, "--json", changes=False, succeeds=True)
        assert as_json.out.startswith("{")


@fuzz_settings()
@given(rev=revisions)
def test_checkout(fresh: Callable[[], Example], cli: Cli, rev: str) -> None:
    ex = fresh()
    codes, ok = rev_expect(rev)
    dest = ex.scratch / "out"
    res = run_checked(cli, ex, "checkout", rev, str(dest), codes=codes, changes=False, succeeds=ok)
    if res.code != 0:
        assert not dest.exists(), "a failed checkout left its destination behind"


@fuzz_settings()
@given(
    drawn=mixed(
        {"name": st.sampled_from(["churn", "clf", "clf-train"]), "n": st.sampled_from(["1", "3"])},
        {"name": models | names, "n": numbers | st.text(max_size=12)},
    )
)
def test_log(fresh: Callable[[], Example], cli: Cli, drawn: dict[str, str]) -> None:
    ex = fresh()
    run_checked(
        cli, ex, "log", drawn["name"], "-n", drawn["n"], codes={BAD_INPUT, NOT_FOUND}, changes=False
    )


@fuzz_settings()
@given(
    rev=st.sampled_from(["churn", "churn@production", "churn@main", "churn@v1", "clf@production"])
    | revisions
)
def test_history(fresh: Callable[[], Example], cli: Cli, rev: str) -> None:
    ex = fresh()
    codes, ok = rev_expect(rev)
    # MODEL or MODEL@REF only: churn:3 is a revision, but not one that has a history.
    run_checked(cli, ex, "history", rev, codes={*codes, BAD_INPUT}, changes=False, succeeds=ok)


GOOD_REV = st.sampled_from(VALID_REVS)


@fuzz_settings()
@given(drawn=mixed({"a": GOOD_REV, "b": GOOD_REV}, {"a": revisions, "b": revisions}))
def test_diff(fresh: Callable[[], Example], cli: Cli, drawn: dict[str, str]) -> None:
    ex = fresh()
    codes, ok = rev_expect(drawn["a"], drawn["b"])
    run_checked(cli, ex, "diff", drawn["a"], drawn["b"], codes=codes, changes=False, succeeds=ok)


@fuzz_settings()
@given(
    drawn=mixed(
        {"rev": GOOD_REV, "tag": st.sampled_from(["validated", "v2", "v1"])},
        {"rev": revisions, "tag": names},
    )
)
def test_tag(fresh: Callable[[], Example], cli: Cli, drawn: dict[str, str]) -> None:
    ex = fresh()
    rev, tag = drawn["rev"], drawn["tag"]
    codes, ok = rev_expect(rev)
    if valid_name(tag):
        codes |= {CONFLICT}  # a tag that exists, or a name an alias or branch has
    else:
        codes, ok = codes | {BAD_INPUT}, False
    run_checked(cli, ex, "tag", rev, tag, codes=codes, succeeds=ok)


@fuzz_settings()
@given(
    drawn=mixed(
        {"rev": GOOD_REV, "alias": st.sampled_from(["production", "staging", "canary"])},
        {"rev": revisions, "alias": names | refs},
    )
)
def test_promote(fresh: Callable[[], Example], cli: Cli, drawn: dict[str, str]) -> None:
    ex = fresh()
    rev, alias = drawn["rev"], drawn["alias"]
    codes, ok = rev_expect(rev)
    if valid_name(alias):
        # Backwards (churn:1 to @production at churn:2) is bad input; onto the name
        # of a branch or a tag a conflict.
        codes |= {BAD_INPUT, CONFLICT}
    else:
        codes, ok = codes | {BAD_INPUT}, False
    run_checked(cli, ex, "promote", rev, alias, codes=codes, succeeds=ok)


@fuzz_settings()
@given(
    drawn=mixed(
        {
            "alias": st.sampled_from(["churn@production", "churn@staging", "clf@production"]),
            "to": st.sampled_from(["1", "churn:1", "churn@v1", "clf:1", "2"]),
        },
        {"alias": revisions, "to": revisions | numbers},
    )
)
def test_rollback(fresh: Callable[[], Example], cli: Cli, drawn: dict[str, str]) -> None:
    ex = fresh()
    alias, to = drawn["alias"], drawn["to"]
    codes, ok = rev_expect(alias)
    # MODEL@ALIAS only (churn:1 is a revision, not an alias), and back only: bad input.
    run_checked(
        cli,
        ex,
        "rollback",
        alias,
        "--to",
        to,
        codes={*codes, BAD_INPUT, NOT_FOUND, CONFLICT},
        succeeds=ok,
    )
