"""Finding versions the way people ask for them: a small filter language, one parser.

    metrics.f1 > 0.9 and params.dataset = 'ds-3' and labels.reviewed_by = 'alice'
    (metrics.rmse <= 0.2 or labels.stage = 'candidate') and not status = 'rejected'

grammar (``and`` binds tighter than ``or``; ``not`` tighter than both):

    where      := or
    or         := and ("or" and)*
    and        := unary ("and" unary)*
    unary      := "not" unary | "(" or ")" | comparison
    comparison := field op value
    field      := ("metrics" | "params" | "labels") "." KEY | number | branch | author
                  | message | status | kind | created_at
    op         := "=" | "!=" | "<" | "<=" | ">" | ">="
    value      := NUMBER | 'text' | "text"

A key is letters, digits, ``_ . -`` (as a metric's or label's name). The parser only
builds a tree (``Where``); the registry turns the tree into SQL with bound parameters,
so nothing typed here is ever pasted into a statement. An ordering is ``FIELD`` or
``FIELD asc|desc`` (descending unless asked: the newest and the highest first).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from modelkeep.errors import UsageError
from modelkeep.quantities import shown

GROUPS = ("metrics", "params", "labels")
COLUMNS = ("number", "branch", "author", "message", "status", "kind", "created_at")
OPS = ("=", "!=", "<", "<=", ">", ">=")
_MAX_TEXT = 2000  # a filter is a line a person writes, not a document

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]{1,3})?)(?![A-Za-z0-9_])
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<op><=|>=|!=|=|<|>)
  | (?P<paren>[()])
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_][A-Za-z0-9_.-]*)?)
    """,
    re.VERBOSE,
)


class QuerySyntaxError(UsageError):
    """A filter or ordering that does not follow the query language."""


@dataclass(frozen=True, slots=True)
class Field:
    """``metrics.f1`` → ("metrics", "f1"); ``branch`` → ("branch", None)."""

    group: str
    key: str | None = None

    def __str__(self) -> str:
        return self.group if self.key is None else f"{self.group}.{self.key}"


@dataclass(frozen=True, slots=True)
class Compare:
    field: Field
    op: str
    value: float | str


@dataclass(frozen=True, slots=True)
class Not:
    inner: Where


@dataclass(frozen=True, slots=True)
class Both:
    """``and`` (all of ``parts``) or ``or`` (any of them)."""

    op: str
    parts: tuple[Where, ...]


Where = Compare | Not | Both


@dataclass(frozen=True, slots=True)
class Order:
    field: Field
    descending: bool = True


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    text: str
    at: int


def _tokens(text: str) -> list[_Tok]:
    if len(text) > _MAX_TEXT:
        raise QuerySyntaxError(f"a filter of {len(text)} characters is too long; keep it short")
    out, at = [], 0
    while at < len(text):
        m = _TOKEN.match(text, at)
        if m is None:
            raise _error(text, at, f"unexpected {shown(text[at])}")
        kind = m.lastgroup or ""
        if kind != "space":
            out.append(_Tok(kind, m.group(), at))
        at = m.end()
    return out


def _error(text: str, at: int, what: str) -> QuerySyntaxError:
    where = f"at column {at + 1}" if at < len(text) else "at the end"
    return QuerySyntaxError(
        f"{what} {where} of {shown(text)}; a filter reads e.g. "
        "metrics.f1 > 0.9 and labels.stage = 'prod'"
    )


def _field(word: str, text: str, at: int) -> Field:
    group, dot, key = word.partition(".")
    if dot:
        if group not in GROUPS:
            raise _error(
                text, at, f"unknown field {shown(word)} (use metrics.K, params.K, labels.K)"
            )
        return Field(group, key)
    if word not in COLUMNS:
        choices = ", ".join([*(f"{g}.KEY" for g in GROUPS), *COLUMNS])
        raise _error(text, at, f"unknown field {shown(word)} (fields: {choices})")
    return Field(word)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise _error(self.text, len(self.text), "the filter ends too soon")
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "word" and tok.text.lower() == word:
            self.i += 1
            return True
        return False

    def where(self) -> Where:
        node = self.either()
        tok = self.peek()
        if tok is not None:
            raise _error(self.text, tok.at, f"unexpected {shown(tok.text)}")
        return node

    def either(self) -> Where:
        parts = [self.both()]
        while self.keyword("or"):
            parts.append(self.both())
        return parts[0] if len(parts) == 1 else Both("or", tuple(parts))

    def both(self) -> Where:
        parts = [self.unary()]
        while self.keyword("and"):
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else Both("and", tuple(parts))

    def unary(self) -> Where:
        if self.keyword("not"):
            return Not(self.unary())
        tok = self.take()
        if tok.kind == "paren" and tok.text == "(":
            inner = self.either()
            close = self.take()
            if close.text != ")":
                raise _error(self.text, close.at, f"expected ')', found {shown(close.text)}")
            return inner
        if tok.kind != "word" or tok.text.lower() in ("and", "or", "not"):
            raise _error(self.text, tok.at, f"expected a field, found {shown(tok.text)}")
        field = _field(tok.text, self.text, tok.at)
        op = self.take()
        if op.kind != "op":
            raise _error(self.text, op.at, f"expected one of {' '.join(OPS)} after {field}")
        value = self.take()
        if value.kind == "number":
            number = float(value.text)
            if number != number or number in (float("inf"), float("-inf")):
                raise _error(self.text, value.at, f"{shown(value.text)} is not a finite number")
            return Compare(field, op.text, number)
        if value.kind == "string":
            body = value.text[1:-1]
            return Compare(field, op.text, re.sub(r"\\(.)", r"\1", body))
        raise _error(
            self.text, value.at, f"expected a number or a 'quoted text' after {field} {op.text}"
        )


