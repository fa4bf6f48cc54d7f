"""Policies: what to do when monitoring windows keep failing a check.

A policy file (TOML, or YAML with the same keys under ``rules:``) holds rules:

    [[rule]]
    name = "quality drop"
    metric = "f1"                 # a live metric (needs feedback labels) or drift_share
    below = "reference - 0.05"    # or above = 0.3; "reference" is the version's own metric
    windows = 3                   # consecutive failing windows before acting
    action = "rollback"           # rollback | update | alert
    cooldown = "10m"              # no second action of this rule within this time
    webhook = "http://127.0.0.1:9000/hook"   # alert (and any action): POST the evidence

    # action = "update" only: train on the recent labelled traffic (feedback), gate the
    # candidate against the served version, and move the alias if it passes.
    strategy = "incremental"      # or batch (the parent's training data + the new rows)
    gate = "f1 >= parent"         # the update's gate (default: the task's default gate)
    min_rows = 200                # labelled rows needed; fewer → the action waits
    promote = true                # false: commit the candidate, leave the alias alone

Every action and alert is written to the event log with the windows and numbers
that caused it; the same evidence never fires a rule twice.
"""

from __future__ import annotations

import logging
import re
import time
import tomllib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelkeep import quantities
from modelkeep.errors import Hint, UsageError
from modelkeep.quantities import MAX_COUNT, shown

ACTIONS = ("rollback", "update", "alert")
UPDATE_STRATEGIES = ("incremental", "batch")
_KEYS = {
    "name",
    "metric",
    "below",
    "above",
    "windows",
    "action",
    "cooldown",
    "webhook",
    "strategy",
    "gate",
    "min_rows",
    "promote",
}
_UPDATE_KEYS = {"strategy", "gate", "min_rows", "promote"}
# ASCII digits, at most 20 of them before the point: a bound is a metric's scale.
_BOUND = re.compile(
    r"^\s*(reference)?\s*(?:([+-])\s*)?([0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})?\s*$"
)
# Consecutive windows a rule may wait for: beyond this it could never fire in practice.
MAX_WINDOWS = 10_000
if TYPE_CHECKING:
    from collections.abc import Collection

log = logging.getLogger("modelkeep.monitor")


class PolicyError(UsageError):
    """A policy file that does not validate."""


@dataclass(frozen=True)
class Rule:
    name: str
    metric: str
    below: str | None
    above: str | None
    windows: int
    action: str
    cooldown: float
    webhook: str | None
    strategy: str = "incremental"
    gate: str | None = None
    min_rows: int = 200
    promote: bool = True

    def bound(self, reference: float | None) -> float:
        text = self.below if self.below is not None else self.above
        assert text is not None
        m = _BOUND.match(text)
        assert m is not None
        base = 0.0
        if m.group(1):
            if reference is None:
                raise PolicyError(
                    f"rule {self.name!r} compares with the reference {self.metric}, but the "
                    "version records no such metric"
                )
            base = reference
        number = float(m.group(3) or 0.0)
        if m.group(2) == "-":
            number = -number
        return base + number

    def fails(self, value: float, reference: float | None) -> bool:
        limit = self.bound(reference)
        return value < limit if self.below is not None else value > limit


def _parse_error(exc: BaseException) -> BaseException:
    """What a parser raised, said so that a user can act on it: int()'s digit limit and
    the recursion limit are the parsers' own, not a syntax the user got wrong."""
    if isinstance(exc, RecursionError):
        return ValueError("nested too deeply")
    if isinstance(exc, ValueError) and "integer string conversion" in str(exc):
        return ValueError("a number has more digits than a policy needs (over 4,300)")
    return exc


