"""Numbers a person types — counts, numbers, durations — read one way for every face.

Only ASCII digits count as digits (Python's ``int()`` and ``\\d`` also take ``٣`` and
``1_000``), and every value is bounded before anything is stored: a 5,000-digit
version number or a period of 99999999999 days is refused here, in one line, instead
of reaching ``int()``'s digit limit or a ``datetime`` that overflows later.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

from modelkeep.errors import UsageError

# What a 32-bit signed SQL INTEGER holds on every engine: version numbers, ids, -n.
MAX_COUNT = 2**31 - 1
# Periods, intervals and cooldowns: a year at most (a slot must fit a datetime, and a
# check that runs less than yearly is not monitoring).
MAX_DURATION = 366 * 86400.0
# Longer input is refused by its length before any conversion (and shown shortened).
_MAX_TEXT = 40

_WHOLE = re.compile(r"[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def shown(text: object) -> str:
    """``text`` as an error message quotes it: repr'd, and shortened when long."""
    try:
        s = repr(text)
    except ValueError:  # an int past Python's 4,300-digit limit for str()
        return "(a number too long to show)"
    return s if len(s) <= _MAX_TEXT + 2 else s[:_MAX_TEXT] + "…"


def named(text: object) -> str:
    """A name someone gave, as an error message says it: as it is when it is plain (f1,
    shoe_size), else quoted and shortened (a newline in it would break the line)."""
    if (
        isinstance(text, str)
        and 0 < len(text) <= _MAX_TEXT
        and text.isprintable()
        and not any(c.isspace() for c in text)
    ):
        return text
    return shown(text)


def whole(value: object, what: str, *, low: int = 0, high: int = MAX_COUNT) -> int:
    """A whole number in [low, high], from an ``int`` or ASCII digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and len(value) <= _MAX_TEXT and _WHOLE.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        raise UsageError(
            f"{what}: {shown(value)} is not a whole number; use digits 0-9 ({low} to {high})"
        )
    if not low <= number <= high:
        raise UsageError(f"{what}: {shown(value)} is out of range; use {low} to {high}")
    return number


def number(value: object, what: str, *, low: float, high: float, low_open: bool = False) -> float:
    """A finite number in [low, high] (``(low, high]`` with ``low_open``), from an int,
    a float or ASCII decimal text (``12``, ``0.5``, ``1e-3``)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        out = float(value)
    elif isinstance(value, str) and len(value) <= _MAX_TEXT and _NUMBER.fullmatch(value.strip()):
        out = float(value.strip())
    else:
        raise UsageError(f"{what}: {shown(value)} is not a number; use e.g. 10 or 0.5")
    below = out <= low if low_open else out < low
    if not math.isfinite(out) or below or out > high:
        interval = f"({low:g}, {high:g}]" if low_open else f"[{low:g}, {high:g}]"
        raise UsageError(f"{what}: {shown(value)} is out of range; use a number in {interval}")
    return out


def duration(
    value: object,
    what: str,
    *,
    low: float = 0.0,
    high: float = MAX_DURATION,
) -> float:
    """Seconds in [low, high], from ``30s``, ``10m``, ``2h``, ``1d``, a number of
    seconds or a ``timedelta``."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif (
        isinstance(value, str)
        and len(value) <= _MAX_TEXT
        and (m := _DURATION.fullmatch(value.strip()))
    ):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise UsageError(f"{what}: cannot read duration {shown(value)}; use e.g. 30s, 10m, 2h, 1d")
    if not math.isfinite(seconds) or seconds < low or seconds > high:
        raise UsageError(
            f"{what}: {shown(value)} is out of range; use {_span(low)} to {_span(high)}"
        )
    return seconds


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
