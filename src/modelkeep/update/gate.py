"""The gate rule language: when may a candidate replace its parent?

    f1 >= parent - 0.01              candidate's f1 at least the parent's minus 0.01
    rmse < parent                    strictly better RMSE than the parent
    accuracy >= 0.9 and auc > parent
    rmse <= parent * 1.05 or mae < 2

A comparison is ``METRIC OP EXPR``; in EXPR, ``parent`` is the parent's value of
that same metric on the same holdout. EXPR may use numbers, ``parent``, + - * /
and parentheses. Comparisons combine with ``and``, ``or`` and ``not``. Rules are
parsed by Python's own parser (``ast``) and only these forms are accepted: a rule
is data, never code.

Before any rule, the new data itself is checked against the parent (``contradictions``):
a parent that scores far below its own recorded metrics on the new holdout means the
data contradicts the model (flipped labels, a broken join, a concept shift), and a
relative rule such as ``accuracy >= parent - 0.01`` would then compare the candidate
with a meaningless baseline.
"""

from __future__ import annotations

import ast
import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelkeep.errors import GateRuleError, Hint
from modelkeep.evaluation import HIGHER_IS_BETTER, LOWER_IS_BETTER

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_ARITH: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


# "Far below its recorded value": the new data contradicts the parent when, for any
# metric both recorded with the parent and measured on the new holdout, the parent
# scores more than CONTRADICTION_DROP below its record on a score that is better
# higher (accuracy, f1, precision, recall, auc: all within [0, 1]; r2 at most 1), or
# more than CONTRADICTION_RATIO times its record on an error (rmse, mae). Honest new
# data moves these by a few hundredths; 0.2 of accuracy is a fifth of all rows
# answered differently. A user's own metrics have no known direction: not checked.
CONTRADICTION_DROP = 0.2
CONTRADICTION_RATIO = 2.0


def contradictions(
    recorded: Mapping[str, object],
    measured: Mapping[str, float],
    *,
    drop: float = CONTRADICTION_DROP,
    ratio: float = CONTRADICTION_RATIO,
) -> list[str]:
    """Each metric on which ``measured`` falls far below ``recorded``, as
    ``"accuracy recorded 0.925, measured 0.075"``; empty when the data agrees."""
    found: list[str] = []
    for name, value in measured.items():
        kept = recorded.get(name)
        if isinstance(kept, bool) or not isinstance(kept, int | float):
            continue
        was = float(kept)
        # The slack keeps a drop of exactly the threshold (0.9 -> 0.7) from counting
        # as more than it through binary rounding.
        if name in HIGHER_IS_BETTER:
            far = was - value > drop + 1e-9
        elif name in LOWER_IS_BETTER:
            far = value > was * ratio * (1 + 1e-9)
        else:
            continue
        if far:
            found.append(f"{name} recorded {was:.4g}, measured {value:.4g}")
    return found


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str


