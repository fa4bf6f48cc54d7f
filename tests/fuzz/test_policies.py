"""Policies fuzzed through `monitor policy clf FILE` (clf is a classification model):
documents built from the real key set with values of every type, written as TOML
and as YAML, and raw text and bytes under each suffix.

A policy is accepted (exit 0) or refused as bad input (2). A document whose every
rule is made of good values must be accepted. An accepted policy must be usable:
shown (as text and --json) and judged, by the same evaluator a server or a schedule
uses, without an exception.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import TYPE_CHECKING, Any

import yaml
from fuzzkit import BAD_INPUT, NOT_FOUND, OPEN, fuzz_settings, names, run_checked
from hypothesis import assume, given
from hypothesis import strategies as st

import modelkeep

if TYPE_CHECKING:
    from collections.abc import Callable

    from fuzzkit import Cli, Example

GOOD: dict[str, st.SearchStrategy[Any]] = {
    "name": st.sampled_from(["quality drop", "drift", "r", "ünïcode ✓", "x" * 200]),
    "metric": st.sampled_from(["f1", "accuracy", "auc", "precision", "recall", "drift_share"]),
    "below": st.sampled_from([0.5, 0, 1, -2, "reference - 0.05", "reference", "reference+1", ".5"]),
    "above": st.sampled_from([0.3, 2, "reference + 0.1", "0.25", "reference - .5"]),
    "windows": st.integers(1, 10_000),
    "action": st.sampled_from(["alert", "rollback", "update"]),
    "cooldown": st.sampled_from(["10m", "0s", "1h", "366d", 0, 30, 1.5, "2 h"]),
    "webhook": st.sampled_from(["http://127.0.0.1:9/hook", "https://example.com/x?y=1"]),
    "strategy": st.sampled_from(["incremental", "batch"]),
    "gate": st.sampled_from(["f1 >= parent", "accuracy >= parent - 0.01 and auc > 0.5"]),
    "min_rows": st.integers(10, 2**31 - 1),
    "promote": st.booleans(),
}
UPDATE_ONLY = {"strategy", "gate", "min_rows", "promote"}

leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**31, 2**63, -(2**63) - 1, 10**20, 10**400, -1, 0])
    | st.floats()  # NaN, ±inf, -0.0, subnormals
    | st.text(max_size=12)
    | st.sampled_from(["", " ", "reference", "reference -", "1e3", "١", "http://", "f1 >= "])
    | st.dates()
    | st.datetimes()
)
anything = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


@st.composite
def rules(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """A rule and whether it is made of good values only (so must be accepted)."""
    action = draw(GOOD["action"])
    messy = draw(st.booleans())  # half the rules are made of good values only
    # A tidy rule has one bound, and update options only when it updates.
    pool = sorted(GOOD) if messy else sorted(set(GOOD) - {"below", "above", "action"})
    if not messy and action != "update":
        pool = [k for k in pool if k not in UPDATE_ONLY]
    keys = ["metric", draw(st.sampled_from(["below", "above"]))]
    keys += draw(st.lists(st.sampled_from(pool), max_size=5, unique=True))
    rule: dict[str, Any] = {"action": action}
    good = True
    for key in keys:
        if messy and draw(st.integers(0, 2)) == 0:
            rule[key] = draw(anything)
            good = False
        else:
            rule[key] = draw(GOOD[key])
    if messy and draw(st.integers(0, 3)) == 0:
        rule[draw(st.text(min_size=1, max_size=8))] = draw(anything)
        good = False
    has_bound = ("below" in rule) != ("above" in rule)
    update_keys = set(rule) & UPDATE_ONLY
    good = good and has_bound and (rule["action"] == "update" or not update_keys)
    return rule, good


@st.composite
def documents(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    drawn = draw(st.lists(rules(), min_size=1, max_size=3) | st.just([]))
    # Unnamed rules are "rule 1", "rule 2"…: names are unique unless drawn twice.
    for i, (rule, _) in enumerate(drawn):
        rule.setdefault("name", f"drawn {i}")
    names = [r.get("name") for r, _ in drawn]
    good = bool(drawn) and all(g for _, g in drawn) and len(set(map(str, names))) == len(names)
    doc: dict[str, Any] = {"rule": [r for r, _ in drawn]}
    if draw(st.integers(0, 9)) == 0:
        doc[draw(st.sampled_from(["rules", "version", "Rule", ""]))] = draw(anything)
        good = False
    return doc, good


# -- TOML, written by hand (the standard library only reads it) --------------------------


def toml_key(key: str) -> str:
    return str(json.dumps(key))  # a basic string is always a valid key


def toml_value(value: Any) -> str | None:
    """TOML for ``value``; None for what TOML cannot hold (null, an int beyond 64
    bits: those keys are left out)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if -(2**63) <= value < 2**63 else None
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON escapes are TOML basic-string escapes
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, list):
        parts = [toml_value(v) for v in value]
        return "[" + ", ".join(p for p in parts if p is not None) + "]"
    if isinstance(value, dict):
        items = [(k, toml_value(v)) for k, v in value.items()]
        return "{" + ", ".join(f"{toml_key(k)} = {v}" for k, v in items if v is not None) + "}"
    raise TypeError(value)


def to_toml(doc: dict[str, Any]) -> str:
    lines = []
    for key, value in doc.items():
        if key == "rule" and isinstance(value, list) and all(isinstance(r, dict) for r in value):
            continue
        text = toml_value(value)
        if text is not None:
            lines.append(f"{toml_key(key)} = {text}")
    for rule in doc.get("rule", []) if isinstance(doc.get("rule"), list) else []:
        lines.append("[[rule]]")
        for key, value in rule.items():
            text = toml_value(value)
            if text is not None:
                lines.append(f"{toml_key(key)} = {text}")
    return "\n".join(lines) + "\n"


