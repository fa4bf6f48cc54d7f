"""What the fuzz tests share: the settings, the strategies and the CLI's contract.

The contract of every command, whatever a hostile or careless user types: it succeeds
(exit 0), or it prints ONE line on stderr beginning ``error: ``, exits with the code
the README documents for the kind of failure (2 bad input, 3 not found, 4 conflict, 5
needs a newer modelkeep, 6 corrupted or missing objects; 1 is "anything else", which
bad input never is) and leaves the repository exactly as it was. A traceback fails the
test: the in-process runner re-raises what escaped the command.
"""

from __future__ import annotations

import math
import os
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

import modelkeep
from inprocess_cli import Result
from repo_state import snapshot

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    Cli = Callable[..., Result]  # the ``cli`` fixture: cli(root, *args) -> Result

# Examples per test (each parametrized case is a test); about 75 s for the harness at
# the default on 2 cores. CI may raise it: MODELKEEP_FUZZ_EXAMPLES=500.
EXAMPLES = int(os.environ.get("MODELKEEP_FUZZ_EXAMPLES", "30"))
# Runs are deterministic (the same examples every time) unless MODELKEEP_FUZZ_EXPLORE=1,
# for a search beyond them (with pytest's --hypothesis-seed=N to repeat one).
EXPLORE = os.environ.get("MODELKEEP_FUZZ_EXPLORE", "") not in ("", "0")
MAX_COUNT = 2**31 - 1  # what README's numbers are bounded by (one SQL INTEGER)