def parse_where(text: str) -> Where:
    """The filter ``text`` as a tree, or a one-line error pointing at the bad token."""
    return _Parser(text).where()


def parse_order(text: str) -> Order:
    """``metrics.f1`` (descending), ``metrics.rmse asc``, ``created_at desc``."""
    toks = _tokens(text)
    if not toks or toks[0].kind != "word" or len(toks) > 2:
        raise _error(text, toks[0].at if toks else 0, "expected FIELD or FIELD asc|desc")
    field = _field(toks[0].text, text, toks[0].at)
    if len(toks) == 1:
        return Order(field)
    way = toks[1].text.lower()
    if way not in ("asc", "desc"):
        raise _error(text, toks[1].at, f"expected asc or desc, found {shown(toks[1].text)}")
    return Order(field, way == "desc")


# -- to SQL ---------------------------------------------------------------------------
# Everything the user typed becomes a bound parameter; JSON fields are read with the
# engine's JSON accessors (SQLite's json_extract, PostgreSQL's ->>), through SQLAlchemy.


def _column(field: Field) -> Any:
    from modelkeep.registry import schema as t

    return {
        "number": t.versions.c.number,
        "branch": t.versions.c.branch,
        "author": t.versions.c.author,
        "message": t.versions.c.message,
        "status": t.versions.c.status,
        "kind": t.versions.c.kind,
        "created_at": t.versions.c.created_at,
    }[field.group]


def _compare(left: Any, op: str, right: Any) -> Any:
    import operator

    return {
        "=": operator.eq,
        "!=": operator.ne,
        "<": operator.lt,
        "<=": operator.le,
        ">": operator.gt,
        ">=": operator.ge,
    }[op](left, right)


def to_sql(where: Where) -> Any:
    """The SQL condition on ``versions`` (joined to nothing) that ``where`` means."""
    from sqlalchemy import and_, exists, not_, or_, select

    from modelkeep.registry import schema as t

    if isinstance(where, Both):
        parts = [to_sql(p) for p in where.parts]
        return and_(*parts) if where.op == "and" else or_(*parts)
    if isinstance(where, Not):
        return not_(to_sql(where.inner))
    field, value = where.field, where.value
    if field.group == "labels":
        # Labels are text: a number compares with the text it is written as (3 → '3').
        text = value if isinstance(value, str) else f"{value:g}"
        label = t.labels
        return exists(
            select(label.c.version_id).where(
                label.c.version_id == t.versions.c.id,
                label.c.key == field.key,
                _compare(label.c.value, where.op, text),
            )
        )
    if field.group in ("metrics", "params"):
        doc = getattr(t.versions.c, field.group)[field.key]
        left = doc.as_float() if isinstance(value, float) else doc.as_string()
        return and_(left.is_not(None), _compare(left, where.op, value))
    column = _column(field)
    if field.group == "created_at":
        from datetime import datetime

        try:
            when = datetime.fromisoformat(str(value))
        except ValueError:
            raise QuerySyntaxError(
                f"created_at compares with a date or time such as '2026-12-01' or "
                f"'2026-12-01T09:30', not {shown(value)}"
            ) from None
        return _compare(column, where.op, when)
    if isinstance(value, float) != (field.group == "number"):
        kind = "a number" if field.group == "number" else "'quoted text'"
        raise QuerySyntaxError(f"{field} compares with {kind}, not {shown(value)}")
    return _compare(column, where.op, value)


def order_sql(order: Order) -> list[Any]:
    """ORDER BY for ``order``, the version number breaking ties (newest first)."""
    from sqlalchemy import select

    from modelkeep.registry import schema as t

    if order.field.group in ("metrics", "params"):
        key = getattr(t.versions.c, order.field.group)[order.field.key]
        expr = key.as_float() if order.field.group == "metrics" else key.as_string()
    elif order.field.group == "labels":
        expr = (
            select(t.labels.c.value)
            .where(t.labels.c.version_id == t.versions.c.id, t.labels.c.key == order.field.key)
            .scalar_subquery()
        )
    else:
        expr = _column(order.field)
    # Versions without the field come last either way.
    ranked = expr.desc().nulls_last() if order.descending else expr.asc().nulls_last()
    return [ranked, t.versions.c.number.desc()]
