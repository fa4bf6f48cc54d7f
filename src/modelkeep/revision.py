"""Names and revisions: one parser for every face.

churn              head of the default branch
churn:3            version 3
churn@production   alias, branch or tag
churn@main~2       two first-parent steps back from the branch head
churn@production^  what the alias pointed to before its last move (^^: the move before)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelkeep.errors import InvalidNameError, RevisionSyntaxError
from modelkeep.quantities import MAX_COUNT, shown

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_NAME_RE = re.compile(_NAME)
_REV_RE = re.compile(
    rf"(?P<model>{_NAME})"
    rf"(?:(?::(?P<number>[0-9]+))|(?:@(?P<ref>{_NAME})(?P<back>\^*)))?"
    rf"(?P<ancestry>(?:~[0-9]*)*)"
)
# ASCII digits only (``\d`` would take any script's digits), and never more than fit
# one INTEGER column: checked on the text, before int() meets a 5,000-digit number.
_MAX_NUMBER = MAX_COUNT
ALLOWED = "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 128"


def check_name(name: str, what: str = "model name") -> str:
    """Return ``name`` if it is a valid model/branch/alias/tag name, else raise."""
    if not _NAME_RE.fullmatch(name) or name.endswith(".") or ".." in name:
        bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "._-"))})
        detail = f" (not allowed: {' '.join(repr(c) for c in bad)})" if bad else ""
        raise InvalidNameError(f"invalid {what} {name!r}{detail}: use {ALLOWED} characters")
    return name


@dataclass(frozen=True, slots=True)
class Revision:
    """A parsed revision; resolve it with ``Repo.resolve``."""

    model: str
    number: int | None = None
    ref: str | None = None
    back: int = 0  # how many ref moves to step back through (^)
    ancestry: int = 0  # how many first-parent steps (~N)

    @classmethod
    def parse(cls, text: str) -> Revision:
        m = _REV_RE.fullmatch(text.strip())
        if not m:
            raise RevisionSyntaxError(
                f"cannot parse revision {shown(text)}: use NAME, NAME:N, NAME@REF, NAME@REF^ or "
                "NAME@REF~N (e.g. churn:3, churn@production, churn@main~2)"
            )
        steps = [step or "1" for step in m["ancestry"].split("~")[1:]]
        back = len(m["back"] or "")
        too_long = len(str(_MAX_NUMBER))
        if back > _MAX_NUMBER or any(len(d) > too_long for d in [*steps, m["number"] or ""]):
            raise RevisionSyntaxError(
                f"{shown(text)}: numbers above {_MAX_NUMBER} cannot name a version"
            )
        ancestry = sum(map(int, steps))
        number = int(m["number"]) if m["number"] is not None else None
        if number is not None and number < 1:
            raise RevisionSyntaxError(f"version numbers start at 1, not {number} in {text!r}")
        if (number or 0) > _MAX_NUMBER or ancestry > _MAX_NUMBER:
            raise RevisionSyntaxError(
                f"{shown(text)}: numbers above {_MAX_NUMBER} cannot name a version"
            )
        return cls(m["model"], number, m["ref"], back, ancestry)

    def __str__(self) -> str:
        out = self.model
        if self.number is not None:
            out += f":{self.number}"
        elif self.ref is not None:
            out += f"@{self.ref}" + "^" * self.back
        if self.ancestry:
            out += f"~{self.ancestry}"
        return out


def parse_alias(text: str) -> tuple[str, str]:
    """``churn@production`` → (model, alias); nothing else is accepted."""
    rev = Revision.parse(text)
    if rev.ref is None or rev.back or rev.ancestry:
        raise RevisionSyntaxError(f"expected MODEL@ALIAS (e.g. churn@production), got {text!r}")
    return rev.model, rev.ref