def _is_leaf(node: ast.AST) -> bool:
    """A number or ``parent``: what a bound is made of."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int | float) and not isinstance(node.value, bool)
    return isinstance(node, ast.Name) and node.id == "parent"


class Gate:
    """A parsed rule; ``metrics`` lists the metric names it uses."""

    def __init__(self, text: str, known: Collection[str]) -> None:
        self.text = text.strip()
        if not self.text:
            raise GateRuleError('the gate rule is empty; write one, e.g. "f1 >= parent - 0.01"')
        try:
            tree = ast.parse(self.text, mode="eval")
        except SyntaxError as exc:
            col = (exc.offset or 1) - 1
            raise GateRuleError(
                f"cannot parse gate rule {self.text!r} at column {col + 1} "
                f'(near {self.text[col : col + 12]!r}); write e.g. "f1 >= parent - 0.01"'
            ) from None
        self._root = tree.body
        self.metrics: list[str] = []
        self._check(self._root, known, None)

    def _fail(self, node: ast.AST, what: str) -> GateRuleError:
        col = getattr(node, "col_offset", 0)
        return GateRuleError(
            f"gate rule {self.text!r}, column {col + 1}: {what}; "
            'rules look like "f1 >= parent - 0.01"',
            hint=Hint(
                cli="`modelkeep update --help` describes them",
                api="help(modelkeep.update.gate) describes them",
            ),
        )

    def _check(self, node: ast.AST, known: Collection[str], metric: str | None) -> None:
        if isinstance(node, ast.BoolOp):
            for value in node.values:
                self._check(value, known, None)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not) and metric is None:
            self._check(node.operand, known, None)
        elif isinstance(node, ast.Compare) and metric is None:
            if len(node.ops) != 1 or type(node.ops[0]) not in _COMPARE:
                raise self._fail(node, "use one comparison (<, <=, >, >=, ==, !=) per metric")
            left = node.left
            if not isinstance(left, ast.Name) or left.id == "parent":
                raise self._fail(node, "a comparison starts with a metric name")
            if left.id not in known:
                raise self._fail(
                    left, f"unknown metric {left.id!r} (known: {', '.join(sorted(known))})"
                )
            if left.id not in self.metrics:
                self.metrics.append(left.id)
            self._check(node.comparators[0], known, left.id)
        elif metric is not None and isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
            self._check(node.left, known, metric)
            self._check(node.right, known, metric)
        elif metric is not None and isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            self._check(node.operand, known, metric)
        elif metric is not None and _is_leaf(node):
            pass
        elif isinstance(node, ast.Name):
            raise self._fail(
                node, f"{node.id!r} cannot stand here: compare a metric with a number or parent"
            )
        else:
            raise self._fail(node, f"{type(node).__name__} is not part of the rule language")

    def evaluate(
        self,
        candidate: Mapping[str, float],
        parent: Mapping[str, float] | None,
        on: str = "the holdout",
    ) -> Verdict:
        """Apply the rule; ``reason`` shows every comparison with its numbers. ``on``
        names the data both were scored on, for the error when a metric is missing."""
        parts: list[str] = []
        passed = bool(self._eval(self._root, candidate, parent, None, parts, on))
        return Verdict(passed, "; ".join(parts))

    def _eval(
        self,
        node: ast.AST,
        cand: Mapping[str, float],
        parent: Mapping[str, float] | None,
        metric: str | None,
        parts: list[str],
        on: str = "the holdout",
    ) -> Any:
        if isinstance(node, ast.BoolOp):
            values = [bool(self._eval(v, cand, parent, None, parts, on)) for v in node.values]
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return not self._eval(node.operand, cand, parent, None, parts, on)
        if isinstance(node, ast.Compare):
            assert isinstance(node.left, ast.Name)
            name = node.left.id
            if name not in cand:
                why = " (auc needs both classes in the data)" if name == "auc" else ""
                raise GateRuleError(
                    f"gate rule {self.text!r} uses {name}, which could not be measured on "
                    f"{on}{why}; gate on another metric"
                )
            bound = float(self._eval(node.comparators[0], cand, parent, name, parts, on))
            ok = _COMPARE[type(node.ops[0])](cand[name], bound)
            op = ast.unparse(node).split(name, 1)[1].strip().split(" ", 1)[0]
            parts.append(f"{name} {cand[name]:.4g} {op} {bound:.4g}: {'yes' if ok else 'no'}")
            return ok
        if isinstance(node, ast.BinOp):
            left = self._eval(node.left, cand, parent, metric, parts, on)
            right = self._eval(node.right, cand, parent, metric, parts, on)
            try:
                return _ARITH[type(node.op)](left, right)
            except ZeroDivisionError:
                raise self._fail(node, f"division by zero ({ast.unparse(node)})") from None
        if isinstance(node, ast.UnaryOp):
            return -self._eval(node.operand, cand, parent, metric, parts, on)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name) and node.id == "parent" and metric is not None:
            if parent is None or metric not in parent:
                raise GateRuleError(
                    f"gate rule {self.text!r} compares {metric} with the parent, but the "
                    f"parent could not be evaluated on {on}"
                )
            return parent[metric]
        raise self._fail(node, "unexpected")