def fuzz_settings(weight: float = 1.0) -> settings:
    """Deterministic settings (CI must not find a new example on every run), nothing
    written into the working tree, ``weight`` × ``EXAMPLES`` examples."""
    return settings(
        max_examples=max(1, round(EXAMPLES * weight)),
        deadline=None,
        derandomize=not EXPLORE,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


# Defects this harness found outside the files it may fix, and not fixed yet. Each
# has a strict-xfail reproducer in test_findings.py; the fuzz tests steer around it
# (so that they go on finding new ones) until it is fixed: then delete its entry here.
OPEN: frozenset[str] = frozenset()


# -- the contract ---------------------------------------------------------------------

BAD_INPUT, NOT_FOUND, CONFLICT = 2, 3, 4
FAILURES = frozenset({2, 3, 4, 5, 6})


@dataclass
class Example:
    """One example's repository (a fresh copy of the template) and what it held."""

    root: Path
    scratch: Path  # a folder outside the repository for files and checkouts
    before: dict[str, Any] | None  # None: changed since, taken again before the next command


def check(
    ex: Example,
    res: Result,
    args: tuple[str, ...],
    *,
    codes: Collection[int] = FAILURES,
    changes: bool = True,
    succeeds: bool | None = None,
) -> None:
    """The contract for one command: exit 0, or one ``error:`` line with a documented
    code in ``codes`` and the repository unchanged. ``changes=False``: a command that
    only reads, so the repository is unchanged on success too. ``succeeds``: what an
    independent reading of the README expects (None: either)."""
    shown = "modelkeep " + " ".join(repr(a) for a in args)
    assert "Traceback" not in res.err, f"{shown}\n{res.err}"
    if res.code == 0:
        assert succeeds is not False, f"{shown} succeeded; expected an error: {res.out!r}"
        assert "error:" not in res.err, f"{shown} succeeded, but: {res.err}"
        if not changes:
            assert state(ex.root) == ex.before, f"{shown} changed the repository"
        else:
            ex.before = None
        return
    message = res.one_line_error()
    # Exit 1 is "anything else": for a hostile or careless input it is a finding.
    assert res.code != 1, f"{shown}: exit 1 for bad input: {message}"
    assert res.code in codes, f"{shown}: exit {res.code}, expected {sorted(codes)}: {message}"
    assert succeeds is not True, f"{shown} failed; expected success: {message}"
    assert state(ex.root) == ex.before, f"{shown} failed ({message}) but changed the repository"


def state(root: Path) -> dict[str, Any]:
    with modelkeep.Repo(root) as repo:  # closed: no connection left for the GC to warn of
        found: dict[str, Any] = snapshot(repo)
    return found


def run_checked(
    cli: Cli,
    ex: Example,
    *args: str,
    codes: Collection[int] = FAILURES,
    changes: bool = True,
    succeeds: bool | None = None,
) -> Result:
    if ex.before is None:
        ex.before = state(ex.root)
    res = cli(ex.root, *args)
    if currently_in_test_context():
        # How often each command ended how: shown by --hypothesis-show-statistics.
        command = " ".join(args[:2]) if args[0] in ("monitor", "alias") else args[0]
        event(f"{command} exit {res.code}")
    check(ex, res, args, codes=codes, changes=changes, succeeds=succeeds)
    return res


# -- an independent reading of the README's grammar -------------------------------------
# Not modelkeep.revision's regexes: a second reading of the same table, so the two
# can disagree (and a disagreement is a finding in one or the other).

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", re.ASCII)
REV_RE = re.compile(
    r"(?P<model>[A-Za-z0-9][A-Za-z0-9._-]{0,127})"
    r"(?::(?P<number>[0-9]+)|@(?P<ref>[A-Za-z0-9][A-Za-z0-9._-]{0,127})(?P<back>\^*))?"
    r"(?P<steps>(?:~[0-9]*)*)",
    re.ASCII,
)


def valid_name(name: str) -> bool:
    """A name as README's Concepts define it (and ``..`` or a trailing ``.``, which
    git refuses in its ref names too, refused)."""
    return bool(NAME_RE.fullmatch(name)) and not name.endswith(".") and ".." not in name


def rev_verdict(text: str) -> str:
    """``syntax``: not a revision at all; ``range``: one, but with a number no version
    can have (0, past one SQL INTEGER, or more than 10 digits even if they are zeros);
    ``ok``: a revision (which may name nothing)."""
    m = REV_RE.fullmatch(text.strip())
    if m is None:
        return "syntax"
    steps = [d or "1" for d in m["steps"].split("~")[1:]]
    number = m["number"]
    if any(len(d) > 10 for d in [*steps, number or ""]):
        return "range"
    if number is not None and not 1 <= int(number) <= MAX_COUNT:
        return "range"
    if sum(map(int, steps)) > MAX_COUNT:
        return "range"
    return "ok"


def rev_expect(*revs: str) -> tuple[frozenset[int], bool | None]:
    """How a command given ``revs`` may end: (failure codes, ``succeeds`` for
    ``check``). Not a revision, or an impossible number: it must fail, with 2.
    Otherwise it may succeed, or find nothing (3) — as it may when another of the
    revisions is bad: which one is reported first is the command's choice."""
    verdicts = {rev_verdict(r) for r in revs}
    if verdicts & {"syntax", "range"}:
        return frozenset({BAD_INPUT, NOT_FOUND} if "ok" in verdicts else {BAD_INPUT}), False
    return frozenset({NOT_FOUND}), None


# -- strategies --------------------------------------------------------------------------

MODELS = ["churn", "clf", "clf-train", "nope", "Churn", "CHURN", "c", "x" * 128, "x" * 129]
ODD_MODELS = ["churn.", "churn..x", ".churn", "-churn", "_churn", "çhurn", "churn\u0301"]
REFS = ["main", "exp", "production", "staging", "v1", "candidates", "nope", "MAIN", "Production"]
NUMBERS = [
    "1",
    "2",
    "3",
    "4",
    "5",
    "0",
    "00",
    "01",
    "2147483647",
    "2147483648",
    "9" * 30,
    "9" * 5000,  # past int()'s 4,300-digit limit
    "٣",  # ARABIC-INDIC DIGIT THREE: isdigit(), int() takes it
    "３",  # FULLWIDTH DIGIT THREE
    "²",  # isdigit() but not int()
    "-1",
    "+1",
    "1_0",
    " 1",
    "1.0",
    "1e3",
    "0x1",
]
WHITESPACE = ["", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u2003", "\u200b", "\ufeff"]
# \udcff is what a non-UTF-8 byte on the command line becomes (surrogateescape).
CONTROL = ["\x00", "\x1b[31m", "\x7f", "\x08", "\r", "\udcff", "\u202e", "[bold]", "%s", "{}"]

models = st.sampled_from(MODELS) | st.sampled_from(ODD_MODELS)
refs = st.sampled_from(REFS) | st.sampled_from(ODD_MODELS)
numbers = st.sampled_from(NUMBERS) | st.integers(0, 2**40).map(str)
junk = st.sampled_from(WHITESPACE) | st.sampled_from(CONTROL)


@st.composite
def structured_revisions(draw: st.DrawFn) -> str:
    """A model, maybe ``:N`` or ``@REF^…``, maybe ``~N`` steps; now and then a piece of
    junk (whitespace, a control character, markup) anywhere in it."""
    parts = [draw(models)]
    kind = draw(st.sampled_from(["head", "number", "ref"]))
    if kind == "number":
        parts += [":", draw(numbers)]
    elif kind == "ref":
        parts += ["@", draw(refs), "^" * draw(st.integers(0, 3))]
    for _ in range(draw(st.integers(0, 2))):
        parts += ["~", draw(st.sampled_from(["", *NUMBERS[:6]]) | numbers)]
    if draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(0, len(parts)))
        parts.insert(at, draw(junk))
    text = "".join(parts)
    if draw(st.booleans()) and draw(st.booleans()):
        text = draw(junk) + text + draw(junk)
    return text


# Mostly revisions that resolve: the interesting failures are near the valid ones.
VALID_REVS = [
    "churn",
    "churn:1",
    "churn:3",
    "churn@main",
    "churn@exp",
    "churn@production",
    "churn@production^",
    "churn@main~2",
    "churn@v1",
    "clf",
    "clf@production",
    "clf-train:1",
]
pieces = st.lists(
    st.sampled_from([*VALID_REVS, ":", "@", "^", "~", "~1", *NUMBERS[:8]])
    | junk
    | st.text(max_size=3),
    min_size=0,
    max_size=6,
).map("".join)
revisions = (
    st.sampled_from(VALID_REVS)
    | structured_revisions()
    | st.text()
    | pieces
    | st.text(alphabet=string.printable, max_size=20)
)


@st.composite
def structured_names(draw: st.DrawFn) -> str:
    """A name made of valid characters, maybe with one piece that is not allowed."""
    body = draw(st.text(alphabet=string.ascii_letters + string.digits + "._-", max_size=140))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(body)))
        body = (
            body[:at]
            + draw(junk | st.sampled_from(["@", ":", "^", "~", "/", "..", "é"]))
            + (body[at:])
        )
    return body


names = (
    st.sampled_from([*MODELS, *ODD_MODELS, *REFS, "a", "A", "0", "v1.0", "a-b_c.d", "x" * 128])
    | structured_names()
    | st.text(max_size=30)
)


@st.composite
def mixed(
    draw: st.DrawFn,
    good: dict[str, st.SearchStrategy[Any]],
    fuzzed: dict[str, st.SearchStrategy[Any]],
) -> dict[str, Any]:
    """An argument per key: good values, with some of them (none, one or several)
    fuzzed, so that each argument's errors are reached with the others valid as well
    as in combination."""
    chosen = draw(st.sets(st.sampled_from(sorted(good))))
    return {k: draw(fuzzed[k] if k in chosen else good[k]) for k in sorted(good)}


def is_json_finite_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