def fits_toml(doc: dict[str, Any]) -> bool:
    """Whether writing ``doc`` as TOML left nothing out."""

    def ok(v: Any) -> bool:
        if isinstance(v, list):
            return all(ok(x) for x in v)
        if isinstance(v, dict):
            return all(ok(x) for x in v.values())
        return toml_value(v) is not None

    return ok(doc)


def to_yaml(doc: dict[str, Any], spelling: str) -> str:
    """YAML with the rules under ``spelling`` (README: ``rules:``; ``rule`` works too)."""
    body = {spelling if k == "rule" else k: v for k, v in doc.items()}
    return str(yaml.safe_dump(body, allow_unicode=True, sort_keys=False))


# -- the tests ---------------------------------------------------------------------------


def attach(cli: Cli, ex: Example, path: Any, succeeds: bool | None) -> None:
    res = run_checked(
        cli, ex, "monitor", "policy", "clf", str(path), codes={BAD_INPUT}, succeeds=succeeds
    )
    if res.code != 0:
        return
    run_checked(cli, ex, "monitor", "policy", "clf", changes=False, succeeds=True)
    shown = run_checked(cli, ex, "monitor", "policy", "clf", "--json", changes=False, succeeds=True)
    assert isinstance(json.loads(shown.out), list)
    judge(ex)


def judge(ex: Example) -> None:
    """The stored rules, judged as windows and scheduled reports are judged: every
    measurable value, failing and passing, with and without a reference metric."""
    from modelkeep.monitor.policy import Evaluator

    with modelkeep.Repo(ex.root) as repo:
        rules_ = repo.policy("clf")
    assert rules_, "an accepted policy has rules"
    evaluator = Evaluator(rules_)
    metrics = ["f1", "accuracy", "auc", "precision", "recall", "drift_share"]
    for window, value in enumerate([0.0, 1.0, 0.5, -1e9, 1e9] * 3):
        evaluator.window(window, dict.fromkeys(metrics, value), {"f1": 0.9}, now=window * 1e6)
        evaluator.window(window + 100, dict.fromkeys(metrics, value), {}, now=window * 1e6)


@fuzz_settings(2)
@given(drawn=documents(), suffix=st.sampled_from([".toml", ".TOML", ".txt", ""]))
def test_toml_documents(
    fresh: Callable[[], Example], cli: Cli, drawn: tuple[dict[str, Any], bool], suffix: str
) -> None:
    doc, good = drawn
    ex = fresh()
    path = ex.scratch / f"policy{suffix}"
    path.write_text(to_toml(doc), encoding="utf-8")
    attach(cli, ex, path, True if good and fits_toml(doc) else None)


@fuzz_settings(2)
@given(
    drawn=documents(),
    spelling=st.sampled_from(["rules", "rule"]),
    suffix=st.sampled_from([".yaml", ".yml", ".YAML", ""]),
)
def test_yaml_documents(
    fresh: Callable[[], Example],
    cli: Cli,
    drawn: tuple[dict[str, Any], bool],
    spelling: str,
    suffix: str,
) -> None:
    doc, good = drawn
    ex = fresh()
    path = ex.scratch / f"policy{suffix}"
    path.write_text(to_yaml(doc, spelling), encoding="utf-8")
    attach(cli, ex, path, True if good else None)


fragments = st.sampled_from(
    [
        "[[rule]]\n",
        "rules:\n",
        "  - ",
        "metric = ",
        "metric: ",
        '"f1"',
        "below = ",
        "above: ",
        "reference - 0.05",
        "0.3",
        "windows = ",
        "action = 'rollback'\n",
        "cooldown: ",
        "\n",
        "&a [*a]",
        "!!python/object:os.system",
        "{",
        "}",
        "[",
        "]",
        "'''",
        "\t",
        "\x00",
        "\ufeff",
        "- " * 50,
        "[" * 1000,
        "{a: " * 200,
    ]
)


@fuzz_settings(2)
@given(
    text=st.text() | st.lists(fragments | st.text(max_size=5), max_size=12).map("".join),
    raw=st.none() | st.binary(max_size=64),
    suffix=st.sampled_from([".toml", ".yaml", ".yml", ".json", ""]),
)
def test_raw_policy_text(
    fresh: Callable[[], Example], cli: Cli, text: str, raw: bytes | None, suffix: str
) -> None:
    if raw is not None and "policy-not-utf8" in OPEN:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            assume(False)
    ex = fresh()
    path = ex.scratch / f"policy{suffix}"
    if raw is None:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    else:
        path.write_bytes(raw)
    attach(cli, ex, path, None)


@fuzz_settings()
@given(
    name=st.sampled_from(["clf", "churn", "clf-train", "nope", "CLF"]) | names,
    fmt=st.sampled_from(["toml", "yaml"]),
)
def test_policy_owner(fresh: Callable[[], Example], cli: Cli, name: str, fmt: str) -> None:
    """A good policy given to whatever NAME says: a model (churn records no task: the
    metrics of both kinds are measurable), a dataset, nothing, not a name."""
    ex = fresh()
    doc = {"rule": [{"name": "drift", "metric": "drift_share", "above": 0.3}]}
    path = ex.scratch / f"policy.{fmt}"
    path.write_text(to_toml(doc) if fmt == "toml" else to_yaml(doc, "rules"), encoding="utf-8")
    ok = True if name in ("clf", "churn") else None
    res = run_checked(
        cli, ex, "monitor", "policy", name, str(path), codes={BAD_INPUT, NOT_FOUND}, succeeds=ok
    )
    if res.code == 0:
        run_checked(cli, ex, "monitor", "policy", name, "--json", changes=False, succeeds=True)