def _load(text: str, source: str, fmt: str | None) -> Any:
    """The document, from TOML or YAML (``fmt`` from the file suffix; None: either)."""
    if fmt not in (None, "toml", "yaml"):
        raise PolicyError(f"{source}: policy format {fmt!r} is not toml or yaml")
    toml_error = None
    if fmt in (None, "toml"):
        try:
            return tomllib.loads(text)
        except (ValueError, RecursionError) as exc:  # TOMLDecodeError is a ValueError
            toml_error = _parse_error(exc)
            if fmt == "toml":
                raise PolicyError(f"{source}: not valid TOML: {toml_error}") from None
    import yaml

    try:
        doc = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        exc = _parse_error(exc)
        if fmt is None:
            raise PolicyError(
                f"{source}: neither TOML ({toml_error}) nor YAML ({' '.join(str(exc).split())})"
            ) from None
        raise PolicyError(f"{source}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(doc, dict):
        if fmt is None:
            raise PolicyError(
                f"{source}: neither TOML ({toml_error}) nor a YAML mapping with rules:"
            )
        raise PolicyError(f"{source}: a policy is a mapping with a list of rules under rules:")
    # The YAML spelling is ``rules:``; TOML's array of tables is ``[[rule]]``.
    if "rules" in doc and "rule" not in doc:
        doc["rule"] = doc.pop("rules")
    return doc


def measurable(tasks: Collection[str | None]) -> set[str]:
    """What windows and scheduled reports can measure for a model whose versions have
    these tasks: the tasks' metrics (both kinds where no task is recorded) and
    drift_share."""
    from modelkeep.evaluation import known_metrics

    names = {"drift_share"}
    for task in tasks or [None]:
        names |= known_metrics(task)
    return names


def parse(
    text: str,
    source: str = "policy",
    fmt: str | None = None,
    metrics: Collection[str] | None = None,
) -> list[Rule]:
    """Rules from TOML or YAML text, validated with errors that name the rule and key;
    with ``metrics``, every rule's metric must be one of them (a rule on a metric the
    model never reports could never fire)."""
    doc = _load(text, source, fmt)
    unknown_top = set(doc) - {"rule"}
    if unknown_top:
        raise PolicyError(
            f"{source}: unknown top-level key(s) {', '.join(sorted(map(str, unknown_top)))}; "
            "a policy holds only rules ([[rule]] in TOML, rules: in YAML)"
        )
    rules = doc.get("rule")
    if not isinstance(rules, list) or not rules:
        raise PolicyError(
            f"{source}: no rules ([[rule]] tables in TOML, a rules: list in YAML)",
            hint=Hint(
                cli="`modelkeep monitor policy --help` describes them",
                api="help(modelkeep.monitor.policy) describes them",
            ),
        )
    out = [_rule(raw, f"{source}, rule {i + 1}", i) for i, raw in enumerate(rules)]
    for i, rule in enumerate(out):
        if metrics is not None and rule.metric not in metrics:
            named = "" if rule.name == f"rule {i + 1}" else f" ({rule.name})"
            raise PolicyError(
                f"{source}, rule {i + 1}{named}: metric {shown(rule.metric)} is never "
                f"measured for this model; use one of {', '.join(sorted(metrics))}"
            )
    names = [r.name for r in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PolicyError(
            f"{source}: rule name(s) {', '.join(dupes)} used twice; names must differ"
        )
    return out


def _rule(raw: Any, where: str, i: int) -> Rule:
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: a rule is a table (mapping) of keys")
    unknown = set(raw) - _KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    name = _text(raw.get("name", f"rule {i + 1}"), where, "name")
    metric = raw.get("metric")
    if not isinstance(metric, str) or not metric:
        raise PolicyError(f'{where}: needs metric = "f1" (or drift_share, rmse, …)')
    if ("below" in raw) == ("above" in raw):
        raise PolicyError(f"{where}: give exactly one of below = … or above = …")
    given = raw.get("below", raw.get("above"))
    # A YAML integer may have any number of digits, and str() refuses past 4,300.
    bound = (
        str(given)
        if isinstance(given, str | float) or (isinstance(given, int) and abs(given) < 10**20)
        else ""
    )
    if not _BOUND.match(bound) or not bound.strip():
        raise PolicyError(
            f"{where}: bound {shown(given)} must be a number, reference, or reference ± number"
        )
    windows = _count(raw, "windows", 1, 1, MAX_WINDOWS, where)
    action = raw.get("action", "alert")
    if action not in ACTIONS:
        raise PolicyError(f"{where}: action {shown(action)} is not one of {', '.join(ACTIONS)}")
    webhook = raw.get("webhook")
    if webhook is not None and not (isinstance(webhook, str) and _is_http_url(webhook)):
        raise PolicyError(f"{where}: webhook {shown(webhook)} must be an http(s) URL")
    extra = _update_options(raw, where) if action == "update" else {}
    if action != "update" and set(raw) & _UPDATE_KEYS:
        keys = ", ".join(sorted(set(raw) & _UPDATE_KEYS))
        raise PolicyError(f'{where}: {keys} only apply to action = "update"')
    return Rule(
        name,
        metric,
        str(raw["below"]) if "below" in raw else None,
        str(raw["above"]) if "above" in raw else None,
        windows,
        action,
        quantities.duration(raw.get("cooldown", "10m"), f"{where}: cooldown"),
        webhook,
        **extra,
    )


def _count(raw: dict[str, Any], key: str, default: int, low: int, high: int, where: str) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise PolicyError(f"{where}: {key} must be a whole number from {low} to {high}")
    return value


def _text(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise PolicyError(f"{where}: {key} must be text of 1 to 200 characters")
    return value


def _is_http_url(text: str) -> bool:
    from urllib.parse import urlsplit

    try:
        url = urlsplit(text)
        url.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return False
    return url.scheme in ("http", "https") and bool(url.hostname)


def _update_options(raw: dict[str, Any], where: str) -> dict[str, Any]:
    strategy = raw.get("strategy", "incremental")
    if strategy not in UPDATE_STRATEGIES:
        raise PolicyError(
            f"{where}: strategy {shown(strategy)} is not one of {', '.join(UPDATE_STRATEGIES)}"
        )
    gate = raw.get("gate")
    if gate is not None:
        gate = _text(gate, where, "gate")
        from modelkeep.errors import GateRuleError
        from modelkeep.evaluation import CLASSIFICATION, REGRESSION
        from modelkeep.update.gate import Gate

        try:
            Gate(gate, {*CLASSIFICATION, *REGRESSION})
        except GateRuleError as exc:
            raise PolicyError(f"{where}: {exc.message}", hint=exc.hint) from None
    min_rows = _count(raw, "min_rows", 200, 10, MAX_COUNT, where)  # 10: some are held out
    promote = raw.get("promote", True)
    if not isinstance(promote, bool):
        raise PolicyError(f"{where}: promote must be true or false")
    return {
        "strategy": strategy,
        "gate": gate,
        "min_rows": min_rows,
        "promote": promote,
    }


@dataclass
class RuleState:
    failing: list[int] = field(default_factory=list)  # consecutive failing window ids
    last_fired: float = -1e18
    used: set[int] = field(default_factory=set)  # windows that already fired once


@dataclass(frozen=True)
class Firing:
    rule: Rule
    windows: list[int]
    values: list[float]
    bound: float


class Evaluator:
    """Feeds window results through the rules; says which rules fire, once each."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self.state = {r.name: RuleState() for r in rules}
        self._values: dict[tuple[str, int], float] = {}
        self._unjudged: set[str] = set()

    def window(
        self,
        window_id: int,
        values: dict[str, float],
        reference: dict[str, float],
        now: float | None = None,
    ) -> list[Firing]:
        now = time.monotonic() if now is None else now
        fired = []
        for rule in self.rules:
            st = self.state[rule.name]
            value = values.get(rule.metric)
            if value is None:
                continue  # not measurable in this window (e.g. no labels yet)
            self._values[(rule.name, window_id)] = value
            try:
                failing = rule.fails(value, reference.get(rule.metric))
            except PolicyError as exc:
                # One rule that cannot be judged (no reference metric) must not stop
                # the others: said once per rule.
                if rule.name not in self._unjudged:
                    self._unjudged.add(rule.name)
                    log.warning("%s; the rule is skipped", exc)
                continue
            if not failing:
                st.failing.clear()
                continue
            st.failing.append(window_id)
            evidence = st.failing[-rule.windows :]
            if (
                len(evidence) >= rule.windows
                and now - st.last_fired >= rule.cooldown
                and not st.used & set(evidence)
            ):
                st.last_fired = now
                st.used |= set(evidence)
                st.failing.clear()
                fired.append(
                    Firing(
                        rule,
                        evidence,
                        [self._values[(rule.name, w)] for w in evidence],
                        rule.bound(reference.get(rule.metric)),
                    )
                )
        return fired
