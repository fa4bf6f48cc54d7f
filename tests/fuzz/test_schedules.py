"""Schedules fuzzed through `monitor schedule REV --every X --data TEMPLATE [--target
COL]`: arbitrary periods, and templates with known and unknown fields, stray and
doubled braces, format specs (``{date:>10}``), conversions, attribute and index
access (``{date.year}``, ``{date[0]}``), positional fields (``{0}``, ``{}``).

Refused input is exit 2 (3 for a revision that names nothing). A period of whole
seconds from 1 s to 366 d and a template of known fields only must be accepted; a
template that is not one must be refused — at schedule time, not at 3 a.m. when the
daemon fills it in. An accepted schedule must then run: its slot is filled in and
checked by ``run_due`` (the daemon's step) without an unexpected exception, and it is
listed by `monitor schedules`.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fuzzkit import BAD_INPUT, NOT_FOUND, fuzz_settings, junk, mixed, revisions, run_checked
from hypothesis import given
from hypothesis import strategies as st

import modelkeep

if TYPE_CHECKING:
    from collections.abc import Callable

    import pytest
    from fuzzkit import Cli, Example

FIELDS = ("date", "time", "datetime", "hour", "slot")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
STRICT_PERIOD = re.compile(r"([0-9]{1,12})([smhd])", re.ASCII)
LOOSE_PERIOD = re.compile(r"\s*[0-9.]+\s*[smhd]?\s*", re.ASCII)


def period_verdict(text: str) -> bool | None:
    """True: a period README's form (``30s``, ``10m``, ``1h``, ``1d``) writes, from
    1 s to 366 d; False: nothing like a period; None: the command's choice (spaces,
    a bare number of seconds, a fraction)."""
    m = STRICT_PERIOD.fullmatch(text)
    if m:
        return 1 <= int(m[1]) * UNITS[m[2]] <= 366 * 86400
    return None if LOOSE_PERIOD.fullmatch(text) else False


def template_verdict(text: str) -> bool:
    """Whether ``text`` is a path with known fields only (``{{`` and ``}}`` literal
    braces), read independently of str.format's parser."""
    if not text.strip():
        return False
    i = 0
    while i < len(text):
        if text.startswith(("{{", "}}"), i):
            i += 2
        elif text[i] == "{":
            end = text.find("}", i)
            if end < 0 or text[i + 1 : end] not in FIELDS:
                return False
            i = end + 1
        elif text[i] == "}":
            return False
        else:
            i += 1
    return True


periods = (
    st.sampled_from(
        [
            "1h",
            "30s",
            "1d",
            "10m",
            "366d",
            "367d",
            "0s",
            "0",
            "1",
            "1.5s",
            "0.5m",
            "1.5",
            "1e3",
            "٣h",
            "１h",
            "1 h",
            " 2h ",
            "-1h",
            "+1h",
            "1H",
            "1hour",
            "h",
            "",
            "9" * 40,
            "9" * 5000,
            "31622400",
            "31622401",
            "1_000s",
            "1.0000000001s",
            "nan",
            "inf",
        ]
    )
    | st.integers(-5, 10**12).map(str)
    | st.builds(lambda n, u: f"{n}{u}", st.integers(0, 10**6), st.sampled_from("smhdwy"))
    | st.text(max_size=8)
)
pieces = st.sampled_from(
    [
        "batches/",
        "/abs/",
        "~/",
        "./",
        "../",
        ".csv",
        ".parquet",
        "{date}",
        "{time}",
        "{datetime}",
        "{hour}",
        "{slot}",
        "{nope}",
        "{",
        "}",
        "{{",
        "}}",
        "{date:>10}",
        "{date.year}",
        "{date[0]}",
        "{0}",
        "{}",
        "{date!r}",
        "{date!s:>3}",
        "{date:{time}}",
        "{ date }",
        "{DATE}",
        "{slot:%Y}",
        "%Y",
        "\x00",
        " ",
        "{{date}}",
        "{date}}",
    ]
)
templates = (
    st.lists(pieces | junk | st.text(max_size=3), max_size=6).map("".join)
    | st.text(max_size=20)
    | st.sampled_from(["data/{date}.csv", "batches/{date}/{time}.parquet", "{slot}.csv"])
)
GOOD = {
    "rev": st.sampled_from(["clf", "clf@production", "clf:1"]),
    "every": st.sampled_from(["1h", "30s", "1d", "10m", "366d", "1s"]),
    "template": st.lists(
        st.sampled_from(["batches/", "/abs/", "~/", "{{", "}}", ".csv", "-", "é", " "])
        | st.sampled_from([f"{{{f}}}" for f in FIELDS]),
        min_size=1,
        max_size=5,
    ).map("".join),
    "target": st.none() | st.sampled_from(["label", "nope", "a b"]),
}
FUZZED = {
    "rev": st.sampled_from(["churn:1", "nope@production"]) | revisions,
    "every": periods,
    "template": templates,
    "target": st.sampled_from(["", " "]) | st.text(max_size=6),
}


@fuzz_settings(2)
@given(drawn=mixed(GOOD, FUZZED))
def test_schedule(
    fresh: Callable[[], Example],
    cli: Cli,
    caplog: pytest.LogCaptureFixture,
    drawn: dict[str, Any],
) -> None:
    rev, every, template, target = (drawn[k] for k in ("rev", "every", "template", "target"))
    ex = fresh()
    caplog.clear()
    args = ["monitor", "schedule", rev, "--every", every, "--data", template, "--json"]
    if target is not None:
        args += ["--target", target]
    period, fields = period_verdict(every), template_verdict(template)
    # clf has a reference profile (churn:1 has none: refused); "" is no target at all.
    valid_rest = rev in ("clf", "clf@production", "clf:1") and (target is None or target.strip())
    if period is False or not fields:
        succeeds: bool | None = False
    elif period and valid_rest:
        succeeds = True
    else:
        succeeds = None
    res = run_checked(cli, ex, *args, codes={BAD_INPUT, NOT_FOUND}, succeeds=succeeds)
    if res.code != 0:
        return
    made = json.loads(res.out)
    listed = run_checked(cli, ex, "monitor", "schedules", "--json", changes=False, succeeds=True)
    assert [s["id"] for s in json.loads(listed.out)] == [made["id"]]
    run_checked(cli, ex, "monitor", "schedules", changes=False, succeeds=True)
    with modelkeep.Repo(ex.root) as repo, caplog.at_level(logging.ERROR, "modelkeep"):
        (schedule,) = repo.schedules()
        runs = repo.run_due(now=schedule.next_due + timedelta(seconds=1))
    assert [r.schedule for r in runs] == [schedule.id], "the first slot was due"
    # The file is not there: a failed run, recorded, said in one line — never a
    # KeyError or IndexError from filling the template in.
    unexpected = [r.getMessage() for r in caplog.records if "unexpectedly" in r.getMessage()]
    assert not unexpected, (runs[0].error, unexpected)
    assert runs[0].error is not None
    assert "\n" not in runs[0].error
